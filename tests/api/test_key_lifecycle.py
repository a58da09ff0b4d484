"""API keys (issue 15 item 4): a role (built-in or custom), an optional expiry, a
last-used time, rotation; ``GET /keys`` shows none of the secret."""

from __future__ import annotations

import json

from millrace.api.auth import KeyStore
from millrace.pipeline.clock import now_us
from tests.api.conftest import V1, Api, error_of


async def test_keys_list_last_use_and_never_the_secret(api: Api) -> None:
    r = await api.client.post(
        f"{V1}/keys", json={"name": "dash", "role": "viewer"}, headers=api.auth(api.admin)
    )
    assert r.status_code == 201, r.text
    created = r.json()["data"]
    plaintext = created["key"]
    assert created["last_used_us"] is None and created["expires_us"] is None
    assert (await api.get("/status", key=plaintext)).status_code == 200
    listed = (await api.get("/keys", key="admin")).json()["data"]
    [mine] = [k for k in listed if k["id"] == created["id"]]
    assert mine["last_used_us"] is not None
    text = json.dumps(listed)
    stored = {k.id: k.sha256 for k in api.keys.list()}
    assert plaintext.split("_", 2)[2] not in text
    assert all(h not in text for h in stored.values())
    assert "key" not in mine and "sha256" not in mine


async def test_rotation_refuses_the_old_secret(api: Api) -> None:
    r = await api.client.post(
        f"{V1}/keys", json={"name": "svc", "role": "operator"}, headers=api.auth(api.admin)
    )
    old = r.json()["data"]
    r = await api.client.post(f"{V1}/keys/{old['id']}/rotate", headers=api.auth(api.admin))
    assert r.status_code == 200, r.text
    new = r.json()["data"]
    assert new["id"] == old["id"] and new["role"] == "operator" and new["key"] != old["key"]
    assert new["rotated_us"] is not None
    assert (await api.get("/me", key=old["key"])).status_code == 401
    assert (await api.get("/me", key=new["key"])).status_code == 200
    r = await api.client.post(f"{V1}/keys/nokey/rotate", headers=api.auth(api.admin))
    assert r.status_code == 404 and error_of(r)["details"][0]["field"] == "key_id"
    r = await api.client.post(f"{V1}/keys/{old['id']}/rotate", headers=api.auth(api.viewer))
    assert r.status_code == 403


async def test_an_expired_key_is_refused(api: Api) -> None:
    keys: KeyStore = api.keys
    _, soon_gone = keys.create("old", "viewer", expires_us=now_us() - 1)
    _, later = keys.create("later", "viewer", expires_us=now_us() + 3_600_000_000)
    assert (await api.get("/status", key=soon_gone)).status_code == 401
    assert (await api.get("/status", key=later)).status_code == 200
    r = await api.client.post(
        f"{V1}/keys",
        json={"name": "past", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"},
        headers=api.auth(api.admin),
    )
    assert r.status_code == 400 and error_of(r)["details"][0]["field"] == "body.expires_at"
    r = await api.client.post(
        f"{V1}/keys",
        json={"name": "future", "role": "viewer", "expires_at": "2999-01-01T00:00:00Z"},
        headers=api.auth(api.admin),
    )
    assert r.status_code == 201, r.text
    assert r.json()["data"]["expires_us"] == 32_472_144_000_000_000


async def test_a_key_with_a_custom_role(api: Api) -> None:
    assert api.ctx.access is not None
    api.ctx.access.users.put_role("metrics-only", ["identities:read"], "")
    r = await api.client.post(
        f"{V1}/keys", json={"name": "m", "role": "metrics-only"}, headers=api.auth(api.admin)
    )
    assert r.status_code == 201, r.text
    key = r.json()["data"]["key"]
    assert (await api.get("/identities", key=key)).status_code == 200
    assert (await api.get("/status", key=key)).status_code == 403
    r = await api.client.delete(f"{V1}/roles/metrics-only", headers=api.auth(api.admin))
    assert r.status_code == 409  # a key holds it
