"""The identity watch: events go through the real pipeline into chDB, the watch ticks
with an injected clock, and what it publishes is checked against values written here,
just before and just after every threshold; published events applied through the
IdentityProcessor leave the next tick quiet."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline.connector import Event, EventPublisher, MemoryEventPublisher
from millrace.pipeline.errors import StoreError
from millrace.pipeline.identities.watch import WatchSettings, WatchSettingsError
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.identity import IdentityProcessor
from millrace.pipeline.processors.telemetry import TelemetryProcessor
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.values import typed_value
from millrace.projections.store.base import ProjectionStore, QueryResult
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.watch_queries import (
    IdentityWatch,
    quote_literal,
    remove_ttl_sql,
    retention_sql,
)
from millrace.projections.writer import ProjectionWriter

T0 = 1_760_000_000_000_000
S = 1_000_000
ACTOR = "millrace:watch"
#: the telemetry of tests of other rules also connects their devices
CONNECTIVITY = ("CONNECTED", "DISCONNECTED")


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Recording(ProjectionStore):
    """Passes through; records statements and fails those containing ``fail_on``."""

    def __init__(self, inner: ProjectionStore) -> None:
        self.inner = inner
        self.sql: list[str] = []
        self.fail_on: str | None = None

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        self.sql.append(sql)
        if self.fail_on is not None and self.fail_on in sql:
            raise StoreError("injected failure")
        return self.inner.execute(sql, params, settings)

    def query_arrow(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        return self.inner.query_arrow(sql, params, settings)

    def insert_arrow(
        self, sql: str, table: pa.Table, settings: Mapping[str, Any] | None = None
    ) -> None:
        self.inner.insert_arrow(sql, table, settings)


class Env:
    """A log, the real runtime into the test store, and a watch on a memory publisher."""

    def __init__(
        self, store: ChdbStore, ignore: tuple[str, ...] = (), **watch_settings: Any
    ) -> None:
        self.store = store
        self.ignore = ignore
        self.log = MemoryEventLog(partitions=1)
        self.pub = LogPublisher(self.log)
        self.runtime = EmbeddedRuntime(
            self.log, ProjectionWriter(store), [TelemetryProcessor(), IdentityProcessor()]
        )
        self.clock = Clock()
        self.settings = WatchSettings(**watch_settings)
        self.out = MemoryEventPublisher()
        self.watch = self.new_watch()

    def new_watch(self) -> IdentityWatch:
        return IdentityWatch(self.store, self.out, self.settings, clock=self.clock)

    async def ev(self, identity: str, type_: str, ts: int, **fields: Any) -> None:
        event = {
            "event_id": uuid.uuid4().hex,
            "identity": identity,
            "ts_us": ts,
            "type": type_,
            "actor": "test",
            "ip": None,
            "tags": None,
            "state": None,
            "attributes": {},
        }
        event.update(fields)
        await self.pub.publish("identity", [(identity, event)])

    async def define(self, name: str, definition: str, ts: int = T0) -> None:
        await self.ev(
            "*", "RESOURCE_DEFINED", ts, attributes={"name": name, "definition": definition}
        )

    async def telemetry(
        self, identity: str, ts: int, values: dict[str, Any], ip: str | None = None
    ) -> None:
        batch = {
            "identity": identity,
            "source": "test",
            "received_us": ts,
            "samples": [{"ts_us": ts, "values": values, "quality": 0}],
            "ip": ip,
        }
        await self.pub.publish("telemetry", [(identity, batch)])

    async def sync(self) -> None:
        await self.runtime.run_until_idle()

    async def tick(self, now: int, watch: IdentityWatch | None = None) -> list[dict[str, Any]]:
        """The events of one tick at ``now``, without event_id (checked to be uuid hex)
        and ts_us (checked to be ``now``), except types the test ignores."""
        self.clock.now = now
        published = await (watch or self.watch).tick()
        out = []
        for key, event in published:
            e = dict(event)
            assert key == e["identity"]
            assert len(e.pop("event_id")) == 32
            assert e.pop("ts_us") == now
            if e["type"] not in self.ignore:
                out.append(e)
        return out

    async def apply(self) -> None:
        """Append everything the watch published to the log and project it."""
        events = self.out.published.pop("identity", [])
        await self.pub.publish("identity", events)
        await self.sync()
        _, dead = await self.log.offsets("deadletter", 0)
        assert dead == 0, "the log refused an event of the watch"

    def identity(self, identity: str, *columns: str) -> list[Any]:
        rows = self.store.execute(
            f"SELECT {', '.join(columns)} FROM millrace.identities FINAL "
            "WHERE identity = {i:String}",
            {"i": identity},
        ).rows
        return rows[0]


def event(
    identity: str,
    type_: str,
    *,
    state: dict[str, str] | None = None,
    attributes: dict[str, str] | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    return {
        "identity": identity,
        "type": type_,
        "actor": ACTOR,
        "ip": ip,
        "tags": None,
        "state": state,
        "attributes": attributes or {},
    }


# -- rules 1 and 2: expiry ----------------------------------------------------------------


async def test_provisioning_window_and_credentials_expire_once(store: ChdbStore) -> None:
    env = Env(store)
    await env.ev("w1", "CREATED", T0, attributes={"provision_until_us": str(T0 + 100 * S)})
    await env.ev("w2", "CREATED", T0)  # no window: never expires
    await env.ev(
        "p1",
        "CREATED",
        T0,
        attributes={
            "status": "provisioned",
            "credential_hash": "h",
            "credential_expires_us": str(T0 + 200 * S),
        },
    )
    await env.ev("p2", "CREATED", T0, attributes={"status": "provisioned", "credential_hash": "h"})
    # provisioned before its window passed: the window no longer matters
    await env.ev(
        "p3",
        "CREATED",
        T0,
        attributes={
            "status": "provisioned",
            "credential_hash": "h",
            "provision_until_us": str(T0 + 1),
        },
    )
    await env.sync()

    assert await env.tick(T0 + 100 * S) == []
    assert await env.tick(T0 + 100 * S + 1) == [
        event("w1", "EXPIRED", attributes={"what": "window"})
    ]
    assert await env.tick(T0 + 150 * S) == []  # not applied yet, but already emitted
    assert await env.tick(T0 + 200 * S) == []
    assert await env.tick(T0 + 200 * S + 1) == [
        event("p1", "EXPIRED", attributes={"what": "credentials"})
    ]
    assert env.watch.stats["published"] == {"EXPIRED": 2}
    assert env.watch.stats["ticks"] == 5

    await env.apply()
    assert env.identity("w1", "status") == ["expired"]
    assert env.identity("p1", "status") == ["reprovision"]
    assert await env.tick(T0 + 300 * S) == []
    # a fresh instance (nothing remembered) finds nothing either: the projection moved
    assert await env.tick(T0 + 300 * S, env.new_watch()) == []


async def test_a_locked_identity_expires_underneath_its_lock(store: ChdbStore) -> None:
    """Unlocked after its window passed, an identity is expired at once (no tick in
    which it could still provision)."""
    env = Env(store)
    await env.ev("w1", "CREATED", T0, attributes={"provision_until_us": str(T0 + 10 * S)})
    await env.ev("w1", "LOCKED", T0 + S)
    await env.sync()
    assert await env.tick(T0 + 10 * S) == []
    assert await env.tick(T0 + 10 * S + 1) == [
        event("w1", "EXPIRED", attributes={"what": "window"})
    ]
    await env.apply()
    assert env.identity("w1", "status", "locked_from") == ["locked", "expired"]
    assert await env.tick(T0 + 20 * S, env.new_watch()) == []


async def test_the_memory_of_emitted_events_is_bounded(store: ChdbStore) -> None:
    """Forgotten after 10 minutes or beyond the key limit: a condition the log did not
    change (here: events never applied) is then reported again."""
    env = Env(store)
    for name in ("w1", "w2"):
        await env.ev(name, "CREATED", T0, attributes={"provision_until_us": str(T0 + 1)})
    await env.sync()
    expired = {"what": "window"}
    assert await env.tick(T0 + S) == [
        event("w1", "EXPIRED", attributes=expired),
        event("w2", "EXPIRED", attributes=expired),
    ]
    assert await env.tick(T0 + 601 * S) == []
    assert await env.tick(T0 + 601 * S + 1) == [
        event("w1", "EXPIRED", attributes=expired),
        event("w2", "EXPIRED", attributes=expired),
    ]
    env.watch.memory.max_remembered = 1
    assert await env.tick(T0 + 602 * S) == [event("w1", "EXPIRED", attributes=expired)]


# -- rule 3: the control loop ----------------------------------------------------------------


async def test_reports_equal_to_set_values_acknowledge_them(store: ChdbStore) -> None:
    env = Env(store, ignore=CONNECTIVITY)
    set_at = T0 + 10 * S
    await env.ev("d1", "CREATED", T0)
    await env.ev(
        "d1",
        "STATE_SET",
        set_at,
        state={"sp": "21", "valve": "true", "label": '"auto"', "other": "1"},
    )
    await env.telemetry("d1", set_at, {"sp": 21.0})  # at set_ts: acknowledges
    await env.telemetry("d1", set_at - 1, {"valve": True})  # before the set: does not
    await env.telemetry("d1", set_at + S, {"label": "manual", "other": 1.5})  # not equal
    await env.sync()

    assert await env.tick(T0 + 20 * S) == [event("d1", "STATE_ACKNOWLEDGED", state={"sp": "21.0"})]
    assert await env.tick(T0 + 21 * S) == []

    await env.telemetry("d1", T0 + 30 * S, {"valve": True, "label": "auto", "other": 1.0})
    await env.sync()
    # several resources of one identity: one event
    assert await env.tick(T0 + 40 * S) == [
        event(
            "d1",
            "STATE_ACKNOWLEDGED",
            state={"label": '"auto"', "other": "1.0", "valve": "true"},
        )
    ]
    assert await env.tick(T0 + 41 * S) == []

    await env.apply()
    acked = env.identity("d1", "acked_ts")[0]
    assert acked == {
        "sp": T0 + 20 * S,
        "label": T0 + 40 * S,
        "other": T0 + 40 * S,
        "valve": T0 + 40 * S,
    }
    # long after the command timeout: acknowledged commands neither ack nor time out again
    assert await env.tick(T0 + 900 * S, env.new_watch()) == []

    # a new set value is pending again, and the next equal report acknowledges it
    await env.ev("d1", "STATE_SET", T0 + 1000 * S, state={"sp": "22"})
    await env.telemetry("d1", T0 + 1001 * S, {"sp": 22})
    await env.sync()
    # an int is reported as an int (its own kind since TelemetryBatch v5)
    assert await env.tick(T0 + 1002 * S) == [event("d1", "STATE_ACKNOWLEDGED", state={"sp": "22"})]


async def test_unreported_set_values_time_out(store: ChdbStore) -> None:
    env = Env(store, ignore=CONNECTIVITY, command_timeout_s=300)
    set_at = T0 + 10 * S
    await env.define("mode", '{"settable": true, "sync": false}')
    await env.define("valve", '{"format": "boolean", "settable": true}')
    await env.ev("d2", "CREATED", T0)
    await env.ev("d2", "STATE_SET", set_at, state={"sp": "5", "valve": "false", "mode": "2"})
    await env.telemetry("d2", set_at + S, {"sp": 4.0})  # reported, but not the set value
    await env.ev("gone", "CREATED", T0)
    await env.ev("gone", "STATE_SET", set_at, state={"sp": "1"})
    await env.ev("gone", "DELETED", set_at + S)
    await env.sync()

    assert await env.tick(set_at + 300 * S) == []
    # sync off ("mode"): set and reported change together, nothing is pending
    assert await env.tick(set_at + 300 * S + 1) == [
        event("d2", "STATE_TIMED_OUT", state={"sp": "5", "valve": "false"})
    ]
    assert await env.tick(set_at + 301 * S) == []
    await env.apply()
    assert env.identity("d2", "timed_out_ts")[0] == {
        "sp": set_at + 300 * S + 1,
        "valve": set_at + 300 * S + 1,
    }
    # a late report of a timed-out command does not acknowledge it
    await env.telemetry("d2", set_at + 400 * S, {"sp": 5.0})
    await env.sync()
    assert await env.tick(set_at + 401 * S) == []
    assert await env.tick(set_at + 401 * S, env.new_watch()) == []


# -- rule 4: stale resources --------------------------------------------------------------


async def test_silent_resources_become_stale_once_per_last_reading(store: ChdbStore) -> None:
    env = Env(store, ignore=CONNECTIVITY)
    await env.define("temp", '{"timeout_s": 60}')
    await env.define("door", '{"format": "boolean", "timeout_s": 30}')
    await env.define("mode", '{"format": "string", "timeout_s": 30}')
    await env.define("rpm", "{}")  # no timeout: never stale
    for name in ("d1", "d2"):
        await env.ev(name, "CREATED", T0)
    await env.telemetry("d1", T0, {"temp": 20.5, "rpm": 1.0, "door": True, "mode": "run"})
    await env.telemetry("d2", T0 + 30 * S, {"temp": 19.0})
    await env.telemetry("ghost", T0, {"temp": 1.0})  # not in the registry
    await env.sync()

    assert await env.tick(T0 + 30 * S) == []
    assert await env.tick(T0 + 30 * S + 1) == [
        event("d1", "RESOURCE_STALE", state={"door": "true", "mode": '"run"'})
    ]
    assert await env.tick(T0 + 60 * S) == []
    assert await env.tick(T0 + 60 * S + 1) == [
        event("d1", "RESOURCE_STALE", state={"temp": "20.5"})
    ]
    assert await env.tick(T0 + 90 * S) == []
    assert await env.tick(T0 + 90 * S + 1) == [
        event("d2", "RESOURCE_STALE", state={"temp": "19.0"})
    ]
    assert await env.tick(T0 + 95 * S) == []

    await env.apply()
    assert env.identity("d1", "stale_ts")[0] == {
        "door": T0 + 30 * S + 1,
        "mode": T0 + 30 * S + 1,
        "temp": T0 + 60 * S + 1,
    }
    assert await env.tick(T0 + 200 * S, env.new_watch()) == []

    # a new reading re-arms the timeout
    await env.telemetry("d1", T0 + 300 * S, {"temp": 21.0})
    await env.sync()
    assert await env.tick(T0 + 360 * S) == []
    assert await env.tick(T0 + 360 * S + 1) == [
        event("d1", "RESOURCE_STALE", state={"temp": "21.0"})
    ]


# -- rule 5: connectivity -----------------------------------------------------------------


async def test_telemetry_connects_and_silence_disconnects(store: ChdbStore) -> None:
    env = Env(store, default_inactivity_timeout_s=300)
    await env.ev("d1", "CREATED", T0)
    await env.ev("d2", "CREATED", T0, attributes={"inactivity_timeout_s": "60"})
    await env.ev("d3", "CREATED", T0)
    await env.ev("d3", "LOCKED", T0)
    await env.ev("d4", "CREATED", T0)
    await env.ev("d4", "CONNECTED", T0, ip="10.0.0.4")
    await env.ev("gone", "CREATED", T0)
    await env.ev("gone", "DELETED", T0)
    for name in ("d1", "d2", "d3", "gone", "ghost"):
        await env.telemetry(name, T0 + 5 * S, {"x": 1}, ip="10.0.0.1" if name == "d1" else None)
    await env.sync()

    assert await env.tick(T0 + 10 * S) == [
        event("d1", "CONNECTED", attributes={"reason": "telemetry"}, ip="10.0.0.1"),
        event("d2", "CONNECTED", attributes={"reason": "telemetry"}),
    ]
    # more telemetry while those events are still on their way: no second CONNECTED
    await env.telemetry("d1", T0 + 12 * S, {"x": 2}, ip="10.0.0.1")
    await env.sync()
    assert await env.tick(T0 + 15 * S) == []

    await env.apply()
    assert env.identity("d1", "connected", "connected_us", "lastip") == [1, T0 + 10 * S, "10.0.0.1"]
    assert env.identity("d3", "connected") == [0]

    # d2 (60 s): silent since its connection at T0 + 10 s
    assert await env.tick(T0 + 70 * S) == []
    assert await env.tick(T0 + 70 * S + 1) == [
        event("d2", "DISCONNECTED", attributes={"reason": "inactivity"})
    ]
    # d4 (default 300 s): connected at T0, never sent anything
    assert await env.tick(T0 + 300 * S) == []
    assert await env.tick(T0 + 300 * S + 1) == [
        event("d4", "DISCONNECTED", attributes={"reason": "inactivity"})
    ]
    # d1: last seen at T0 + 12 s
    assert await env.tick(T0 + 312 * S) == []
    assert await env.tick(T0 + 312 * S + 1) == [
        event("d1", "DISCONNECTED", attributes={"reason": "inactivity"})
    ]
    assert await env.tick(T0 + 313 * S) == []
    await env.apply()
    assert env.identity("d1", "connected", "disconnected_us") == [0, T0 + 312 * S + 1]
    assert await env.tick(T0 + 400 * S, env.new_watch()) == []
    assert env.watch.stats["published"] == {"CONNECTED": 2, "DISCONNECTED": 3}

    # telemetry again after the disconnection connects again, while it is younger than
    # the identity's timeout (d2: 60 s)
    await env.telemetry("d2", T0 + 500 * S, {"x": 3})
    await env.sync()
    assert await env.tick(T0 + 560 * S) == []
    assert await env.tick(T0 + 560 * S - 1, env.new_watch()) == [
        event("d2", "CONNECTED", attributes={"reason": "telemetry"})
    ]


# -- rule 6: retention ----------------------------------------------------------------------


def show_ttl(store: ProjectionStore) -> str | None:
    text = str(store.execute("SHOW CREATE TABLE millrace.readings").rows[0][0])
    lines = [line for line in text.splitlines() if line.startswith("TTL ")]
    return lines[0] if lines else None


async def test_retention_months_become_the_readings_ttl(store: ChdbStore) -> None:
    rec = Recording(store)
    env = Env(store)
    watch = IdentityWatch(rec, env.out, clock=env.clock)

    def alters() -> list[str]:
        return [s for s in rec.sql if s.startswith("ALTER")]

    await env.tick(T0, watch)
    assert show_ttl(store) is None and alters() == []

    await env.define("temp", '{"retention_months": 3}')
    await env.define("it's", '{"retention_months": 12}')
    await env.define("rpm", "{}")
    await env.sync()
    await env.tick(T0 + S, watch)
    assert show_ttl(store) == (
        "TTL toDateTime(ts) + toIntervalMonth(12) WHERE signal = 'it\\'s', "
        "toDateTime(ts) + toIntervalMonth(3) WHERE signal = 'temp'"
    )
    await env.tick(T0 + 2 * S, watch)
    assert len(alters()) == 1  # unchanged: not applied again

    await env.define("temp", '{"retention_months": 6}', ts=T0 + 3 * S)
    await env.ev("*", "RESOURCE_REMOVED", T0 + 3 * S, attributes={"name": "it's"})
    await env.sync()
    await env.tick(T0 + 3 * S, watch)
    assert show_ttl(store) == "TTL toDateTime(ts) + toIntervalMonth(6) WHERE signal = 'temp'"

    await env.ev("*", "RESOURCE_REMOVED", T0 + 4 * S, attributes={"name": "temp"})
    await env.sync()
    await env.tick(T0 + 4 * S, watch)
    assert show_ttl(store) is None
    assert alters()[-1] == "ALTER TABLE millrace.readings REMOVE TTL"
    await env.tick(T0 + 5 * S, watch)
    assert len(alters()) == 3

    # a TTL left behind (e.g. definitions removed while no watch ran) goes at the first tick
    store.execute(
        "ALTER TABLE millrace.readings MODIFY TTL toDateTime(ts) + INTERVAL 1 MONTH "
        "DELETE WHERE signal = 'old'"
    )
    await env.tick(T0 + 6 * S, env.new_watch())
    assert show_ttl(store) is None


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=20))
def test_quoted_literals_read_back_unchanged(chdb_store: ChdbStore, text: str) -> None:
    assert chdb_store.execute(f"SELECT {quote_literal(text)}").rows == [[text]]


def test_retention_sql() -> None:
    assert retention_sql([("b", 2), ("a\\", 1)]) == (
        "ALTER TABLE millrace.readings MODIFY TTL "
        "toDateTime(ts) + INTERVAL 1 MONTH DELETE WHERE signal = 'a\\\\', "
        "toDateTime(ts) + INTERVAL 2 MONTH DELETE WHERE signal = 'b'"
    )
    with pytest.raises(ValueError, match="at least one"):
        retention_sql([])
    with pytest.raises(
        ValueError, match=re.escape("retention of 'x': months must be 1..1200, got 0")
    ):
        retention_sql([("x", 0)])


def test_retention_on_a_cluster_alters_the_local_tables() -> None:
    """The Distributed ``readings`` holds no rows: the TTL goes on every shard's
    replicated table, ON CLUSTER."""
    assert retention_sql([("t", 3)], cluster="plant") == (
        "ALTER TABLE millrace.readings_local ON CLUSTER 'plant' MODIFY TTL "
        "toDateTime(ts) + INTERVAL 3 MONTH DELETE WHERE signal = 't'"
    )
    assert remove_ttl_sql("plant") == (
        "ALTER TABLE millrace.readings_local ON CLUSTER 'plant' REMOVE TTL"
    )
    assert remove_ttl_sql() == "ALTER TABLE millrace.readings REMOVE TTL"


def test_reported_values_decode_by_kind() -> None:
    assert typed_value(0, 2.5, "") == 2.5
    assert typed_value(0, None, "") is None  # NaN/inf come back as null
    assert typed_value(1, 0.0, "") is False
    assert typed_value(1, 1.0, "") is True
    assert typed_value(2, 0.0, "on") == "on"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"command_timeout_s": 0}, "watch.command_timeout_s: expected a whole number >= 1, got 0"),
        (
            {"default_inactivity_timeout_s": 1.5},
            "watch.default_inactivity_timeout_s: expected a whole number >= 1, got 1.5",
        ),
        ({"interval_s": 0}, "watch.interval_s: expected a number in (0, 3600], got 0"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(WatchSettingsError, match=re.escape(message)) as info:
        WatchSettings(**kwargs)
    assert isinstance(info.value, ValueError)


# -- failures ---------------------------------------------------------------------------


class FlakyPublisher(EventPublisher):
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.batches: list[list[tuple[str, Event]]] = []

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        assert topic == "identity"
        if self.failures:
            self.failures -= 1
            raise ConnectionError("log unreachable")
        self.batches.append(list(events))


async def test_failures_are_logged_and_retried(
    store: ChdbStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A rule whose query fails does not stop the others; a tick whose publish fails
    is logged by run(), which goes on and publishes it at the next tick."""
    env = Env(store)
    await env.ev("w1", "CREATED", T0, attributes={"provision_until_us": str(T0 + 1)})
    await env.ev("d1", "CREATED", T0)
    await env.ev("d1", "CONNECTED", T0)
    await env.sync()
    rec = Recording(store)
    rec.fail_on = "millrace.identity_seen"  # the connectivity query
    watch = IdentityWatch(rec, env.out, clock=env.clock)
    assert await env.tick(T0 + 400 * S, watch) == [
        event("w1", "EXPIRED", attributes={"what": "window"})
    ]
    assert watch.stats["errors"] == 1
    assert watch.stats["last_error"] == "connectivity: StoreError: injected failure"
    rec.fail_on = None
    assert await env.tick(T0 + 401 * S, watch) == [
        event("d1", "DISCONNECTED", attributes={"reason": "inactivity"})
    ]

    await env.apply()
    await env.ev("w2", "CREATED", T0, attributes={"provision_until_us": str(T0 + 1)})
    await env.sync()
    flaky = FlakyPublisher(failures=1)
    env.clock.now = T0 + 402 * S
    watch = IdentityWatch(store, flaky, WatchSettings(interval_s=0.01), clock=env.clock)
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="millrace.watch"):
        task = asyncio.create_task(watch.run(stop))
        for _ in range(500):
            if flaky.batches and watch.stats["ticks"] >= 3:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
    # the failed publish remembered nothing: the next tick published it, once
    assert len(flaky.batches) == 1
    assert [(k, e["type"], e["attributes"]) for k, e in flaky.batches[0]] == [
        ("w2", "EXPIRED", {"what": "window"})
    ]
    assert watch.stats["last_error"] == "tick: ConnectionError: log unreachable"
    assert any("log unreachable" in r.getMessage() for r in caplog.records)
