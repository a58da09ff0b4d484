"""Every route declares its permission in one place (``api.permissions``), and a role
without it gets 403 (the routes are taken from the app's OpenAPI document, so a route
added later is covered without touching this file)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from millrace.api.context import admin, operator, viewer
from millrace.api.permissions import (
    AUTHENTICATED,
    BUILTIN_ROLES,
    CATALOG,
    PUBLIC,
    ROUTE_PERMISSIONS,
    SCOPE_AWARE,
    SCOPE_UNFILTERED,
    unknown_permissions,
)
from tests.api.conftest import V1, Api, error_of
from tests.api.test_auth import _routes

SHORTHANDS = {viewer: "viewer", operator: "operator", admin: "admin"}
#: routes that authorize in their own dependency (a device or an API key), with the
#: built-in role their permission belongs to
SELF_AUTHORIZING = {("POST", f"{V1}/identities/{{identity}}/data"): "operator"}


def _shorthand(dependant: Any) -> list[str]:
    found = []
    for d in dependant.dependencies:
        if d.call in SHORTHANDS:
            found.append(SHORTHANDS[d.call])
        found += _shorthand(d)
    return found


async def test_every_openapi_operation_declares_a_permission(api: Api) -> None:
    doc = api.app.openapi()
    missing = [
        (m.upper(), p)
        for p, ops in doc["paths"].items()
        if p.startswith(V1)
        for m in ops
        if (m.upper(), p) not in ROUTE_PERMISSIONS
    ]
    assert not missing, f"add these to api/permissions.py ROUTE_PERMISSIONS: {missing}"
    declared = set(ROUTE_PERMISSIONS.values()) - {PUBLIC, AUTHENTICATED}
    assert not unknown_permissions(declared)


def test_builtin_roles_keep_their_meaning() -> None:
    """A route's permission belongs to exactly the built-in role its router names
    (viewer/operator/admin shorthands), so no built-in role gained or lost a route."""
    from fastapi.routing import iter_route_contexts

    from millrace.api.app import create_app
    from millrace.api.auth import KeyStore
    from millrace.api.context import AppContext
    from millrace.pipeline.log.memory import MemoryEventLog
    from millrace.pipeline.publisher import LogPublisher
    from millrace.projections.store.chdb import ChdbStore

    app = create_app(AppContext(ChdbStore(None), LogPublisher(MemoryEventLog()), KeyStore(None)))
    checked = 0
    for route in iter_route_contexts(app.routes):
        path, methods = getattr(route, "path", ""), getattr(route, "methods", None) or set()
        for method in methods - {"HEAD", "OPTIONS"}:
            perm = ROUTE_PERMISSIONS.get((method, path))
            if perm in (None, PUBLIC, AUTHENTICATED):
                continue
            levels = set(_shorthand(route.dependant))
            if (method, path) in SELF_AUTHORIZING:
                levels = {SELF_AUTHORIZING[(method, path)]}
            assert levels, (method, path)
            assert {CATALOG[perm][0]} == levels, (method, path, perm, levels)
            checked += 1
    assert checked > 50
    assert BUILTIN_ROLES["viewer"] < BUILTIN_ROLES["operator"] < BUILTIN_ROLES["admin"]
    assert BUILTIN_ROLES["admin"] == frozenset(CATALOG)


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", "x1", path)


GUARDED = sorted(
    (m, p)
    for m, p in _routes()
    if ROUTE_PERMISSIONS.get((m, p)) not in (None, PUBLIC, AUTHENTICATED)
)


@pytest.mark.parametrize("method,path", GUARDED, ids=[f"{m} {p}" for m, p in GUARDED])
async def test_a_role_without_the_permission_gets_403(api: Api, method: str, path: str) -> None:
    permission = ROUTE_PERMISSIONS[(method, path)]
    everything_else = sorted(set(CATALOG) - {permission})
    assert api.ctx.access is not None
    api.ctx.access.users.put_role("all-but-one", everything_else, "test")
    _, key = api.keys.create("almost admin", "all-but-one", known_roles={"all-but-one"})
    body: Any = {} if method in ("POST", "PUT", "PATCH") else None
    r = await api.client.request(method, _url(path), headers=api.auth(key), json=body)
    assert r.status_code == 403, (permission, r.text)
    assert permission in error_of(r)["message"]


async def test_permissions_lists_the_catalog(api: Api) -> None:
    r = await api.get("/permissions", key="viewer")
    assert r.status_code == 200, r.text
    listed = {p["name"]: p["builtin_role"] for p in r.json()["data"]}
    assert listed == {name: lowest for name, (lowest, _) in CATALOG.items()}
    assert "alarms:acknowledge" in listed and "sql:query" in listed


def test_scope_aware_routes_are_routes_of_the_table() -> None:
    routes = set(_routes())
    for key in SCOPE_AWARE | SCOPE_UNFILTERED:
        assert key in routes and key in ROUTE_PERMISSIONS, key


@pytest.mark.parametrize("method,path", GUARDED, ids=[f"{m} {p}" for m, p in GUARDED])
async def test_a_scoped_role_reaches_only_routes_that_filter_by_scope(
    api: Api, method: str, path: str
) -> None:
    """A scoped role holding every permission: a route of one identity answers 404 for
    an identity outside its scope; a route in SCOPE_AWARE (it filters) or
    SCOPE_UNFILTERED (SQL, granted) is not refused; every other route is 403 — a route
    added later is refused to scoped roles until it filters and is listed."""
    assert api.ctx.access is not None
    api.ctx.access.users.put_role("scoped-all", sorted(CATALOG), "test", {"identities": ["zz-*"]})
    _, key = api.keys.create("scoped", "scoped-all", known_roles={"scoped-all"})
    body: Any = {} if method in ("POST", "PUT", "PATCH") else None
    r = await api.client.request(method, _url(path), headers=api.auth(key), json=body)
    if (method, path) in SCOPE_AWARE | SCOPE_UNFILTERED:
        assert r.status_code != 403, r.text
    elif "{identity}" in path:
        assert r.status_code == 404, r.text
        assert error_of(r)["details"][0]["field"] == "identity"
    else:
        assert r.status_code == 403, r.text
        assert "scoped" in error_of(r)["message"]
