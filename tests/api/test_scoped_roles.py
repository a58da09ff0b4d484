"""Scoped roles (issue 15 item 3): a role confined to identity name patterns reaches
the routes of one identity inside its scope; an identity outside answers 404 as one
that does not exist; the identity list and count and the latest values filter by the
scope (every other list: ``test_scoped_routes.py``); routes about no identity are
refused (403)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from hypothesis import given
from hypothesis import strategies as st

from millrace.api.users.scope import in_scope
from tests.api.conftest import NOW_US, V1, Api, error_of, uid


async def test_a_scoped_viewer_sees_only_its_identities(api: Api) -> None:
    prefix = uid("sc")
    names = [f"{prefix}-line1-a", f"{prefix}-line1-b", f"{prefix}-line2-a"]
    for name in names:
        r = await api.client.post(
            f"{V1}/identities", json={"identity": name}, headers=api.auth(api.operator)
        )
        assert r.status_code == 201, r.text
        r = await api.ingest(name, [{"timestamp": NOW_US - 1, "values": {"t": 1.5}}])
        assert r.status_code == 202, r.text
    await api.sync()
    pattern = f"{prefix}-line1-*"
    r = await api.client.post(
        f"{V1}/roles",
        json={
            "name": "line1-viewer",
            "permissions": ["identities:read", "signals:read", "sql:query", "stream:read"],
            "scope": {"identities": [pattern]},
        },
        headers=api.auth(api.admin),
    )
    assert r.status_code == 201, r.text
    assert r.json()["data"]["scope"] == {"identities": [pattern]}
    _, key = api.keys.create("line 1", "line1-viewer", known_roles={"line1-viewer"})

    for name in names:
        inside = fnmatchcase(name, pattern)  # the independent filter
        r = await api.get(f"/identities/{name}", key=key)
        assert r.status_code == (200 if inside else 404), (name, r.text)
        r = await api.get(f"/identities/{name}/signals", key=key, signals="t")
        assert r.status_code == (200 if inside else 404), (name, r.text)
        if not inside:
            assert error_of(r)["details"][0]["field"] == "identity"
    # the list and the count hold exactly the identities in scope
    mine = f"^{prefix}-"
    r = await api.get("/identities", key=key, identity=mine)
    assert r.status_code == 200, r.text
    listed = sorted(i["identity"] for i in r.json()["items"])
    assert listed == sorted(n for n in names if fnmatchcase(n, pattern))
    r = await api.get("/identities/count", key=key, identity=mine)
    assert r.json()["count"] == len(listed)
    r = await api.get("/identities", key="viewer", identity=mine)  # unscoped: all three
    assert len(r.json()["items"]) == 3
    r = await api.get("/signals/latest", key=key, identities=",".join(names))
    assert r.status_code == 200, r.text
    latest = sorted(row["identity"] for row in r.json()["data"])
    assert latest == listed and r.json()["total"] == len(listed)
    for path in ("/resources", "/connectors", "/status"):
        r = await api.get(path, key=key)
        assert r.status_code == 403, (path, r.text)
    # granted sql:query explicitly: SQL is open to it (and reads every row)
    assert (await api.sql("SELECT 1", key=key)).status_code == 200
    # permissions still apply inside the scope
    r = await api.client.delete(f"{V1}/identities/{names[0]}", headers=api.auth(key))
    assert r.status_code == 403
    # /me works: it is about the caller
    assert (await api.get("/me", key=key)).status_code == 200


@given(
    pattern=st.text(alphabet="ab-.*?", max_size=8),
    name=st.text(alphabet="ab-.", max_size=8),
)
def test_scope_patterns_read_like_shell_patterns(pattern: str, name: str) -> None:
    assert in_scope(name, [pattern]) == fnmatchcase(name, pattern)
