"""Users, login, tokens, lockout (issue 15): through the API, on the real app."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from millrace.api.users.access import AccessControl
from millrace.api.users.sessions import LockoutPolicy
from tests.api.conftest import V1, Api, error_of

PASSWORD = "correct horse battery staple"


def access_of(api: Api) -> AccessControl:
    assert api.ctx.access is not None
    return api.ctx.access


def no_delay(api: Api, **limits: Any) -> None:
    access_of(api).sessions.lockout = LockoutPolicy(failure_delay_s=0.0, **limits)


async def create_user(api: Api, username: str, roles: list[str], password: str = PASSWORD) -> Any:
    r = await api.client.post(
        f"{V1}/users",
        json={"username": username, "password": password, "roles": roles},
        headers=api.auth(api.admin),
    )
    assert r.status_code == 201, r.text
    return r.json()["data"]


async def login(api: Api, username: str, password: str = PASSWORD, **kw: Any) -> Any:
    return await api.client.post(
        f"{V1}/login", json={"username": username, "password": password}, **kw
    )


async def tokens(api: Api, username: str, password: str = PASSWORD) -> dict[str, Any]:
    r = await login(api, username, password)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_user_signs_in_and_uses_the_api(api: Api) -> None:
    no_delay(api)
    user = await create_user(api, "ana", ["operator"])
    assert PASSWORD not in json.dumps(user) and "argon2" not in json.dumps(user)
    assert "password_hash" not in user
    t = await tokens(api, "ana")
    assert t["token_type"] == "bearer" and t["expires_in"] == 900
    header = jwt.get_unverified_header(t["access_token"])
    assert header["alg"] == "HS256" and header["kid"]
    me = await api.client.get(f"{V1}/me", headers=bearer(t["access_token"]))
    assert me.status_code == 200, me.text
    data = me.json()["data"]
    assert data["username"] == "ana" and data["roles"] == ["operator"]
    assert "alarms:acknowledge" in data["permissions"] and "users:manage" not in data["permissions"]
    assert (
        await api.client.get(f"{V1}/status", headers=bearer(t["access_token"]))
    ).status_code == 200
    r = await api.client.get(f"{V1}/users", headers=bearer(t["access_token"]))
    assert r.status_code == 403
    listed = (await api.get("/users", key="admin")).json()["data"]
    [ana] = [u for u in listed if u["username"] == "ana"]
    assert ana["last_login_us"] is not None


async def test_wrong_password_and_unknown_user_answer_the_same(api: Api) -> None:
    no_delay(api)
    await create_user(api, "bo", ["viewer"])
    wrong = await login(api, "bo", "not the right password")
    unknown = await login(api, "nobody-here", "not the right password")
    assert wrong.status_code == unknown.status_code == 401
    assert error_of(wrong) == error_of(unknown)
    assert error_of(wrong)["message"] == "invalid username or password"


@pytest.mark.parametrize(
    "password,rule",
    [
        ("short", "min_length"),
        ("carla-the-user", "not_username"),
        ("resu-eht-alrac", "not_username"),
        ("Password1234", "not_common"),
        ("qwertyuiop123", "not_common"),
    ],
)
async def test_a_weak_password_is_400_naming_the_rule(api: Api, password: str, rule: str) -> None:
    r = await api.client.post(
        f"{V1}/users",
        json={"username": "carla-the-user", "password": password, "roles": ["viewer"]},
        headers=api.auth(api.admin),
    )
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["details"][0]["field"] == "body.password"
    assert err["details"][0]["rule"] == rule and rule in err["message"]
    assert access_of(api).users.get("carla-the-user") is None


async def test_unknown_roles_and_permissions_are_400_naming_them(api: Api) -> None:
    r = await api.client.post(
        f"{V1}/users",
        json={"username": "dee", "password": PASSWORD, "roles": ["wizard"]},
        headers=api.auth(api.admin),
    )
    assert r.status_code == 400 and "wizard" in error_of(r)["message"]
    r = await api.client.post(
        f"{V1}/roles",
        json={"name": "reader", "permissions": ["alarms:read", "alarms:fly", "x:y"]},
        headers=api.auth(api.admin),
    )
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["details"][0]["field"] == "body.permissions"
    assert err["details"][0]["unknown"] == ["alarms:fly", "x:y"]


async def test_the_last_admin_cannot_go(api: Api) -> None:
    await create_user(api, "root1", ["admin"])
    r = await api.client.delete(f"{V1}/users/root1", headers=api.auth(api.admin))
    assert r.status_code == 409, r.text
    r = await api.client.patch(
        f"{V1}/users/root1", json={"enabled": False}, headers=api.auth(api.admin)
    )
    assert r.status_code == 409
    r = await api.client.patch(
        f"{V1}/users/root1", json={"roles": ["viewer"]}, headers=api.auth(api.admin)
    )
    assert r.status_code == 409
    await create_user(api, "root2", ["admin"])
    r = await api.client.delete(f"{V1}/users/root1", headers=api.auth(api.admin))
    assert r.status_code == 204
    r = await api.client.delete(f"{V1}/users/root2", headers=api.auth(api.admin))
    assert r.status_code == 409


async def test_refresh_rotates_and_reuse_revokes_the_chain(api: Api) -> None:
    no_delay(api)
    await create_user(api, "eve", ["viewer"])
    first = await tokens(api, "eve")
    r = await api.client.post(f"{V1}/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        await api.client.get(f"{V1}/me", headers=bearer(second["access_token"]))
    ).status_code == 200
    # the first refresh token presented again: the whole session ends
    r = await api.client.post(f"{V1}/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401
    r = await api.client.post(f"{V1}/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401
    for t in (first, second):
        r = await api.client.get(f"{V1}/me", headers=bearer(t["access_token"]))
        assert r.status_code == 401
    # another session of the same user is not touched
    other = await tokens(api, "eve")
    assert (
        await api.client.get(f"{V1}/me", headers=bearer(other["access_token"]))
    ).status_code == 200


async def test_logout_ends_the_session(api: Api) -> None:
    no_delay(api)
    await create_user(api, "finn", ["viewer"])
    t = await tokens(api, "finn")
    r = await api.client.post(f"{V1}/logout", json={"refresh_token": t["refresh_token"]})
    assert r.status_code == 204
    assert (await api.client.get(f"{V1}/me", headers=bearer(t["access_token"]))).status_code == 401
    r = await api.client.post(f"{V1}/refresh", json={"refresh_token": t["refresh_token"]})
    assert r.status_code == 401


async def test_role_change_and_disable_take_effect_on_the_next_request(api: Api) -> None:
    no_delay(api)
    await create_user(api, "gus", ["viewer"])
    t = bearer((await tokens(api, "gus"))["access_token"])
    assert (await api.client.get(f"{V1}/audits", headers=t)).status_code == 403
    r = await api.client.patch(
        f"{V1}/users/gus", json={"roles": ["operator"]}, headers=api.auth(api.admin)
    )
    assert r.status_code == 200, r.text
    assert (await api.client.get(f"{V1}/audits", headers=t)).status_code == 200
    r = await api.client.patch(
        f"{V1}/users/gus", json={"enabled": False}, headers=api.auth(api.admin)
    )
    assert r.status_code == 200
    assert (await api.client.get(f"{V1}/me", headers=t)).status_code == 401
    assert (await login(api, "gus")).status_code == 401


async def test_a_custom_role_grants_exactly_its_permissions(api: Api) -> None:
    no_delay(api)
    r = await api.client.post(
        f"{V1}/roles",
        json={"name": "auditor", "permissions": ["audits:read"], "description": "reads audits"},
        headers=api.auth(api.admin),
    )
    assert r.status_code == 201, r.text
    await create_user(api, "hal", ["auditor"])
    t = bearer((await tokens(api, "hal"))["access_token"])
    assert (await api.client.get(f"{V1}/audits", headers=t)).status_code == 200
    assert (await api.client.get(f"{V1}/status", headers=t)).status_code == 403
    r = await api.client.delete(f"{V1}/roles/auditor", headers=api.auth(api.admin))
    assert r.status_code == 409  # hal holds it
    r = await api.client.put(
        f"{V1}/roles/auditor",
        json={"permissions": ["status:read"]},
        headers=api.auth(api.admin),
    )
    assert r.status_code == 200, r.text
    assert (await api.client.get(f"{V1}/audits", headers=t)).status_code == 403
    assert (await api.client.get(f"{V1}/status", headers=t)).status_code == 200
    r = await api.client.put(
        f"{V1}/roles/admin", json={"permissions": []}, headers=api.auth(api.admin)
    )
    assert r.status_code == 409


async def test_change_own_password(api: Api) -> None:
    no_delay(api)
    await create_user(api, "ida", ["viewer"])
    t = await tokens(api, "ida")
    body = {"current_password": "wrong wrong wrong", "new_password": "a brand new passphrase"}
    r = await api.client.put(f"{V1}/me/password", json=body, headers=bearer(t["access_token"]))
    assert r.status_code == 401
    body["current_password"] = PASSWORD
    body["new_password"] = "ida"
    r = await api.client.put(f"{V1}/me/password", json=body, headers=bearer(t["access_token"]))
    assert r.status_code == 400 and error_of(r)["details"][0]["rule"] == "min_length"
    body["new_password"] = "a brand new passphrase"
    r = await api.client.put(f"{V1}/me/password", json=body, headers=bearer(t["access_token"]))
    assert r.status_code == 204, r.text
    # every session ends; the new password works, the old does not
    assert (await api.client.get(f"{V1}/me", headers=bearer(t["access_token"]))).status_code == 401
    assert (await login(api, "ida")).status_code == 401
    assert (await login(api, "ida", "a brand new passphrase")).status_code == 200


def _forge(secret: bytes | None, claims: dict[str, Any], kid: str, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg, headers={"kid": kid})


async def test_expired_tampered_wrong_key_and_alg_none_tokens_are_401(api: Api) -> None:
    no_delay(api)
    await create_user(api, "jo", ["admin"])
    good = (await tokens(api, "jo"))["access_token"]
    assert (await api.client.get(f"{V1}/me", headers=bearer(good))).status_code == 200
    kid, secret = access_of(api).signing.current()
    claims = jwt.decode(good, options={"verify_signature": False})
    now = int(time.time())
    expired = _forge(secret, {**claims, "iat": now - 3600, "exp": now - 60}, kid)
    head, _, sig = good.split(".")
    raised = (
        base64.urlsafe_b64encode(json.dumps({**claims, "sub": "someone-else"}).encode())
        .rstrip(b"=")
        .decode()
    )
    tampered = f"{head}.{raised}.{sig}"
    wrong_key = _forge(b"k" * 32, claims, kid)
    unknown_kid = _forge(secret, claims, "not-a-kid")
    alg_none = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    no_sid = _forge(secret, {k: v for k, v in claims.items() if k != "sid"}, kid)
    for name, token in {
        "expired": expired,
        "tampered": tampered,
        "wrong key": wrong_key,
        "unknown kid": unknown_kid,
        "alg none": alg_none,
        "no sid": no_sid,
    }.items():
        r = await api.client.get(f"{V1}/me", headers=bearer(token))
        assert r.status_code == 401, name
        assert error_of(r)["code"] == "unauthorized"
        r = await api.client.get(f"{V1}/stream", params={"access_token": token})
        assert r.status_code == 401, name


async def test_lockout_is_per_user_and_spares_others(api: Api) -> None:
    no_delay(api, max_user_failures=3, max_address_failures=100)
    await create_user(api, "lee", ["viewer"])
    await create_user(api, "max", ["viewer"])
    for _ in range(3):
        assert (await login(api, "lee", "bad bad bad bad")).status_code == 401
    r = await login(api, "lee")  # the right password, but locked
    assert r.status_code == 429, r.text
    assert error_of(r)["code"] == "locked_out"
    assert (await login(api, "max")).status_code == 200  # another user
    assert (await api.get("/status", key="viewer")).status_code == 200  # API keys
    audits = [
        m
        for m in api.log.appended  # the audit trail holds the story
    ]
    assert "audit" in audits


async def test_lockout_per_address_spares_other_addresses(api: Api) -> None:
    no_delay(api, max_user_failures=100, max_address_failures=3)
    await create_user(api, "ned", ["viewer"])
    sessions = access_of(api).sessions
    for i in range(3):
        sessions.failed(f"guess-{i}", "10.0.0.9")
    assert sessions.locked("ned", "10.0.0.9")
    assert not sessions.locked("ned", "10.0.0.10")
    # the test client's address is not the locked one
    assert (await login(api, "ned")).status_code == 200


async def test_sign_in_refresh_sign_out_audited_as_the_user_failures_as_anonymous(api: Api) -> None:
    no_delay(api)
    await create_user(api, "lou", ["operator", "viewer"])
    assert (await login(api, "lou")).status_code == 200
    assert (await login(api, "lou", "not the right password")).status_code == 401
    assert (await login(api, "nobody-lou", "not the right password")).status_code == 401
    # the holder of a refresh token is the user it was issued to
    first = await tokens(api, "lou")
    r = await api.client.post(f"{V1}/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    # a used-up refresh token presented again: whoever copied it is not the user
    r = await api.client.post(f"{V1}/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401
    other = await tokens(api, "lou")
    r = await api.client.post(f"{V1}/logout", json={"refresh_token": other["refresh_token"]})
    assert r.status_code == 204
    await api.sync()
    rows = []
    for target in ("lou", "nobody-lou"):
        r = await api.get("/audits", key="operator", target_id=target, sort="creation_time")
        assert r.status_code == 200, r.text
        rows += [(a["action"], a["actor"], a["actor_role"]) for a in r.json()["data"]]
    assert ("login", "user:lou", "operator,viewer") in rows
    # a failure names no one as actor, whether the user exists or not
    assert ("login_failed", "anonymous", "none") in rows
    failed = [row for row in rows if row[0] == "login_failed"]
    assert failed == [("login_failed", "anonymous", "none")] * 2
    assert ("refresh", "user:lou", "operator,viewer") in rows
    assert ("logout", "user:lou", "operator,viewer") in rows
    assert ("refresh_reused", "anonymous", "none") in rows
