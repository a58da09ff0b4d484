"""Scoped roles on every route that lists or acts on identities' data (issue 15 item 3).

One seeded world per test: three identities of the test's own prefix, two inside the
role's pattern and one outside, each with readings, a desired state, tags, alarms, audit
records and a dead letter, all made the way the engine makes them (API writes, alarm
events and an undecodable record appended to the log). What a scoped key sees is
compared with the set computed here with ``fnmatch`` (the independent filter) over what
was seeded; what an unscoped key sees shows the out-of-scope objects do exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import httpx

from millrace.api.permissions import SCOPE_AWARE
from millrace.api.stream import StreamHub
from millrace.api.stream_tail import LogTail
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import Message
from millrace.pipeline.topics import ALARMS, TELEMETRY
from tests.api.conftest import NOW_US, V1, Api, error_of, uid
from tests.api.test_alarms import raised
from tests.api.test_stream_access import rest_of
from tests.api.test_stream_routes import AsgiStream

READS = [
    "identities:read",
    "signals:read",
    "state:read",
    "alarms:read",
    "audits:read",
    "stream:read",
    "deadletters:read",
]
ACTS = ["alarms:acknowledge", "identities:write", "state:set"]


@dataclass
class World:
    prefix: str
    names: list[str]
    pattern: str
    setpoint: str
    #: alarm id -> identity
    alarms: dict[str, str]
    #: tag name -> the identities carrying it
    tags: dict[str, list[str]]
    key: str  # the scoped key

    def inside(self, identity: str) -> bool:
        return fnmatchcase(identity, self.pattern)

    @property
    def in_scope(self) -> set[str]:
        return {n for n in self.names if self.inside(n)}

    def alarm_of(self, inside: bool) -> str:
        return next(a for a, i in sorted(self.alarms.items()) if self.inside(i) == inside)


async def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


async def seed(api: Api, permissions: list[str] = READS + ACTS) -> World:
    prefix = uid("scp")
    names = [f"{prefix}-in-a", f"{prefix}-in-b", f"{prefix}-out-a"]
    pattern = f"{prefix}-in-*"
    setpoint = uid("sp")
    admin, operator = api.auth(api.admin), api.auth(api.operator)
    await _ok(
        await api.client.put(f"{V1}/resources/{setpoint}", json={"settable": True}, headers=admin),
        201,
    )
    shared_tag = f"{prefix}-zone"
    tags: dict[str, list[str]] = {shared_tag: list(names)}
    for name in names:
        await _ok(
            await api.client.post(f"{V1}/identities", json={"identity": name}, headers=operator),
            201,
        )
        own_tag = f"{name}-tag"
        tags[own_tag] = [name]
        body = {"tags": {shared_tag: [name], own_tag: ["x"]}}
        await _ok(
            await api.client.post(f"{V1}/identities/{name}/tags", json=body, headers=operator)
        )
        await _ok(await api.ingest(name, [{"timestamp": NOW_US - 1, "values": {"t": 1.5}}]), 202)
        await _ok(
            await api.client.post(
                f"{V1}/identities/{name}/state", json={setpoint: 7}, headers=operator
            ),
            202,
        )
        # an undecodable telemetry record keyed by the identity: the decode stage's
        # dead letter names it
        await api.log.append(TELEMETRY, [Message(b"\x00not avro", key=name.encode())])
    alarms = {f"{name}-al{i}": name for name in names for i in range(2)}
    events = [raised(a, ident, NOW_US - 5_000_000) for a, ident in alarms.items()]
    await api.ctx.publisher.publish(ALARMS, [(e["alarm_id"], e) for e in events])
    await api.sync()
    role = uid("scoped")
    await _ok(
        await api.client.post(
            f"{V1}/roles",
            json={"name": role, "permissions": permissions, "scope": {"identities": [pattern]}},
            headers=admin,
        ),
        201,
    )
    _, key = api.keys.create("scoped", role, known_roles={role})
    return World(prefix, names, pattern, setpoint, alarms, tags, key)


async def test_alarms_lists_and_reads_hold_only_the_identities_in_scope(api: Api) -> None:
    w = await seed(api)
    body = await _ok(await api.get("/alarms", key=w.key, limit=1000))
    assert {a["alarm_id"] for a in body["data"]} == {a for a, i in w.alarms.items() if w.inside(i)}
    assert body["meta"]["pagination"]["total_rows"] == len(body["data"]) == 4
    # a filter on an identity out of scope finds nothing (not an error: it does not exist)
    out = next(n for n in w.names if not w.inside(n))
    assert (await _ok(await api.get("/alarms", key=w.key, identity=out)))["data"] == []
    # the unscoped viewer sees all six
    every = await _ok(await api.get("/alarms", key="viewer", identity=",".join(w.names)))
    assert {a["alarm_id"] for a in every["data"]} == set(w.alarms)
    for alarm_id, identity in w.alarms.items():
        for path in (f"/alarms/{alarm_id}", f"/alarms/{alarm_id}/annotations"):
            r = await api.get(path, key=w.key)
            assert r.status_code == (200 if w.inside(identity) else 404), (path, r.text)
            if not w.inside(identity):
                assert error_of(r)["code"] == "not_found"


async def test_acting_on_an_alarm_out_of_scope_is_404_singly_and_in_batch(api: Api) -> None:
    w = await seed(api)
    mine, theirs = w.alarm_of(True), w.alarm_of(False)
    headers = api.auth(w.key)
    for action, body in (
        ("acknowledge", {"note": "n"}),
        ("discard", {"note": "n"}),
        ("annotations", {"text": "t"}),
    ):
        r = await api.client.post(f"{V1}/alarms/{theirs}/{action}", json=body, headers=headers)
        assert r.status_code == 404, (action, r.text)
    r = await api.client.post(
        f"{V1}/alarms/batch/acknowledge", json={"ids": [mine, theirs]}, headers=headers
    )
    assert r.status_code == 207, r.text
    assert {i["id"]: i["status"] for i in r.json()["data"]} == {mine: 200, theirs: 404}
    r = await api.client.post(f"{V1}/alarms/batch/discard", json={"ids": [theirs]}, headers=headers)
    assert [i["status"] for i in r.json()["data"]] == [404]
    # the alarm out of scope is untouched; the one in scope was acknowledged
    seen = await _ok(await api.get(f"/alarms/{theirs}", key="viewer"))
    assert (seen["management"]["status"], seen["annotation_count"]) == ("pending", 0)
    assert (await _ok(await api.get(f"/alarms/{mine}", key="viewer")))["management"][
        "status"
    ] == "acknowledged"
    # the refused batch items are audited, and the scoped key does not see them
    await api.sync()
    audits = await _ok(await api.get("/audits", key=w.key, limit=1000))
    targets = {(a["target_type"], a["target_id"]) for a in audits["data"]}
    assert ("alarm", mine) in targets and ("alarm", theirs) not in targets


async def test_audits_and_activities_are_those_about_identities_in_scope(api: Api) -> None:
    w = await seed(api)
    mine = w.alarm_of(True)
    await _ok(
        await api.client.post(f"{V1}/alarms/{mine}/acknowledge", headers=api.auth(api.operator))
    )
    # and one about an identity out of scope
    theirs = w.alarm_of(False)
    await _ok(
        await api.client.post(f"{V1}/alarms/{theirs}/acknowledge", headers=api.auth(api.operator))
    )
    await api.sync()
    # every record about this test's objects, as the unscoped operator sees them
    everything: list[dict[str, Any]] = []
    for target in [*w.names, *w.alarms]:
        everything += (await _ok(await api.get("/audits", key="operator", target_id=target)))[
            "data"
        ]
    about = {
        a["id"]: (
            a["target_id"] if a["target_type"] == "identity" else w.alarms.get(a["target_id"])
        )
        for a in everything
    }
    expected = {i for i, ident in about.items() if ident is not None and w.inside(ident)}
    assert len(expected) < len(about)  # some are out of scope
    got = await _ok(await api.get("/audits", key=w.key, limit=1000))
    assert {a["id"] for a in got["data"]} == expected
    for audit_id, ident in about.items():
        r = await api.get(f"/audits/{audit_id}", key=w.key)
        assert r.status_code == (200 if ident and w.inside(ident) else 404), r.text
    acts = await _ok(await api.get("/activities", key=w.key, limit=1000))
    alarms = {a["id"] for a in acts["data"] if a["activity_type"] == "alarm"}
    audits = {a["id"] for a in acts["data"] if a["activity_type"] == "audit"}
    assert alarms == {a for a, i in w.alarms.items() if w.inside(i)}
    assert audits == expected


async def test_tags_states_deviations_and_dead_letters_hold_only_the_scope(api: Api) -> None:
    w = await seed(api)
    inside = sorted(w.in_scope)
    # tag names and values: of the identities in scope only
    names = (await _ok(await api.get("/tags", key=w.key)))["tags"]
    assert set(names) == {t for t, owners in w.tags.items() if any(map(w.inside, owners))}
    shared = f"{w.prefix}-zone"
    values = (await _ok(await api.get(f"/tags/{shared}", key=w.key)))["values"]
    assert values == inside
    every = (await _ok(await api.get(f"/tags/{shared}", key="viewer")))["values"]
    assert every == sorted(w.names)
    for name in w.names:
        code = 200 if w.inside(name) else 404
        assert (await api.get(f"/identities/{name}/tags", key=w.key)).status_code == code
        r = await api.get(f"/identities/{name}/tags/{shared}", key=w.key)
        assert r.status_code == code
    # resource states: the desired state of the identities in scope, nothing else
    expected = {f"identity:{n}/{w.setpoint}" for n in inside}
    for path in ("/resources/states", "/resources/states/deviations"):
        body = await _ok(await api.get(path, key=w.key, items_per_page=1000))
        assert {r["resource_id"] for r in body["data"]} == expected, path
        assert body["meta"]["pagination"]["total_rows"] == len(expected)
    counts = await _ok(await api.get("/resources/states/deviations/count", key=w.key))
    assert counts["data"] == [{"service_id": "identities", "count": len(expected)}]
    # dead letters: those naming an identity in scope
    body = await _ok(await api.get("/deadletters", key=w.key, limit=1000))
    assert sorted(d["key"] for d in body["data"]) == inside
    assert body["total"] == len(inside)
    every = await _ok(await api.get("/deadletters", key="viewer", topic=TELEMETRY, limit=1000))
    assert set(w.names) <= {d["key"] for d in every["data"]}


async def test_readings_and_identity_routes_out_of_scope_are_404(api: Api) -> None:
    w = await seed(api)
    for name in w.names:
        code = 200 if w.inside(name) else 404
        for path, params in (
            (f"/identities/{name}/signals", {"signals": "t"}),
            (f"/identities/{name}/signals/t", {}),
            (f"/identities/{name}/signals/t/aggregates", {"window": "1m"}),
            (f"/identities/{name}/signals/aggregates", {"signals": "t", "window": "1m"}),
            (f"/identities/{name}/state", {}),
        ):
            r = await api.get(path, key=w.key, **params)
            assert r.status_code == code, (path, r.text)
        headers = api.auth(w.key)
        body = {"tags": {"more": ["y"]}}
        r = await api.client.post(f"{V1}/identities/{name}/tags", json=body, headers=headers)
        assert r.status_code == code, r.text
        r = await api.client.post(
            f"{V1}/identities/{name}/state", json={w.setpoint: 8}, headers=headers
        )
        assert r.status_code == (202 if w.inside(name) else 404), r.text
    latest = await _ok(await api.get("/signals/latest", key=w.key, identities=",".join(w.names)))
    assert {r["identity"] for r in latest["data"]} == w.in_scope


async def test_sql_is_for_scoped_roles_granted_it_and_reads_every_row(api: Api) -> None:
    """Analyst SQL cannot be confined to a scope: a scoped role without ``sql:query`` is
    refused; one granted it reads every row (the admin's explicit choice, documented)."""
    w = await seed(api)
    assert (await api.sql("SELECT 1", key=w.key)).status_code == 403
    granted = await seed(api, [*READS, "sql:query"])
    names = ",".join(f"'{n}'" for n in granted.names)
    r = await api.sql(
        f"SELECT count() AS n FROM millrace.identities_public WHERE identity IN ({names})",
        key=granted.key,
    )
    assert r.status_code == 200, r.text
    assert [int(v) for v in r.json()["rows"][0]] == [3], r.text


async def test_routes_about_no_identity_stay_refused(api: Api) -> None:
    w = await seed(api, [*READS, "resources:read", "system:read"])
    for path in ("/resources", "/resource-runners", "/metrics/devices", "/system/info"):
        r = await api.get(path, key=w.key, metric_name="connection")
        assert r.status_code == 403, (path, r.text)
    assert ("GET", f"{V1}/resources") not in SCOPE_AWARE


async def test_the_live_stream_delivers_only_items_in_scope(api: Api) -> None:
    """Over the app's HTTP interface, fed by the log tail: a scoped key's subscriptions
    receive readings, alarms, activities and deviations of the identities in scope only;
    an unscoped viewer's stream, fed the same log, receives those of all three."""
    hub = StreamHub(heartbeat_s=30)
    api.ctx.stream = hub
    tail = LogTail(api.log, default_codec(), hub)
    await tail.start()
    w = await seed(api)
    streams = {}
    for who, key, kinds in (
        ("scoped", w.key, ("latest", "alarm", "activity", "deviation")),
        ("viewer", api.viewer, ("latest", "alarm", "deviation")),
    ):
        stream = AsgiStream(api, f"access_token={key}")
        assert (await stream.start())[0] == 200
        sid = (await stream.next())["data"]["stream_id"]
        for kind in kinds:
            r = await api.client.post(
                f"{V1}/stream/{sid}/subscriptions", json={"kind": kind}, headers=api.auth(key)
            )
            assert r.status_code == 201, r.text
        streams[who] = stream
    operator = api.auth(api.operator)
    for name in w.names:
        await _ok(await api.ingest(name, [{"timestamp": NOW_US, "values": {"t": 2.5}}]), 202)
        # an audited write about each identity, and a deviation of its desired state
        await _ok(
            await api.client.post(
                f"{V1}/identities/{name}/tags", json={"tags": {"late": ["1"]}}, headers=operator
            )
        )
        await _ok(
            await api.client.post(
                f"{V1}/identities/{name}/state", json={w.setpoint: 9}, headers=operator
            ),
            202,
        )
    events = [raised(f"{a}-2", ident, NOW_US) for a, ident in w.alarms.items()]
    await api.ctx.publisher.publish(ALARMS, [(e["alarm_id"], e) for e in events])
    await api.sync()
    while await tail.step():
        pass
    # the last item, published after everything the tail read: both streams end on it
    hub.publish("latest", {"identity": sorted(w.in_scope)[-1], "signal": "end"})
    seen: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for who, stream in streams.items():
        got = seen.setdefault(who, [])
        while True:
            event = await stream.next()
            if event["event"] in ("heartbeat", "notice"):
                continue
            data = event["data"]["data"]
            if event["event"] == "latest" and data.get("signal") == "end":
                break
            got.append((event["event"], data))
        await stream.disconnect()

    def about(kind: str, d: dict[str, Any]) -> str:
        """The identity of an item, read here independently of the server's rule."""
        if kind == "deviation":
            return str(d["resource_id"]).removeprefix("identity:").split("/")[0]
        if d.get("activity_type") == "audit":
            return str(d["target_id"])
        return str(d["identity"])

    def identities(who: str, kind: str) -> set[str]:
        return {about(k, d) for k, d in seen[who] if k == kind} & set(w.names)

    for kind in ("latest", "alarm", "deviation"):
        assert identities("viewer", kind) == set(w.names), kind
    for kind in ("latest", "alarm", "activity", "deviation"):
        assert identities("scoped", kind) == w.in_scope, kind
    audits = {about(k, d) for k, d in seen["scoped"] if d.get("activity_type") == "audit"}
    assert audits == w.in_scope
    # nothing else reached the scoped stream: every item is about an identity in scope
    assert all(w.inside(about(k, d)) for k, d in seen["scoped"]), seen["scoped"]


async def test_a_changed_scope_ends_the_streams_opened_under_the_old_one(api: Api) -> None:
    """Subscriptions were filtered by the scope their stream was opened with: when an
    admin changes the role's scope, the stream ends (the client reconnects under the new
    one); a stream of another role goes on."""
    api.ctx.stream = StreamHub(heartbeat_s=30, recheck_s=0.01)
    w = await seed(api, ["stream:read"])
    stream = AsgiStream(api, f"access_token={w.key}")
    other = AsgiStream(api, f"access_token={api.viewer}")
    for s in (stream, other):
        assert (await s.start())[0] == 200
        assert (await s.next())["event"] == "hello"
    assert api.ctx.access is not None
    [role] = [r for r in api.ctx.access.users.custom_roles() if r.startswith("scoped")]
    r = await api.client.put(
        f"{V1}/roles/{role}",
        json={"permissions": ["stream:read"], "scope": {"identities": [f"{w.prefix}-*"]}},
        headers=api.auth(api.admin),
    )
    assert r.status_code == 200, r.text
    events = await rest_of(stream, 5.0)
    assert [(e["event"], e["data"]["code"]) for e in events] == [("notice", "revoked")]
    assert not other.task.done()
    await other.disconnect()


async def test_bulk_operations_act_on_the_identities_in_scope_only(api: Api) -> None:
    w = await seed(api)
    headers = api.auth(w.key)
    mine = f"^{w.prefix}-"  # matches all three; the scope narrows it to two
    body = {"query": {"identity": mine}, "update": {"attributes": {"zone": "b"}}}
    r = await api.client.post(f"{V1}/identities/bulk/update", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["matched"] == len(w.in_scope)
    for name in w.names:
        got = await _ok(await api.get(f"/identities/{name}", key="viewer"))
        assert (got["attributes"].get("zone") == "b") == w.inside(name), name
    r = await api.client.post(
        f"{V1}/identities/bulk/delete", json={"query": {"identity": mine}}, headers=headers
    )
    assert r.json()["deleted"] == len(w.in_scope), r.text
    listed = await _ok(await api.get("/identities", key="viewer", identity=mine))
    assert {i["identity"] for i in listed["items"]} == set(w.names) - w.in_scope
