"""Resource states, runner heartbeats and connection errors: the status processor alone,
and its projections in chDB filled by the real pipeline (appends, crashes at any insert,
restarts with other batch sizes, full replays) compared with what this test computes
on its own from the events it appended. Also the read side: identities' desired state
as resources, filters, paging, counts per service and runner health."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.errors import StoreError
from millrace.pipeline.events import identity_event
from millrace.pipeline.heartbeat import RunnerHeartbeat
from millrace.pipeline.identities.resources import same_value
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.base import Event
from millrace.pipeline.processors.identity import IdentityProcessor
from millrace.pipeline.processors.status import StatusProcessor
from millrace.pipeline.processors.telemetry import TelemetryProcessor
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.projections.migrations import drop_projections, migrate
from millrace.projections.registry import RegistryQueries
from millrace.projections.resource_states import (
    DEFAULT_INTERVAL_S,
    Page,
    QueryError,
    ResourceFilter,
    ResourceStateQueries,
)
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.projection_reset import empty_projections
from tests.projections.test_exactly_once import CrashingStore

S = 1_000_000
MIN = 60 * S
T0 = 1_760_000_040 * S  # 2025-10-09T08:54:00Z, a minute boundary


def status(
    rid: str,
    current: str,
    ts: int,
    *,
    desired: str = "running",
    service: str = "svc-a",
    runner: str | None = "host-1",
    rtype: str = "connection",
    counter: float | None = None,
    interval: float | None = None,
    info: str = "",
) -> tuple[str, dict[str, Any]]:
    metrics: dict[str, float] = {"readings": 1.0}
    if counter is not None:
        metrics["connect_errors"] = counter
    if interval is not None:
        metrics["interval_s"] = interval
    return rid, {
        "resource_id": rid,
        "service_id": service,
        "resource_type": rtype,
        "desired_state": desired,
        "current_state": current,
        "info": info,
        "runner": runner,
        "ts_us": ts,
        "metrics": metrics,
    }


def processors() -> list[Any]:
    return [TelemetryProcessor(), IdentityProcessor(), StatusProcessor()]


# -- the independent model ----------------------------------------------------------------


def expected_states(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """resource -> (desired, current, deviated, ts, since, deviated since, counter), by
    walking the events in log order; an observation older than the resource's latest
    is ignored."""
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        rid, ts = e["resource_id"], e["ts_us"]
        old = out.get(rid)
        if old is not None and ts < old["ts_us"]:
            continue
        deviated = e["desired_state"] != e["current_state"]
        same = old is not None and old["current_state"] == e["current_state"]
        since = old["since_us"] if same and old is not None else ts
        if not deviated:
            dev_since = 0
        elif old is not None and old["deviated"]:
            dev_since = old["deviated_since_us"]
        else:
            dev_since = ts
        counter = e["metrics"].get("connect_errors")
        out[rid] = {
            "desired_state": e["desired_state"],
            "current_state": e["current_state"],
            "deviated": deviated,
            "ts_us": ts,
            "since_us": since,
            "deviated_since_us": dev_since,
            "connect_errors": counter
            if counter is not None
            else (old or {}).get("connect_errors", 0.0),
        }
    return out


def expected_errors(events: list[dict[str, Any]]) -> dict[int, int]:
    """Failed connections per minute bucket (seconds): counter increases between a
    resource's consecutive (not late) observations; a decrease counts the new value."""
    last: dict[str, tuple[int, float]] = {}
    per_minute: Counter[int] = Counter()
    for e in events:
        rid, ts = e["resource_id"], e["ts_us"]
        seen_ts, seen = last.get(rid, (-(2**63), 0.0))
        if ts < seen_ts:
            continue
        counter = e["metrics"].get("connect_errors")
        if counter is None:
            last[rid] = (ts, seen)
            continue
        n = counter - seen if counter >= seen else counter
        if n:
            per_minute[(ts - ts % MIN) // S] += int(n)
        last[rid] = (ts, counter)
    return dict(per_minute)


def expected_runners(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    runners: dict[str, dict[str, Any]] = {}
    for e in events:
        name = e["runner"]
        if not name:
            continue
        r = runners.setdefault(
            name,
            {"last": e["ts_us"], "first": e["ts_us"], "services": set(), "hb": None},
        )
        r["last"] = max(r["last"], e["ts_us"])
        r["first"] = min(r["first"], e["ts_us"])
        r["services"].add(e["service_id"])
        if e["resource_type"] == "runner" and (r["hb"] is None or e["ts_us"] > r["hb"][0]):
            r["hb"] = (e["ts_us"], e["metrics"]["interval_s"], e["current_state"])
    return runners


def actual_states(store: ChdbStore) -> dict[str, dict[str, Any]]:
    rows = store.execute(
        "SELECT resource_id, desired_state, current_state, deviated, ts_us, since_us, "
        "deviated_since_us, connect_errors FROM millrace.resource_states FINAL"
    ).rows
    return {
        r[0]: {
            "desired_state": r[1],
            "current_state": r[2],
            "deviated": bool(r[3]),
            "ts_us": int(r[4]),
            "since_us": int(r[5]),
            "deviated_since_us": int(r[6]),
            "connect_errors": float(r[7]),
        }
        for r in rows
    }


def actual_errors(store: ChdbStore) -> dict[int, int]:
    rows = store.execute(
        "SELECT toUnixTimestamp(bucket) AS b, sum(count) FROM millrace.device_metrics "
        "WHERE metric = 'connection_error' GROUP BY b"
    ).rows
    return {int(b): int(n) for b, n in rows}


def check(store: ChdbStore, events: list[dict[str, Any]]) -> None:
    assert actual_states(store) == expected_states(events)
    assert actual_errors(store) == expected_errors(events)
    now = T0 + 3600 * S
    got, total = ResourceStateQueries(store).runners(now, Page(1, 100))
    want = expected_runners(events)
    assert total == len(want)
    assert [r["runner"] for r in got] == sorted(want)
    for r in got:
        w = want[r["runner"]]
        interval = w["hb"][1] if w["hb"] else DEFAULT_INTERVAL_S
        assert r["last_us"] == w["last"] and r["first_us"] == w["first"]
        assert r["service_ids"] == sorted(w["services"])
        assert r["interval_s"] == interval
        assert r["state"] == (w["hb"][2] if w["hb"] else None)
        misses = max((now - w["last"]) // int(interval * S) - 1, 0)
        assert r["misses"] == misses
        assert r["healthy"] == (misses < 3)


# -- property: any sequence, any crash pattern --------------------------------------------


_resource = st.sampled_from(["modbus:a", "modbus:b", "opcua:c"])
_event = st.tuples(
    _resource,
    st.sampled_from(["running", "stopped"]),
    st.sampled_from(["running", "error", "reconnecting", "stopped"]),
    st.integers(0, 400),  # seconds after T0: out of order across events
    st.one_of(st.none(), st.integers(0, 6)),  # connect_errors: ups, downs (restarts), absent
    st.sampled_from(["host-1", "host-2", None]),
)
_heartbeat = st.tuples(
    st.just("runner"),
    st.sampled_from(["host-1", "host-3"]),
    st.sampled_from(["running", "stopped"]),
    st.integers(0, 400),
    st.sampled_from([5.0, 10.0, 30.0]),
)
append_op = st.tuples(
    st.just("append"), st.lists(st.one_of(_event, _event, _heartbeat), min_size=1, max_size=8)
)
crash_op = st.tuples(st.just("crash"), st.integers(1, 8), st.integers(1, 5))
restart_op = st.tuples(st.just("restart"), st.integers(1, 5))
replay_op = st.tuples(st.just("replay"))
ops_st = st.lists(
    st.one_of(append_op, append_op, crash_op, restart_op, replay_op), min_size=1, max_size=8
)


def _materialize(item: tuple[Any, ...], n: int) -> tuple[str, dict[str, Any]]:
    """The status event of a generated item; ``n`` (< 1000) keeps every ts distinct."""
    if item[0] == "runner":
        _, name, state, sec, interval = item
        return status(
            f"runner:{name}",
            state,
            T0 + sec * S + n,
            desired=state,
            service="millrace",
            runner=name,
            rtype="runner",
            interval=interval,
        )
    rid, desired, current, sec, counter, runner = item
    return status(
        rid,
        current,
        T0 + sec * S + n,
        desired=desired,
        service=rid.split(":")[0],
        runner=runner,
        counter=None if counter is None else float(counter),
    )


async def scenario(store: ChdbStore, ops: list[tuple[Any, ...]]) -> None:
    log = MemoryEventLog()
    publisher = LogPublisher(log)
    appended: list[dict[str, Any]] = []

    def runtime(max_records: int, crash_at: int | None = None) -> EmbeddedRuntime:
        sink = ProjectionWriter(CrashingStore(store, crash_at))
        return EmbeddedRuntime(log, sink, processors(), max_records=max_records)

    for op in ops:
        if op[0] == "append":
            batch = [_materialize(item, len(appended) + i) for i, item in enumerate(op[1])]
            await publisher.publish("status", batch)
            appended.extend(e for _, e in batch)
        elif op[0] == "crash":
            try:
                await runtime(op[2], crash_at=op[1]).run_until_idle()
            except StoreError as exc:
                assert "injected" in str(exc)
        elif op[0] == "restart":
            await runtime(op[1]).run_until_idle()
        else:
            drop_projections(store)
            migrate(store)
            await runtime(3).run_until_idle()
    await runtime(4).run_until_idle()
    # every resource is in one partition, so log order per resource = append order
    check(store, appended)
    await runtime(1).run_until_idle()  # a second pass over a processed log: no change
    check(store, appended)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops_st)
def test_fold_is_exactly_once_under_crashes_and_replays(
    store: ChdbStore, ops: list[tuple[Any, ...]]
) -> None:
    empty_projections(store)  # each example starts empty
    asyncio.run(scenario(store, ops))


# -- the processor alone ------------------------------------------------------------------


def events_of(*items: tuple[str, dict[str, Any]], first: int = 0) -> list[Event]:
    return [
        Event("status", 0, first + i, T0, key.encode(), value)
        for i, (key, value) in enumerate(items)
    ]


def table_rows(out: Any, name: str) -> list[dict[str, Any]]:
    return out.tables[name].to_pylist() if name in out.tables else []


def test_transitions_since_and_deviated_since() -> None:
    evs = events_of(
        status("r", "connecting", T0 + 1, counter=0),
        status("r", "running", T0 + 2, counter=0),
        status("r", "error", T0 + 3, counter=1, info="Connection refused"),
        status("r", "error", T0 + 4, counter=1, info="Host not found"),
        status("r", "running", T0 + 5, counter=1),
        status("r", "stopped", T0 + 6, desired="stopped", counter=1),
    )
    proc = StatusProcessor()
    # fold one event at a time, each starting from the row the previous one left
    snapshots = []
    state: dict[str, Any] = {}
    for ev in evs:
        out = proc.process_with_state([ev], state)
        (row,) = table_rows(out, "resource_states")
        state = {"r": {**row, "metrics": dict(row["metrics"])}}
        snapshots.append(
            (row["current_state"], row["deviated"], row["since_us"], row["deviated_since_us"])
        )
    assert snapshots == [
        ("connecting", 1, T0 + 1, T0 + 1),
        ("running", 0, T0 + 2, 0),
        ("error", 1, T0 + 3, T0 + 3),
        ("error", 1, T0 + 3, T0 + 3),  # info changed, state did not
        ("running", 0, T0 + 5, 0),
        ("stopped", 0, T0 + 6, 0),  # stopped on purpose: not a deviation
    ]
    # the same events in one batch end in the same row
    (whole,) = table_rows(proc.process_with_state(evs, {}), "resource_states")
    assert (whole["since_us"], whole["version"]) == (T0 + 6, 6)
    assert whole["info"] == "" and whole["runner"] == "host-1"


def test_connection_errors_count_increases_and_restarts() -> None:
    evs = events_of(
        status("r", "connecting", T0, counter=0),
        status("r", "error", T0 + 1, counter=1),
        status("r", "error", T0 + MIN, counter=5),  # a heartbeat: 4 more, same state
        status("r", "error", T0 + MIN + 1),  # no counter: nothing
        status("r", "connecting", T0 + 2 * MIN, counter=2),  # restarted: 2 new
        status("r", "error", T0 + 2 * MIN - 5, counter=0),  # late (older): ignored
        status("other", "error", T0 + 2 * MIN, counter=3),  # first sight: from 0
    )
    out = StatusProcessor().process_with_state(evs, {})
    got = Counter((m["ts"], m["value"]) for m in table_rows(out, "device_metrics"))
    assert {m["metric"] for m in table_rows(out, "device_metrics")} == {"connection_error"}
    assert got == {(T0 + 1, 1.0): 1, (T0 + MIN, 1.0): 4, (T0 + 2 * MIN, 1.0): 2 + 3}
    rows = {r["resource_id"]: r for r in table_rows(out, "resource_states")}
    assert rows["r"]["current_state"] == "connecting"  # the late "error" did not win
    assert rows["r"]["ts_us"] == T0 + 2 * MIN and rows["r"]["connect_errors"] == 2.0
    assert rows["r"]["version"] == 6  # but it was applied: a redo skips it


def test_a_redone_batch_gives_the_same_metrics_and_no_state() -> None:
    """The batch's resource_states insert landed, device_metrics did not: the redo reads
    the row the first attempt wrote and must count the same failures again."""
    before = events_of(status("r", "error", T0, counter=3), first=0)
    proc = StatusProcessor()
    (row0,) = table_rows(proc.process_with_state(before, {}), "resource_states")
    state0 = {"r": {**row0, "metrics": dict(row0["metrics"])}}
    batch = events_of(
        status("r", "error", T0 + 1, counter=7),
        status("r", "running", T0 + 2, counter=7),
        status("runner:host-1", "running", T0 + 3, rtype="runner", interval=10.0),
        first=1,
    )
    first = proc.process_with_state(batch, state0)
    rows = {r["resource_id"]: r for r in table_rows(first, "resource_states")}
    landed = {k: {**v, "metrics": dict(v["metrics"])} for k, v in rows.items()}
    assert rows["r"]["base_version"] == 1 and rows["r"]["base_connect_errors"] == 3.0
    redo = proc.process_with_state(batch, landed)
    assert "resource_states" not in redo.tables
    assert table_rows(redo, "device_metrics") == table_rows(first, "device_metrics")
    assert len(table_rows(first, "device_metrics")) == 4
    assert table_rows(redo, "resource_runners") == table_rows(first, "resource_runners")


def test_an_event_without_a_resource_id_is_a_dead_letter() -> None:
    _, bad = status("", "running", T0)
    evs = events_of(("x", bad), status("r", "running", T0 + 1))
    out = StatusProcessor().process_with_state(evs, {})
    assert [d["source_offset"] for d in out.deadletters] == [0]
    assert "resource_id" in out.deadletters[0]["reason"]
    assert [r["resource_id"] for r in table_rows(out, "resource_states")] == ["r"]


async def test_runner_heartbeat_publishes_and_stops() -> None:
    pub = MemoryEventPublisher()
    clock = iter(range(T0, T0 + 1000))
    hb = RunnerHeartbeat(pub, "host-9", interval_s=0.01, clock=lambda: next(clock))
    stop = asyncio.Event()
    task = asyncio.create_task(hb.run(stop))
    while hb.sent < 3:
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.wait_for(task, 2)
    sent = [e for _, e in pub.published["status"]]
    assert all(k == "runner:host-9" for k, _ in pub.published["status"])
    assert [e["current_state"] for e in sent][-1] == "stopped"
    assert {e["current_state"] for e in sent[:-1]} == {"running"}
    assert all(e["desired_state"] == e["current_state"] for e in sent)
    assert all(e["metrics"] == {"interval_s": 0.01} and e["runner"] == "host-9" for e in sent)
    assert [e["ts_us"] for e in sent] == sorted(e["ts_us"] for e in sent)
    with pytest.raises(ValueError, match="interval_s"):
        RunnerHeartbeat(pub, "x", interval_s=0)


# -- the read side ------------------------------------------------------------------------


async def run(store: ChdbStore, topics: Mapping[str, list[tuple[str, dict[str, Any]]]]) -> None:
    log = MemoryEventLog()
    publisher = LogPublisher(log)
    for topic, events in topics.items():
        await publisher.publish(topic, events)
    await EmbeddedRuntime(log, ProjectionWriter(store), processors()).run_until_idle()


def telemetry(identity: str, ts: int, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return identity, {
        "identity": identity,
        "source": "t",
        "received_us": ts,
        "samples": [{"ts_us": ts, "values": values, "quality": 0}],
    }


def test_identities_desired_state_are_resources(store: ChdbStore) -> None:
    sets = {
        "sp": json.dumps(21),  # reported 21.0: equal as JSON numbers
        "mode": json.dumps("on"),  # reported "on"
        "flag": json.dumps(True),  # reported 1 (a number): true is not 1
        "flag2": json.dumps(True),  # reported True
        "level": json.dumps(3),  # never reported
        "name": json.dumps("x"),  # reported "y"
        "ratio": json.dumps(2.5),  # reported 2
    }
    identity = [
        ("d1", identity_event("d1", "CREATED", T0)),
        ("d1", identity_event("d1", "STATE_SET", T0 + 10, state=sets)),
        ("gone", identity_event("gone", "CREATED", T0)),
        ("gone", identity_event("gone", "STATE_SET", T0 + 1, state={"sp": "1"})),
        ("gone", identity_event("gone", "DELETED", T0 + 2)),
    ]
    reports = {"sp": 21.0, "mode": "on", "flag": 1, "flag2": True, "name": "y", "ratio": 2}
    identity += [
        ("d1", identity_event("d1", "STATE_ACKNOWLEDGED", T0 + 30, state={"sp": "21.0"})),
        ("d1", identity_event("d1", "STATE_TIMED_OUT", T0 + 31, state={"name": '"x"'})),
    ]
    report = telemetry("d1", T0 + 20, reports)
    asyncio.run(run(store, {"identity": identity, "telemetry": [report]}))

    rows, total = ResourceStateQueries(store).states(ResourceFilter(), Page(1, 100))
    assert total == len(sets) and len(rows) == len(sets)
    by_id = {r["resource_id"]: r for r in rows}
    assert sorted(by_id) == sorted(f"identity:d1/{k}" for k in sets)
    # what GET /identities/d1/state shows: the set value and the reported one
    reported = RegistryQueries(store).reported("d1")
    for resource, text in sets.items():
        r = by_id[f"identity:d1/{resource}"]
        assert (r["service_id"], r["resource_type"]) == ("identities", "identity_state")
        assert r["desired_state"] == text
        rep = reported.get(resource)
        want = rep is None or not same_value(json.loads(text), rep["value"])
        assert r["deviated"] is want, resource
        if rep is None:
            assert r["current_state"] == "" and r["since_us"] == T0 + 10
        else:
            assert json.loads(r["current_state"]) == rep["value"], resource
            assert r["since_us"] == rep["ts_us"] == T0 + 20
        assert r["deviated_since_us"] == (max(T0 + 10, T0 + 20 if rep else 0) if want else None)
    assert {k for k in sets if by_id[f"identity:d1/{k}"]["deviated"]} == {
        "flag",
        "level",
        "name",
        "ratio",
    }
    assert by_id["identity:d1/sp"]["info"] == "acknowledged"
    assert by_id["identity:d1/name"]["info"] == "timed out"
    assert by_id["identity:d1/mode"]["info"] == "pending"


def test_filters_paging_and_counts(store: ChdbStore) -> None:
    events = [
        status("m:1", "running", T0, service="svc1"),
        status("m:2", "error", T0 + 1, service="svc1"),
        status("m:3", "reconnecting", T0 + 2, service="svc1"),
        status("o:1", "error", T0 + 3, service="svc2"),
        status("o:2", "stopped", T0 + 4, service="svc2", desired="stopped"),
        status("q:1", "running", T0 + 5, service="svc3"),
    ]
    identity = [
        ("dev", identity_event("dev", "CREATED", T0)),
        ("dev", identity_event("dev", "STATE_SET", T0 + 1, state={"sp": "5"})),
    ]
    asyncio.run(run(store, {"status": events, "identity": identity}))
    q = ResourceStateQueries(store)
    everything, total = q.states(ResourceFilter(), Page(1, 100))
    ids = [(r["service_id"], r["resource_id"]) for r in everything]
    assert ids == sorted(ids) and total == 7
    deviated = {r["resource_id"] for r in everything if r["deviated"]}
    assert deviated == {"m:2", "m:3", "o:1", "identity:dev/sp"}

    def ids_of(f: ResourceFilter) -> list[str]:
        rows, n = q.states(f, Page(1, 100))
        assert n == len(rows)
        return [r["resource_id"] for r in rows]

    assert ids_of(ResourceFilter(service_ids=("svc1", "svc3"))) == ["m:1", "m:2", "m:3", "q:1"]
    # resource ids win over service ids
    assert ids_of(ResourceFilter(service_ids=("svc1",), resource_ids=("o:1", "q:1"))) == [
        "o:1",
        "q:1",
    ]
    assert ids_of(ResourceFilter(service_ids=("svc1",), deviated=True)) == ["m:2", "m:3"]
    assert ids_of(ResourceFilter(service_ids=("svc1", "svc2"), deviated=False)) == ["m:1", "o:2"]
    assert ids_of(ResourceFilter(resource_ids=("identity:dev/sp",))) == ["identity:dev/sp"]
    devs, n = q.deviations(ResourceFilter(service_ids=("svc2",)), Page(1, 10))
    assert [r["resource_id"] for r in devs] == ["o:1"] and n == 1
    assert devs[0]["deviated_since_us"] == T0 + 3

    # pages of 3 put together are the whole list
    pages = [q.states(ResourceFilter(), Page(p, 3)) for p in (1, 2, 3, 4)]
    assert [len(rows) for rows, _ in pages] == [3, 3, 1, 0]
    assert [r for rows, _ in pages for r in rows] == everything
    assert {n for _, n in pages} == {7}

    counts, n = q.deviation_counts((), Page(1, 100))
    assert counts == [
        {"service_id": "identities", "count": 1},
        {"service_id": "svc1", "count": 2},
        {"service_id": "svc2", "count": 1},
    ]
    assert n == 3
    assert q.deviation_counts(("svc2", "svc3"), Page(1, 100)) == (
        [{"service_id": "svc2", "count": 1}],
        1,
    )
    assert q.deviation_counts((), Page(2, 2)) == ([{"service_id": "svc2", "count": 1}], 3)
    with pytest.raises(QueryError) as err:
        q.states(ResourceFilter(), Page(0, 10))
    assert err.value.field == "page"
    with pytest.raises(QueryError) as err:
        q.states(ResourceFilter(), Page(1, 0))
    assert err.value.field == "items_per_page"


def test_runner_misses_and_health(store: ChdbStore) -> None:
    events = [
        status("runner:a", "running", T0, rtype="runner", runner="a", interval=10.0),
        status("modbus:x", "running", T0 + 5 * S, runner="a"),  # a later sign of life
        status("modbus:y", "running", T0, runner="b"),  # no explicit heartbeat
    ]
    asyncio.run(run(store, {"status": events}))
    q = ResourceStateQueries(store, unhealthy_misses=3)

    def health(now: int) -> dict[str, tuple[int, bool]]:
        rows, _ = q.runners(now, Page(1, 10))
        return {r["runner"]: (r["misses"], r["healthy"]) for r in rows}

    last_a = T0 + 5 * S
    assert health(last_a + 19 * S) == {"a": (0, True), "b": (0, True)}
    assert health(last_a + 20 * S) == {"a": (1, True), "b": (0, True)}
    assert health(last_a + 39 * S)["a"] == (2, True)
    assert health(last_a + 40 * S)["a"] == (3, False)
    # b: the default interval (30 s): 3 misses after 4 intervals
    assert health(T0 + 119 * S)["b"] == (2, True)
    assert health(T0 + 120 * S)["b"] == (3, False)
    assert health(T0 - 60 * S) == {"a": (0, True), "b": (0, True)}  # a clock behind
    rows, total = q.runners(T0, Page(2, 1))
    assert total == 2 and [r["runner"] for r in rows] == ["b"]
    assert rows[0]["interval_s"] == DEFAULT_INTERVAL_S and not rows[0]["explicit_heartbeat"]
    with pytest.raises(QueryError):
        q.runners(-1, Page(1, 10))
