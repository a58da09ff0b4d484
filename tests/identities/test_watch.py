"""The identity watch's decisions (pipeline/identities/watch.py) with plain data: rows
as the stage reads them in, findings and events out, just before and after every
threshold. The same rules against chDB through the stage: tests/projections/test_watch.py."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.identities import watch as w
from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.pipeline.identities.watch import (
    ConnectivityRow,
    ExpiryRow,
    PendingRow,
    StaleRow,
    WatchMemory,
)
from millrace.pipeline.identities.watch_stage import IdentityWatchStage, WatchQueries

T0 = 1_760_000_000_000_000
S = 1_000_000


def test_expiry_names_what_ran_out_and_keys_it_by_its_deadline() -> None:
    found = w.expiry(
        [ExpiryRow("a", "whitelisted", T0, 0), ExpiryRow("b", "provisioned", 0, T0 + 5)]
    )
    assert [(f.identity, f.type, f.attributes, f.key) for f in found] == [
        ("a", "EXPIRED", {"what": "window"}, ("a", "EXPIRED", "window", T0)),
        ("b", "EXPIRED", {"what": "credentials"}, ("b", "EXPIRED", "credentials", T0 + 5)),
    ]


def _pending(resource: str, set_text: str, reading: object = None, at: int = T0) -> PendingRow:
    if reading is None:
        return PendingRow("d", resource, set_text, T0, False, 0, 0, None, "")
    if isinstance(reading, bool):
        return PendingRow("d", resource, set_text, T0, True, at, 1, float(reading), "")
    if isinstance(reading, str):
        return PendingRow("d", resource, set_text, T0, True, at, 2, 0.0, reading)
    assert isinstance(reading, int | float)
    return PendingRow("d", resource, set_text, T0, True, at, 0, float(reading), "")


def test_control_acknowledges_equal_reports_and_times_out_the_rest() -> None:
    defs = {"quiet": ResourceDefinition.model_validate({"sync": False})}
    rows = [
        _pending("sp", "21", 21.0),  # equal number: acknowledged
        _pending("valve", "true", True),  # boolean
        _pending("label", '"auto"', "auto"),
        _pending("one", "1", True),  # a boolean is not the number 1
        _pending("old", "5", 5.0, at=T0 - 1),  # reported before the set: not an ack
        _pending("quiet", "3"),  # sync off: never times out
        _pending("bad", "{nope"),
    ]
    timeout = 300
    at_limit, unreadable = w.control(rows, T0 + timeout * S, defs, timeout)
    assert [(f.type, f.state) for f in at_limit] == [
        ("STATE_ACKNOWLEDGED", {"sp": "21.0"}),
        ("STATE_ACKNOWLEDGED", {"valve": "true"}),
        ("STATE_ACKNOWLEDGED", {"label": '"auto"'}),
    ]
    assert [r.resource for r in unreadable] == ["bad"]
    after, _ = w.control(rows, T0 + timeout * S + 1, defs, timeout)
    assert [(f.type, f.state) for f in after[3:]] == [
        ("STATE_TIMED_OUT", {"one": "1"}),
        ("STATE_TIMED_OUT", {"old": "5"}),
    ]
    # both outcomes of one command share its key: it settles once
    assert {f.key for f in after} == {
        ("d", "STATE", r, T0) for r in ("sp", "valve", "label", "one", "old")
    }


def test_stale_timeouts_and_findings() -> None:
    defs = {
        "t": ResourceDefinition.model_validate({"timeout_s": 60}),
        "u": ResourceDefinition.model_validate({}),
    }
    assert w.stale_timeouts(defs) == {"t": 60 * S}
    found = w.stale([StaleRow("d", "t", T0, 0, float("nan"), "")])
    assert [(f.type, f.state, f.key) for f in found] == [
        ("RESOURCE_STALE", {"t": "null"}, ("d", "RESOURCE_STALE", "t", T0))
    ]


def test_connectivity_waits_for_its_own_event_to_land() -> None:
    memory = WatchMemory()
    row = ConnectivityRow("d", False, T0, T0 + 5 * S, "10.0.0.1", T0 + 5 * S)
    first = w.connectivity([row], memory)
    assert [(f.type, f.ip, f.attributes) for f in first] == [
        ("CONNECTED", "10.0.0.1", {"reason": "telemetry"})
    ]
    memory.remember(first, T0 + 6 * S)
    # newer telemetry (a new key) while the row has not caught up: nothing
    newer = row._replace(lastseen=T0 + 7 * S)
    assert w.connectivity([newer], memory) == []
    # the row caught up (updated_us reached the event) and still says disconnected
    caught_up = newer._replace(updated_us=T0 + 6 * S)
    assert [f.key for f in w.connectivity([caught_up], memory)] == [
        ("d", "CONNECTED", "", T0 + 7 * S)
    ]
    gone = ConnectivityRow("e", True, T0, T0, "", T0 + 1)
    assert [(f.type, f.ip) for f in w.connectivity([gone], memory)] == [("DISCONNECTED", None)]


def test_memory_forgets_after_ten_minutes_and_beyond_its_bound() -> None:
    memory = WatchMemory(max_remembered=2)
    found = w.expiry([ExpiryRow(i, "whitelisted", T0, 0) for i in ("a", "b", "c")])
    memory.remember(found, T0)
    memory.forget(T0)
    assert [f.identity for f in memory.fresh(found)] == ["a"]  # the oldest went first
    memory.forget(T0 + w.FORGET_AFTER_US)
    assert [f.identity for f in memory.fresh(found)] == ["a"]  # b, c: exactly 10 minutes
    memory.forget(T0 + w.FORGET_AFTER_US + 1)
    assert memory.fresh(found) == found


def test_events_group_per_resource_findings_of_one_identity() -> None:
    found = [
        *w.stale([StaleRow("d", "a", T0, 0, 1.0, ""), StaleRow("d", "b", T0, 2, 0.0, "x")]),
        *w.stale([StaleRow("e", "a", T0, 1, 0.0, "")]),
        *w.expiry([ExpiryRow("d", "whitelisted", T0, 0)]),
    ]
    events = w.events(found, T0 + S)
    assert [(k, e["type"], e["state"], e["ts_us"], e["actor"]) for k, e in events] == [
        ("d", "RESOURCE_STALE", {"a": "1.0", "b": '"x"'}, T0 + S, w.ACTOR),
        ("e", "RESOURCE_STALE", {"a": "false"}, T0 + S, w.ACTOR),
        ("d", "EXPIRED", None, T0 + S, w.ACTOR),
    ]


def test_retention_rules() -> None:
    defs = {
        "t": ResourceDefinition.model_validate({"retention_months": 3}),
        "u": ResourceDefinition.model_validate({}),
    }
    assert w.retention_rules(defs) == frozenset({("t", 3)})


class MemoryWatchQueries(WatchQueries):
    """Rows handed in by the test; records the retention it was asked to keep."""

    def __init__(self) -> None:
        self.expiry: list[ExpiryRow] = []
        self.defs: dict[str, ResourceDefinition] = {}
        self.ttl: frozenset[tuple[str, int]] = frozenset()
        self.ttl_calls = 0

    def definitions(self) -> dict[str, ResourceDefinition]:
        return dict(self.defs)

    def expiring(self, now: int) -> list[ExpiryRow]:
        return list(self.expiry)

    def pending(self) -> list[PendingRow]:
        raise ConnectionError("store down")

    def stale(self, now: int, timeouts_us: Mapping[str, int]) -> list[StaleRow]:
        return []

    def connectivity(self, now: int, default_timeout_s: int) -> list[ConnectivityRow]:
        return []

    def has_retention(self) -> bool:
        return bool(self.ttl)

    def set_retention(self, rules: frozenset[tuple[str, int]]) -> None:
        self.ttl, self.ttl_calls = rules, self.ttl_calls + 1


def test_the_stage_drives_the_rules_through_its_port() -> None:
    q = MemoryWatchQueries()
    q.expiry = [ExpiryRow("a", "whitelisted", T0, 0)]
    q.defs = {"t": ResourceDefinition.model_validate({"retention_months": 2})}
    pub = MemoryEventPublisher()
    stage = IdentityWatchStage(q, pub, clock=lambda: T0 + S)
    events = asyncio.run(stage.tick())
    assert [(k, e["type"]) for k, e in events] == [("a", "EXPIRED")]
    assert [e["type"] for _, e in pub.published["identity"]] == ["EXPIRED"]
    # the failing query is counted and the other rules ran
    assert stage.stats["errors"] == 1
    assert stage.stats["last_error"] == "control: ConnectionError: store down"
    assert q.ttl == {("t", 2)} and q.ttl_calls == 1
    assert asyncio.run(stage.tick()) == []  # remembered; retention unchanged
    assert q.ttl_calls == 1
