"""API keys and roles: every route is authenticated, roles are enforced, keys are
stored hashed and never handed back."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from millrace.api.app import create_app
from millrace.api.auth import KeyStore
from millrace.api.context import AppContext
from millrace.api.permissions import PUBLIC, ROUTE_PERMISSIONS
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.projections.store.chdb import ChdbStore
from tests.api.conftest import ENV_KEY, NOW_US, V1, Api, MakeApi, error_of, uid

_PATH_VALUES = {"identity": "dev-1", "signal": "temp", "key_id": "0123456789ab"}


def _routes() -> list[tuple[str, str]]:
    """(method, path) of every /api/v1 route, from the app itself: a route added
    later is covered without touching this file."""
    # the store is opened lazily, so this app never touches chDB
    app = create_app(AppContext(ChdbStore(None), LogPublisher(MemoryEventLog()), KeyStore(None)))
    try:  # FastAPI >= 0.16x keeps included routers lazily; this flattens them
        from fastapi.routing import iter_route_contexts

        routes: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:  # pragma: no cover - older FastAPI: app.routes is flat
        routes = list(app.routes)
    found = []
    for route in routes:
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if path and methods and path.startswith(V1 + "/"):
            for method in sorted(methods - {"HEAD", "OPTIONS"}):
                found.append((method, path))
    return found


#: device-facing and open by design: a device has no API key before it provisions
#: (guarded by the provisioning switch, the IP allow-list and the identity's status;
#: see tests/api/test_identities.py)
#: and the sign-in routes (the credential is in the body: tests/api/test_login.py)
OPEN_ROUTES = {r for r, perm in ROUTE_PERMISSIONS.items() if perm == PUBLIC}
ROUTES = [r for r in _routes() if r not in OPEN_ROUTES]


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: _PATH_VALUES.get(m.group(1), "x"), path)


def test_the_route_list_is_complete() -> None:
    assert len(ROUTES) >= 11, ROUTES
    assert ("POST", f"{V1}/identities/{{identity}}/data") in ROUTES
    assert ("DELETE", f"{V1}/keys/{{key_id}}") in ROUTES


BAD_CREDENTIALS = {
    "no key": {},
    "wrong bearer": {"Authorization": "Bearer not-a-key"},
    "well-formed unknown key": {"Authorization": "Bearer mr_0123456789ab_secret"},
    "known id wrong secret": None,  # filled in the test
    "basic auth": {"Authorization": "Basic dXNlcjpwYXNz"},
    "empty bearer": {"Authorization": "Bearer "},
}


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
async def test_every_route_answers_401_without_a_valid_key(
    api: Api, method: str, path: str, case: str
) -> None:
    headers = BAD_CREDENTIALS[case]
    if headers is None:
        key_id = api.viewer.split("_")[1]
        headers = {"Authorization": f"Bearer mr_{key_id}_wrong-secret"}
    body: list[Any] | None = [] if method == "POST" else None
    r = await api.client.request(method, _url(path), headers=headers, json=body)
    assert r.status_code == 401, (case, r.text)
    assert error_of(r)["code"] == "unauthorized"
    assert r.headers.get("www-authenticate") == "Bearer"


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_a_wrong_access_token_query_parameter_is_401(
    api: Api, method: str, path: str
) -> None:
    r = await api.client.request(method, _url(path), params={"access_token": "nope"})
    assert r.status_code == 401, r.text


async def test_unauthenticated_malformed_body_is_401_not_400(api: Api) -> None:
    r = await api.post_raw(f"/identities/{uid()}/data", b"[{", key=None)
    assert r.status_code == 401, r.text


async def test_me_reports_each_role(api: Api) -> None:
    for name in ("viewer", "operator", "admin"):
        r = await api.get("/me", key=name)
        assert r.status_code == 200, r.text
        assert r.json()["data"]["role"] == name
    r = await api.get("/me", key=ENV_KEY)
    assert r.json()["data"] == {"key_id": "env", "name": "MILLRACE_API_KEY", "role": "admin"}


async def test_viewer_cannot_ingest_operator_and_admin_can(api: Api) -> None:
    identity = uid()
    body = [{"timestamp": NOW_US - 1, "values": {"a": 1}}]
    r = await api.ingest(identity, body, key="viewer")
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert err["code"] == "forbidden"
    assert "operator" in err["message"]
    assert await api.telemetry_count() == 0
    for key in ("operator", "admin", ENV_KEY):
        r = await api.ingest(identity, body, key=key)
        assert r.status_code == 202, r.text
    assert await api.telemetry_count() == 3


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_only_admin_manages_keys(api: Api, role: str) -> None:
    key = api._key(role)
    assert (await api.get("/keys", key=role)).status_code == 403
    r = await api.client.post(
        f"{V1}/keys", json={"name": "x", "role": "viewer"}, headers=api.auth(key)
    )
    assert r.status_code == 403, r.text
    victim = api.keys.list()[0]
    r = await api.client.delete(f"{V1}/keys/{victim.id}", headers=api.auth(key))
    assert r.status_code == 403, r.text
    assert victim.id in {k.id for k in api.keys.list()}


async def test_admin_creates_uses_and_revokes_a_viewer_key(api: Api) -> None:
    r = await api.client.post(
        f"{V1}/keys", json={"name": "dashboard", "role": "viewer"}, headers=api.auth(api.admin)
    )
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert data["name"] == "dashboard" and data["role"] == "viewer"
    plaintext = data["key"]
    assert plaintext.startswith(f"mr_{data['id']}_")

    me = await api.get("/me", key=plaintext)
    assert me.status_code == 200
    assert me.json()["data"] == {"key_id": data["id"], "name": "dashboard", "role": "viewer"}
    assert (await api.get("/status", key=plaintext)).status_code == 200
    assert (await api.get("/keys", key=plaintext)).status_code == 403

    listed = (await api.get("/keys", key="admin")).json()["data"]
    assert data["id"] in {k["id"] for k in listed}

    r = await api.client.delete(f"{V1}/keys/{data['id']}", headers=api.auth(api.admin))
    assert r.status_code == 204
    assert r.content == b""
    assert (await api.get("/me", key=plaintext)).status_code == 401
    listed = (await api.get("/keys", key="admin")).json()["data"]
    assert data["id"] not in {k["id"] for k in listed}

    r = await api.client.delete(f"{V1}/keys/{data['id']}", headers=api.auth(api.admin))
    assert r.status_code == 404
    assert error_of(r)["details"][0]["field"] == "key_id"


async def test_env_key_is_admin(make_api: MakeApi) -> None:
    api = await make_api(keys=KeyStore(None, env_key="from-the-environment"))
    r = await api.client.post(
        f"{V1}/keys",
        json={"name": "made by env", "role": "operator"},
        headers=api.auth("from-the-environment"),
    )
    assert r.status_code == 201, r.text
    assert (await api.get("/keys", key="from-the-environment")).status_code == 200
    # and it is not a prefix/suffix match
    assert (await api.get("/me", key="from-the-environment2")).status_code == 401
    assert (await api.get("/me", key="from-the-environmen")).status_code == 401


def test_without_env_key_an_empty_key_is_not_admin() -> None:
    keys = KeyStore(None, env_key="")
    assert keys.authenticate("") is None
    assert len(keys) == 0


@pytest.mark.parametrize(
    "body,field_name",
    [
        ({"name": "x", "role": "root"}, "body.role"),
        ({"name": "", "role": "viewer"}, "body.name"),
        ({"role": "viewer"}, "body.name"),
        ({"name": "x", "role": "viewer", "extra": 1}, "body.extra"),
    ],
)
async def test_bad_key_requests_name_the_field(
    api: Api, body: dict[str, object], field_name: str
) -> None:
    r = await api.client.post(f"{V1}/keys", json=body, headers=api.auth(api.admin))
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["details"][0]["field"] == field_name
    assert field_name in err["message"]


async def test_key_file_holds_hashes_only(make_api: MakeApi, tmp_path: Path) -> None:
    path = tmp_path / "api_keys.json"
    api = await make_api(keys=KeyStore(path, env_key=ENV_KEY))
    r = await api.client.post(
        f"{V1}/keys", json={"name": "via api", "role": "operator"}, headers=api.auth(ENV_KEY)
    )
    plaintexts = [api.admin, api.operator, api.viewer, r.json()["data"]["key"]]

    text = path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ENV_KEY not in text
    for plaintext in plaintexts:
        secret = plaintext.split("_", 2)[2]
        assert plaintext not in text
        assert secret not in text
    stored = json.loads(text)
    assert len(stored) == 4
    fields = {"id", "name", "role", "sha256", "created_us"}
    fields |= {"expires_us", "last_used_us", "rotated_us"}
    assert all(set(k) == fields for k in stored)
    assert not list(tmp_path.glob("*.tmp"))

    # the file is enough to authenticate after a restart; the env key is not in it
    reloaded = KeyStore(path)
    for plaintext in plaintexts:
        assert reloaded.authenticate(plaintext) is not None
    assert reloaded.authenticate(ENV_KEY) is None


async def test_key_listing_never_returns_secrets(api: Api) -> None:
    r = await api.get("/keys", key="admin")
    assert r.status_code == 200
    listed = r.json()["data"]
    assert len(listed) == 3
    for item in listed:
        assert set(item) == {
            "id",
            "name",
            "role",
            "created_us",
            "expires_us",
            "last_used_us",
            "rotated_us",
        }
    for stored in api.keys.list():
        assert stored.sha256 not in r.text
    for plaintext in (api.admin, api.operator, api.viewer):
        assert plaintext.split("_", 2)[2] not in r.text


async def test_openapi_and_docs_need_no_key(api: Api) -> None:
    assert (await api.client.get("/openapi.json")).status_code == 200
    assert (await api.client.get("/docs")).status_code == 200


async def test_unknown_route_is_a_json_404(api: Api) -> None:
    r = await api.client.get(f"{V1}/nothing-here", headers=api.auth(api.viewer))
    assert r.status_code == 404
    assert error_of(r)["code"] == "not_found"
