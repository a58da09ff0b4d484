"""Roles scoped by tag criteria (issue 15 item 3: "a name pattern and/or tag criteria,
as the identity filters already take"): the identities a tag scope reaches are those
whose tags meet every criterion (and whose names match the role's patterns, when it
has some), on every route, as for name patterns. Compared with the set computed here
from the tags the test seeded."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from millrace.pipeline.topics import ALARMS
from tests.api.conftest import NOW_US, V1, Api, assert_bad_field, uid
from tests.api.test_alarms import raised

#: identity suffix -> its tags
TAGS: dict[str, dict[str, list[str]]] = {
    "a": {"zone": ["east"], "floor": ["2"]},
    "b": {"zone": ["east", "west"], "floor": ["10"]},
    "c": {"zone": ["west"], "floor": ["3"]},
    "d": {"floor": ["2"]},
}


def meets(tags: dict[str, list[str]], name: str, op: str, value: str) -> bool:
    """The criterion as the test reads it: any value of the tag; as numbers when both
    parse as numbers."""

    def holds(v: str) -> bool:
        try:
            a: Any = float(v)
            b: Any = float(value)
        except ValueError:
            a, b = v, value
        return {
            "eq": a == b,
            "ne": a != b,
            "gt": a > b,
            "gte": a >= b,
            "lt": a < b,
            "lte": a <= b,
        }[op]

    return any(holds(v) for v in tags.get(name, []))


async def seed(api: Api) -> tuple[str, dict[str, dict[str, list[str]]]]:
    prefix = uid("tsc")
    seeded = {f"{prefix}-{k}": v for k, v in TAGS.items()}
    for name, tags in seeded.items():
        r = await api.client.post(
            f"{V1}/identities",
            json={"identity": name, "tags": tags},
            headers=api.auth(api.operator),
        )
        assert r.status_code == 201, r.text
    events = [raised(f"{name}-al", name, NOW_US) for name in seeded]
    await api.ctx.publisher.publish(ALARMS, [(e["alarm_id"], e) for e in events])
    await api.sync()
    return prefix, seeded


async def scoped_key(api: Api, scope: dict[str, Any]) -> str:
    role = uid("tagrole")
    r = await api.client.post(
        f"{V1}/roles",
        json={"name": role, "permissions": ["identities:read", "alarms:read"], "scope": scope},
        headers=api.auth(api.admin),
    )
    assert r.status_code == 201, r.text
    assert r.json()["data"]["scope"]["tags"] == scope.get("tags", [])
    _, key = api.keys.create("tags", role, known_roles={role})
    return key


async def visible(api: Api, key: str, prefix: str) -> dict[str, set[str]]:
    """What the key sees of this test's identities, route by route."""
    listed = (await api.get("/identities", key=key, identity=f"^{prefix}-")).json()["items"]
    alarms = (await api.get("/alarms", key=key, limit=1000)).json()["data"]
    out = {"list": {i["identity"] for i in listed}, "alarms": {a["identity"] for a in alarms}}
    out["get"] = set()
    for suffix in TAGS:
        name = f"{prefix}-{suffix}"
        r = await api.get(f"/identities/{name}", key=key)
        assert r.status_code in (200, 404), r.text
        if r.status_code == 200:
            out["get"].add(name)
    return out


async def test_a_tag_scope_reaches_the_identities_whose_tags_meet_it(api: Api) -> None:
    prefix, seeded = await seed(api)
    for criteria in (["zone:eq:east"], ["floor:gt:2"], ["zone:eq:east", "floor:lt:5"]):
        key = await scoped_key(api, {"tags": criteria})
        parts = [c.split(":", 2) for c in criteria]
        expected = {n for n, t in seeded.items() if all(meets(t, *p) for p in parts)}
        assert expected and expected != set(seeded)
        # other tests' identities may meet the criteria too: look at this test's only
        seen = await visible(api, key, prefix)
        assert {k: v & set(seeded) for k, v in seen.items()} == {
            "list": expected,
            "get": expected,
            "alarms": expected,
        }, criteria


async def test_patterns_and_tags_together_both_hold(api: Api) -> None:
    prefix, seeded = await seed(api)
    patterns = [f"{prefix}-?"]
    key = await scoped_key(api, {"identities": patterns, "tags": ["floor:lte:2"]})
    expected = {
        n
        for n, t in seeded.items()
        if any(fnmatchcase(n, p) for p in patterns) and meets(t, "floor", "lte", "2")
    }
    assert expected == {f"{prefix}-a", f"{prefix}-d"}
    seen = await visible(api, key, prefix)
    assert seen == {"list": expected, "get": expected, "alarms": expected}


async def test_a_tag_change_moves_an_identity_into_the_scope(api: Api) -> None:
    prefix, _ = await seed(api)
    key = await scoped_key(api, {"identities": [f"{prefix}-*"], "tags": ["zone:eq:east"]})
    outside = f"{prefix}-c"
    assert (await api.get(f"/identities/{outside}", key=key)).status_code == 404
    r = await api.client.post(
        f"{V1}/identities/{outside}/tags",
        json={"tags": {"zone": ["east"]}},
        headers=api.auth(api.operator),
    )
    assert r.status_code == 200, r.text
    api.ctx.tag_scopes.invalidate()  # else within the cache's second
    assert (await api.get(f"/identities/{outside}", key=key)).status_code == 200


async def test_a_bad_tag_criterion_or_an_empty_scope_is_400_naming_it(api: Api) -> None:
    admin = api.auth(api.admin)
    for scope, field in (
        ({"tags": ["zone:east"]}, "body.scope.tags[0]"),
        ({"identities": ["x-*"], "tags": ["floor:gt:1", "nope"]}, "body.scope.tags[1]"),
    ):
        r = await api.client.post(
            f"{V1}/roles",
            json={"name": uid("bad"), "permissions": ["identities:read"], "scope": scope},
            headers=admin,
        )
        assert_bad_field(r, field)
    r = await api.client.post(
        f"{V1}/roles",
        json={"name": uid("bad"), "permissions": ["identities:read"], "scope": {}},
        headers=admin,
    )
    assert r.status_code in (400, 422), r.text
    assert "scope" in r.text
