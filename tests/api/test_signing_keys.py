"""Rotation of the access-token signing key (``POST /api/v1/auth/keys/rotate``) and who
the audit trail names for a signed-in user (issue 15 item 2)."""

from __future__ import annotations

from typing import Any

import jwt

from millrace.pipeline.codec import default_codec
from millrace.pipeline.topics import AUDIT
from tests.api.conftest import V1, Api, error_of
from tests.api.test_login import access_of, bearer, create_user, no_delay, tokens


async def rotate(api: Api, headers: dict[str, str]) -> Any:
    return await api.client.post(f"{V1}/auth/keys/rotate", headers=headers)


async def audit_records(api: Api) -> list[dict[str, Any]]:
    codec = default_codec()
    out = []
    for p in range(api.log.partitions(AUDIT)):
        for rec in await api.log.read(AUDIT, p, 0, 100_000):
            out.append(codec.decode(AUDIT, rec.value))
    return out


async def test_rotation_keeps_old_tokens_until_they_expire_and_new_ones_carry_the_new_kid(
    api: Api,
) -> None:
    no_delay(api)
    await create_user(api, "kim", ["viewer"])
    old = (await tokens(api, "kim"))["access_token"]
    old_kid = jwt.get_unverified_header(old)["kid"]
    r = await rotate(api, api.auth(api.admin))
    assert r.status_code == 200, r.text
    body = r.json()["data"]
    new_kid = body["kid"]
    assert new_kid != old_kid and body["dropped"] == []
    # the keys as listed: the new one current, the old one retired (kept); no secret
    listed = {k["kid"]: k for k in body["keys"]}
    assert set(listed) == {old_kid, new_kid}
    assert listed[new_kid]["retired_us"] is None and listed[old_kid]["retired_us"] is not None
    assert all(set(k) == {"kid", "created_us", "retired_us"} for k in body["keys"])
    new = (await tokens(api, "kim"))["access_token"]
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    for token in (old, new):
        assert (await api.client.get(f"{V1}/me", headers=bearer(token))).status_code == 200
    # a token of a kid this installation never had: 401
    _, secret = access_of(api).signing.current()
    claims = jwt.decode(new, options={"verify_signature": False})
    forged = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "not-ours"})
    r = await api.client.get(f"{V1}/me", headers=bearer(forged))
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
    # the rotation is in the audit trail, by the admin key, naming no secret
    [record] = [a for a in await audit_records(api) if a["target_type"] == "signing_key"]
    assert (record["action"], record["target_id"], record["status"]) == ("rotate", new_kid, "ok")
    assert record["actor"].startswith("key:")
    secrets = [k["secret"] for k in access_of(api).signing.file.read(fresh=True)["keys"]]
    assert not any(s in str(record) for s in secrets)


async def test_keys_retired_longer_than_a_token_lives_are_dropped(api: Api) -> None:
    """Time is the signing keys' own clock: a token lives ``access_ttl_s``, so a key
    retired longer ago than that signed only expired tokens and goes at the next
    rotation; its token is refused (by its expiry, and its kid is unknown now)."""
    no_delay(api)
    signing = access_of(api).signing
    ttl_us = int(signing.access_ttl_s * 1_000_000)
    # the keys' own clock, started in the past; every check reads it, not the wall's
    now = [signing.clock() - 3 * ttl_us]
    signing.clock = lambda: now[0]
    await create_user(api, "liv", ["viewer"])
    first = (await tokens(api, "liv"))["access_token"]
    first_kid = jwt.get_unverified_header(first)["kid"]
    second_kid = (await rotate(api, api.auth(api.admin))).json()["data"]["kid"]
    now[0] += ttl_us // 2  # within a token's life: nothing dropped
    body = (await rotate(api, api.auth(api.admin))).json()["data"]
    third_kid = body["kid"]
    assert body["dropped"] == [] and first_kid in {k["kid"] for k in body["keys"]}
    now[0] += ttl_us  # the first key retired more than a token's life ago
    body = (await rotate(api, api.auth(api.admin))).json()["data"]
    assert body["dropped"] == [first_kid, second_kid]
    assert {k["kid"] for k in body["keys"]} == {third_kid, body["kid"]}
    assert (await api.client.get(f"{V1}/me", headers=bearer(first))).status_code == 401
    fresh = (await tokens(api, "liv"))["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == body["kid"]
    assert (await api.client.get(f"{V1}/me", headers=bearer(fresh))).status_code == 200


async def test_only_users_manage_may_rotate(api: Api) -> None:
    for key in ("viewer", "operator"):
        r = await rotate(api, api.auth(api._key(key)))
        assert r.status_code == 403, r.text
        assert "users:manage" in error_of(r)["message"]
    assert (await rotate(api, {})).status_code == 401


async def test_the_audit_actor_of_a_signed_in_user_is_user_and_name(api: Api) -> None:
    no_delay(api)
    await create_user(api, "uma", ["operator"])
    token = (await tokens(api, "uma"))["access_token"]
    r = await api.client.post(
        f"{V1}/identities", json={"identity": "uma-dev-1x"}, headers=bearer(token)
    )
    assert r.status_code == 201, r.text
    [record] = [a for a in await audit_records(api) if a["target_id"] == "uma-dev-1x"]
    assert record["actor"] == "user:uma"
    # the objects name the user the same way (who set the desired state)
    await api.sync()
    found = (await api.get("/audits", key="operator", target_id="uma-dev-1x")).json()["data"]
    assert [a["actor"] for a in found] == ["user:uma"]


async def test_issue_time_is_read_on_our_clock_with_skew_between_processes(api: Api) -> None:
    """Another ``millrace api`` process a few seconds ahead signs tokens "issued" in
    this one's future: accepted within a minute of skew, refused beyond."""
    no_delay(api)
    await create_user(api, "ivo", ["viewer"])
    real = (await tokens(api, "ivo"))["access_token"]
    kid, secret = access_of(api).signing.current()
    claims = jwt.decode(real, options={"verify_signature": False})
    for ahead_s, status in ((30, 200), (300, 401)):
        token = jwt.encode(
            {**claims, "iat": claims["iat"] + ahead_s, "exp": claims["exp"] + ahead_s},
            secret,
            algorithm="HS256",
            headers={"kid": kid},
        )
        r = await api.client.get(f"{V1}/me", headers=bearer(token))
        assert r.status_code == status, (ahead_s, r.text)
