"""The alarm API: lists with filters, sorts and continuation tokens; acknowledge,
discard, annotate (one and in batches); alarm rules; roles.

Alarms are raised and cleared the way the engine's evaluator does it: AlarmEvents
appended to the ``alarms`` topic through the app's publisher. Each test uses identities
of its own and filters on them, so it sees only its own alarms; expectations are
computed here from what the test appended.
"""

from __future__ import annotations

import random
from typing import Any

import httpx

from millrace.pipeline.topics import ALARMS
from tests.api.conftest import NOW_US, V1, Api, assert_bad_field, error_of, uid

SECOND = 1_000_000
SIGNALS = ("temp", "pressure", "level")
TYPES = ("high_temp", "low_level", "stale")


def raised(
    alarm_id: str,
    identity: str,
    ts_us: int,
    *,
    signal: str | None = "temp",
    type: str = "high_temp",
    priority: int = 100,
    value: Any = 91.5,
    requires_ack: bool = True,
    kind: str = "RAISED",
) -> dict[str, Any]:
    return {
        "alarm_id": alarm_id,
        "ts_us": ts_us,
        "type": kind,
        "rule_id": "rule-" + type,
        "rule_type": type,
        "identity": identity,
        "signal": signal,
        "priority": priority,
        "message": f"{signal} of {identity} is {value}",
        "trigger_value": value,
        "user": None,
        "note": None,
        "requires_ack": requires_ack,
        "definition": None,
    }


async def append(api: Api, *events: dict[str, Any]) -> None:
    """Append as the engine would, and let the projections catch up."""
    await api.ctx.publisher.publish(ALARMS, [(e["alarm_id"], e) for e in events])
    await api.sync()


async def post(api: Api, path: str, body: Any = None, key: str = "operator") -> httpx.Response:
    headers = api.auth(api._key(key))
    if body is None:
        return await api.client.post(f"{V1}{path}", headers=headers)
    return await api.client.post(f"{V1}{path}", json=body, headers=headers)


async def list_alarms(api: Api, **params: Any) -> dict[str, Any]:
    r = await api.get("/alarms", **params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# -- a population of alarms ---------------------------------------------------------------


async def population(
    api: Api, n: int = 40, seed: int = 7
) -> tuple[list[str], list[dict[str, Any]]]:
    """``n`` alarms over three identities of this test, with random signals, types,
    priorities (with ties) and raised times (with ties); some cleared, acknowledged or
    discarded. Returns the identities and the expected alarms."""
    rnd = random.Random(seed)
    idents = [uid("alm") for _ in range(3)]
    expected: list[dict[str, Any]] = []
    events = []
    for i in range(n):
        a = {
            "alarm_id": f"{idents[0]}-{i:03d}-{rnd.randrange(1000)}",
            "identity": rnd.choice(idents),
            "signal": rnd.choice(SIGNALS),
            "type": rnd.choice(TYPES),
            "priority": rnd.choice((0, 10, 100, 100, 200, 255)),
            "raised_us": NOW_US - rnd.randrange(0, 20) * SECOND,
            "state": "active",
            "mgmt": "pending",
        }
        expected.append(a)
        events.append(
            raised(
                a["alarm_id"],
                a["identity"],
                a["raised_us"],
                signal=a["signal"],
                type=a["type"],
                priority=a["priority"],
            )
        )
    await append(api, *events)
    steps = []
    for a in expected:
        if rnd.random() < 0.4:
            a["state"] = "cleared"
            steps.append(raised(a["alarm_id"], a["identity"], NOW_US, kind="CLEARED", value=1.0))
        roll = rnd.random()
        if roll < 0.3:
            a["mgmt"] = "acknowledged"
            steps.append(
                {**raised(a["alarm_id"], a["identity"], NOW_US, kind="ACKNOWLEDGED"), "user": "u"}
            )
        elif roll < 0.5:
            a["mgmt"] = "discarded"
            steps.append(
                {**raised(a["alarm_id"], a["identity"], NOW_US, kind="DISCARDED"), "user": "u"}
            )
    await append(api, *steps)
    return idents, expected


def ordered(alarms: list[dict[str, Any]], sort: str) -> list[str]:
    field = "raised_us" if sort.endswith("creation_time") else "priority"
    rows = sorted(alarms, key=lambda a: (a[field], a["alarm_id"]), reverse=sort.startswith("-"))
    return [a["alarm_id"] for a in rows]


async def test_list_filters_and_sorts_match_expectations(api: Api) -> None:
    idents, alarms = await population(api)
    base = {"identity": ",".join(idents), "limit": 1000}
    for sort in ("creation_time", "-creation_time", "priority", "-priority"):
        body = await list_alarms(api, **base, sort=sort)
        assert [a["alarm_id"] for a in body["data"]] == ordered(alarms, sort), sort
        assert body["meta"]["pagination"]["total_rows"] == len(alarms)
        assert body["meta"]["continuation_token"] is None

    t0 = NOW_US - 12 * SECOND
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"identity": idents[1]}, lambda a: a["identity"] == idents[1]),
        ({"signal": "temp,level"}, lambda a: a["signal"] in ("temp", "level")),
        ({"type": "stale"}, lambda a: a["type"] == "stale"),
        ({"priority_range": "10,100"}, lambda a: 10 <= a["priority"] <= 100),
        ({"priority_range": "255,255"}, lambda a: a["priority"] == 255),
        ({"state": "active"}, lambda a: a["state"] == "active"),
        ({"state": "cleared"}, lambda a: a["state"] == "cleared"),
        ({"include_acknowledged": "true"}, lambda a: a["mgmt"] == "acknowledged"),
        ({"include_acknowledged": "false"}, lambda a: a["mgmt"] != "acknowledged"),
        ({"include_discarded": "true"}, lambda a: a["mgmt"] == "discarded"),
        ({"include_discarded": "false"}, lambda a: a["mgmt"] != "discarded"),
        (
            {"include_acknowledged": "false", "include_discarded": "false"},
            lambda a: a["mgmt"] == "pending",
        ),
        ({"start_time": str(t0 / SECOND)}, lambda a: a["raised_us"] >= t0),
        (
            {"start_time": "2025-06-01T11:59:45Z", "end_time": "2025-06-01T11:59:55Z"},
            lambda a: NOW_US - 15 * SECOND <= a["raised_us"] < NOW_US - 5 * SECOND,
        ),
        (
            {"start_time": str((NOW_US - 15 * SECOND) // 1000), "epoch": "ms", "state": "active"},
            lambda a: a["raised_us"] >= NOW_US - 15 * SECOND and a["state"] == "active",
        ),
    ]
    for params, keep in cases:
        params = {"identity": ",".join(idents), **params}
        body = await list_alarms(api, limit=1000, sort="priority", **params)
        want = ordered([a for a in alarms if keep(a)], "priority")
        assert [a["alarm_id"] for a in body["data"]] == want, params
        assert body["meta"]["pagination"]["total_rows"] == len(want), params


async def test_alarm_json_has_management_info_and_times(api: Api) -> None:
    ident = uid("alm")
    aid = uid("a-")
    await append(api, raised(aid, ident, NOW_US - SECOND, priority=42, value=88))
    r = await api.get(f"/alarms/{aid}")
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["alarm_id"] == aid and a["identity"] == ident and a["signal"] == "temp"
    assert a["type"] == "high_temp" and a["priority"] == 42 and a["trigger_value"] == 88
    assert a["state"] == "active" and a["open"] is True and a["requires_ack"] is True
    assert a["creation_time"] == "2025-06-01T11:59:59Z"
    assert a["clear_time"] is None and a["annotation_count"] == 0
    assert a["management"] == {
        "status": "pending",
        "acknowledged_by": None,
        "acknowledged_time": None,
        "acknowledge_note": None,
        "discarded_by": None,
        "discarded_time": None,
        "discard_note": None,
    }
    r = await api.get(f"/alarms/{aid}", epoch="ms")
    assert r.json()["creation_time"] == (NOW_US - SECOND) // 1000
    await append(api, raised(aid, ident, NOW_US, kind="CLEARED", value=70))
    a = (await api.get(f"/alarms/{aid}")).json()
    assert a["state"] == "cleared" and a["clear_value"] == 70
    assert a["clear_time"] == "2025-06-01T12:00:00Z"
    assert a["open"] is True  # cleared but still waiting for its acknowledgement


async def test_continuation_token_walks_every_row_once_while_alarms_arrive(api: Api) -> None:
    idents, alarms = await population(api, n=30, seed=11)
    late = [
        {"alarm_id": uid("late-"), "raised_us": NOW_US + (k + 1) * SECOND, "priority": 100}
        for k in range(5)
    ]
    for sort in ("-creation_time", "creation_time", "priority", "-priority"):
        want = ordered(alarms, sort)
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            params: dict[str, Any] = {"identity": ",".join(idents), "sort": sort, "limit": 7}
            if token is not None:
                params["continuation_token"] = token
            body = await list_alarms(api, **params)
            assert len(body["data"]) <= 7
            seen += [a["alarm_id"] for a in body["data"]]
            token = body["meta"]["continuation_token"]
            pages += 1
            if pages == 1 and sort == "-creation_time":
                # newer alarms arrive after the first page: they sort before the
                # cursor, so the walk neither repeats nor skips a row
                await append(api, *(raised(a["alarm_id"], idents[0], a["raised_us"]) for a in late))
                alarms = alarms + late
            if token is None:
                break
        assert seen == want, sort
        assert pages == -(-len(want) // 7)


async def test_continuation_token_errors(api: Api) -> None:
    idents, _ = await population(api, n=5, seed=3)
    body = await list_alarms(api, identity=",".join(idents), limit=2, sort="priority")
    token = body["meta"]["continuation_token"]
    assert token
    r = await api.get(
        "/alarms", identity=",".join(idents), sort="-priority", continuation_token=token
    )
    assert_bad_field(r, "continuation_token")
    r = await api.get("/alarms", continuation_token="not a token!")
    assert_bad_field(r, "continuation_token")
    r = await api.get("/alarms", priority_range="5")
    assert_bad_field(r, "priority_range")
    r = await api.get("/alarms", priority_range="10,5")
    assert_bad_field(r, "priority_range")
    r = await api.get("/alarms", state="gone")
    assert r.status_code == 400 and error_of(r)["details"][0]["field"] == "state"
    r = await api.get("/alarms", sort="severity")
    assert r.status_code == 400 and error_of(r)["details"][0]["field"] == "sort"


async def test_acknowledge_discard_annotate(api: Api) -> None:
    ident = uid("alm")
    aid = uid("a-")
    await append(api, raised(aid, ident, NOW_US - 5 * SECOND))

    r = await post(api, f"/alarms/{uid('nope-')}/acknowledge")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"

    r = await post(api, f"/alarms/{aid}/acknowledge", {"note": "on it"})
    assert r.status_code == 200, r.text
    m = r.json()["management"]
    assert m["status"] == "acknowledged" and m["acknowledge_note"] == "on it"
    assert m["acknowledged_by"].endswith("test operator")
    assert m["acknowledged_time"] == "2025-06-01T12:00:00Z"
    # read-your-writes: the next GET sees it
    assert (await api.get(f"/alarms/{aid}")).json()["management"]["status"] == "acknowledged"

    r = await post(api, f"/alarms/{aid}/acknowledge")
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"

    for text in ("first note", "second note"):
        r = await post(api, f"/alarms/{aid}/annotations", {"text": text})
        assert r.status_code == 201, r.text
    assert r.json()["seq"] == 2 and r.json()["text"] == "second note"
    r = await post(api, f"/alarms/{aid}/annotations", {"text": ""})
    assert_bad_field(r, "body.text")

    r = await post(api, f"/alarms/{aid}/discard", {"note": "noise"})
    assert r.status_code == 200, r.text
    assert r.json()["management"]["status"] == "discarded"
    assert r.json()["management"]["discard_note"] == "noise"
    r = await post(api, f"/alarms/{aid}/discard")
    assert r.status_code == 409
    r = await post(api, f"/alarms/{aid}/annotations", {"text": "after discard"})
    assert r.status_code == 201

    r = await api.get(f"/alarms/{aid}/annotations")
    assert r.status_code == 200
    notes = r.json()["data"]
    assert [(n["seq"], n["text"]) for n in notes] == [
        (1, "first note"),
        (2, "second note"),
        (3, "after discard"),
    ]
    assert all(n["user"].endswith("test operator") for n in notes)
    assert (await api.get(f"/alarms/{aid}")).json()["annotation_count"] == 3
    r = await api.get(f"/alarms/{uid('nope-')}/annotations")
    assert r.status_code == 404

    # audited with before and after
    await api.sync()
    r = await api.get("/audits", key="operator", target_id=aid, sort="creation_time")
    assert r.status_code == 200, r.text
    rows = [a for a in r.json()["data"] if a["status"] == "ok"]
    assert [a["action"] for a in rows] == [
        "acknowledge",
        "annotate",
        "annotate",
        "discard",
        "annotate",
    ]
    assert rows[0]["before"]["management"]["status"] == "pending"
    assert rows[0]["after"]["management"]["status"] == "acknowledged"


async def test_acknowledging_a_discarded_alarm_is_a_conflict(api: Api) -> None:
    ident = uid("alm")
    aid = uid("a-")
    await append(api, raised(aid, ident, NOW_US))
    assert (await post(api, f"/alarms/{aid}/discard")).status_code == 200
    r = await post(api, f"/alarms/{aid}/acknowledge", {"note": "late"})
    assert r.status_code == 409
    assert "discarded" in error_of(r)["message"]
    a = (await api.get(f"/alarms/{aid}")).json()
    assert a["management"]["status"] == "discarded"
    assert a["management"]["acknowledged_by"] is None


async def test_batch_with_partial_failure(api: Api) -> None:
    ident = uid("alm")
    a1, a2, a3 = (uid("b-") for _ in range(3))
    missing = uid("gone-")
    await append(api, *(raised(a, ident, NOW_US) for a in (a1, a2, a3)))
    assert (await post(api, f"/alarms/{a3}/discard")).status_code == 200

    r = await post(
        api, "/alarms/batch/acknowledge", {"ids": [a1, missing, a3, a2, a1], "note": "shift"}
    )
    assert r.status_code == 207, r.text
    body = r.json()
    assert [(x["id"], x["status"]) for x in body["data"]] == [
        (a1, 200),
        (missing, 404),
        (a3, 409),
        (a2, 200),
        (a1, 409),
    ]
    assert all((x["error"] is None) == (x["status"] == 200) for x in body["data"])
    assert body["meta"] == {"succeeded": 2, "failed": 3}
    for a in (a1, a2):
        m = (await api.get(f"/alarms/{a}")).json()["management"]
        assert m["status"] == "acknowledged" and m["acknowledge_note"] == "shift"
    # every item is in the audit trail with its own outcome
    await api.sync()
    trail = []
    for a in (a1, a2, a3, missing):
        r = await api.get("/audits", key="operator", target_id=a, action="acknowledge")
        trail += [(x["target_id"], x["status"]) for x in r.json()["data"]]
    assert sorted(trail) == sorted(
        [(a1, "ok"), (a1, "conflict"), (a2, "ok"), (a3, "conflict"), (missing, "not_found")]
    )

    r = await post(api, "/alarms/batch/discard", {"ids": [a1, a2]})
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["data"]] == [200, 200]
    listed = await list_alarms(api, identity=ident, include_discarded="true")
    assert {a["alarm_id"] for a in listed["data"]} == {a1, a2, a3}

    r = await post(api, "/alarms/batch/discard", {"ids": []})
    assert_bad_field(r, "body.ids")


async def test_roles(api: Api) -> None:
    ident = uid("alm")
    aid = uid("a-")
    await append(api, raised(aid, ident, NOW_US))
    assert (await api.get(f"/alarms/{aid}", key="viewer")).status_code == 200
    assert (await api.get("/alarms", key=None)).status_code == 401
    for path, body in (
        (f"/alarms/{aid}/acknowledge", None),
        (f"/alarms/{aid}/discard", None),
        (f"/alarms/{aid}/annotations", {"text": "x"}),
        ("/alarms/batch/acknowledge", {"ids": [aid]}),
    ):
        r = await post(api, path, body, key="viewer")
        assert r.status_code == 403, (path, r.text)
    rule = {"id": uid("r"), "kind": "stale", "signal": "temp", "timeout_s": 60}
    assert (await post(api, "/alarm-rules", rule, key="operator")).status_code == 403
    assert (await api.get(f"/alarms/{aid}")).json()["management"]["status"] == "pending"


async def test_rule_crud(api: Api) -> None:
    rid = uid("rule-")
    rule = {
        "id": rid,
        "kind": "limit",
        "type": "high_temp",
        "signal": "temp",
        "high": 80,
        "low": 10,
        "deadband": 2,
        "priority": 200,
    }
    r = await post(api, "/alarm-rules", rule, key="admin")
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["id"] == rid and got["high"] == 80 and got["priority"] == 200
    assert got["last_update_time"] == "2025-06-01T12:00:00Z"
    assert got["updated_by"].endswith("test admin")

    r = await post(api, "/alarm-rules", rule, key="admin")
    assert r.status_code == 409

    r = await api.get(f"/alarm-rules/{rid}")
    assert r.status_code == 200 and r.json() == got
    listed = (await api.get("/alarm-rules", limit=10_000)).json()["data"]
    assert got in listed

    # GET -> modify -> PUT round trip (the read-only fields are ignored)
    changed = {**got, "high": 90}
    r = await api.client.put(f"{V1}/alarm-rules/{rid}", json=changed, headers=api.auth(api.admin))
    assert r.status_code == 200, r.text
    assert r.json()["high"] == 90
    assert (await api.get(f"/alarm-rules/{rid}")).json()["high"] == 90

    # impossible limits name the field
    bad = {**rule, "low": 95}
    r = await api.client.put(f"{V1}/alarm-rules/{rid}", json=bad, headers=api.auth(api.admin))
    assert_bad_field(r, "low")
    r = await post(api, "/alarm-rules", {**rule, "id": uid("rule-"), "low": 80}, key="admin")
    assert_bad_field(r, "low")
    r = await post(
        api,
        "/alarm-rules",
        {"id": "bad id", "kind": "limit", "high": 1, "priority": 999},
        key="admin",
    )
    assert r.status_code == 400
    fields = {d["field"] for d in error_of(r)["details"]}
    assert {"id", "priority"} <= fields
    r = await api.client.put(
        f"{V1}/alarm-rules/{rid}", json={**rule, "id": "other"}, headers=api.auth(api.admin)
    )
    assert_bad_field(r, "id")
    r = await api.client.put(
        f"{V1}/alarm-rules/{uid('rule-')}", json=rule | {"id": None}, headers=api.auth(api.admin)
    )
    assert_bad_field(r, "id")
    r = await api.client.put(
        f"{V1}/alarm-rules/{uid('rule-')}",
        json={k: v for k, v in rule.items() if k != "id"},
        headers=api.auth(api.admin),
    )
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"

    r = await api.client.delete(f"{V1}/alarm-rules/{rid}", headers=api.auth(api.admin))
    assert r.status_code == 204
    assert (await api.get(f"/alarm-rules/{rid}")).status_code == 404
    r = await api.client.delete(f"{V1}/alarm-rules/{rid}", headers=api.auth(api.admin))
    assert r.status_code == 404
    # a removed rule can be defined again
    r = await post(api, "/alarm-rules", rule, key="admin")
    assert r.status_code == 201

    # each definition is audited with the rule before and after
    await api.sync()
    r = await api.get("/audits", key="operator", target_id=rid, sort="creation_time")
    assert r.status_code == 200, r.text
    rows = [a for a in r.json()["data"] if a["status"] == "ok"]
    assert [a["action"] for a in rows] == ["create", "update", "delete", "create"]
    assert {a["target_type"] for a in rows} == {"alarm_rule"}
    assert rows[0]["before"] is None and rows[0]["after"]["high"] == 80
    assert rows[1]["before"]["high"] == 80 and rows[1]["after"]["high"] == 90
    assert rows[2]["before"]["high"] == 90 and rows[2]["after"] is None
