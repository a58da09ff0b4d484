"""Exactly once: appends, crashes at any insert, restarts with other batch sizes and
full replays, interleaved by hypothesis, leave the chDB projections equal to what this
test computes on its own from everything appended."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace.pipeline.errors import StoreError
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.projections.migrations import drop_projections, migrate
from millrace.projections.store.base import ProjectionStore, QueryResult
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.projection_reset import empty_projections

T0 = 1_750_000_000_000_000
MINUTE = 60_000_000


class CrashingStore(ProjectionStore):
    """Passes through to chDB, and "crashes" (raises) on the Nth insert."""

    def __init__(self, inner: ProjectionStore, crash_at: int | None) -> None:
        self.inner = inner
        self.crash_at = crash_at
        self.inserts = 0

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
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
        self.inserts += 1
        if self.crash_at is not None and self.inserts == self.crash_at:
            raise StoreError("injected crash before insert")
        self.inner.insert_arrow(sql, table, settings)


sample = st.tuples(
    st.sampled_from(["dev-a", "dev-b", "dev-c"]),
    st.integers(0, 180 * MINUTE),
    st.dictionaries(
        st.sampled_from(["t", "p", "on"]),
        st.integers(-50, 50).map(lambda v: v / 4),
        min_size=1,
        max_size=3,
    ),
)
append_op = st.tuples(st.just("append"), st.lists(sample, min_size=1, max_size=8))
crash_op = st.tuples(st.just("crash"), st.integers(1, 14), st.integers(1, 6))
restart_op = st.tuples(st.just("restart"), st.integers(1, 6))
replay_op = st.tuples(st.just("replay"))
ops_st = st.lists(
    st.one_of(append_op, append_op, crash_op, restart_op, replay_op), min_size=1, max_size=12
)


def expected(appended: list[tuple[str, int, dict[str, float]]]) -> dict[str, Any]:
    readings: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for identity, ts, values in appended:
        for sig, v in values.items():
            readings[(identity, sig)].append((T0 + ts, v))
    agg: dict[tuple[str, str, int], list[tuple[int, float]]] = defaultdict(list)
    for (identity, sig), pts in readings.items():
        for ts, v in pts:
            agg[(identity, sig, (ts - ts % MINUTE) // 1_000_000)].append((ts, v))
    latest = {}
    for (identity, sig), pts in readings.items():
        # greatest ts; ties go to the later append
        best = max(range(len(pts)), key=lambda i: (pts[i][0], i))
        latest[(identity, sig)] = pts[best]
    return {"count": sum(len(p) for p in readings.values()), "agg": agg, "latest": latest}


def actual(store: ChdbStore) -> dict[str, Any]:
    count = store.execute("SELECT count() FROM millrace.readings").rows[0][0]
    agg = {
        (i, s, int(b)): (int(c), float(total), float(lo), float(hi), first, last)
        for i, s, b, c, total, lo, hi, first, last in store.execute(
            "SELECT identity, signal, toUnixTimestamp(bucket), sum(count), sum(sum), min(min), "
            "max(max), min(first), max(last) FROM millrace.agg_1m GROUP BY identity, signal, bucket"
        ).rows
    }
    latest = {
        (i, s): (int(ts), float(v))
        for i, s, ts, v in store.execute(
            "SELECT identity, signal, toUnixTimestamp64Micro(ts), value FROM millrace.latest FINAL"
        ).rows
    }
    return {"count": int(count), "agg": agg, "latest": latest}


def check(store: ChdbStore, appended: list[tuple[str, int, dict[str, float]]]) -> None:
    exp, got = expected(appended), actual(store)
    assert got["count"] == exp["count"]
    assert set(got["agg"]) == set(exp["agg"])
    for k, pts in exp["agg"].items():
        c, total, lo, hi, first, last = got["agg"][k]
        vals = [v for _, v in pts]
        assert c == len(pts), k
        assert math.isclose(total, sum(vals), abs_tol=1e-9), k
        assert (lo, hi) == (min(vals), max(vals)), k
        assert (first[0], first[1]) == min(pts) and (last[0], last[1]) == max(pts), k
    assert got["latest"] == exp["latest"]


async def scenario(store: ChdbStore, ops: list[tuple[Any, ...]]) -> None:
    log = MemoryEventLog()
    publisher = LogPublisher(log)
    appended: list[tuple[str, int, dict[str, float]]] = []

    def runtime(max_records: int, crash_at: int | None = None) -> EmbeddedRuntime:
        # a new runtime object is a restarted process: it knows only what the sink stored
        sink = ProjectionWriter(CrashingStore(store, crash_at))
        return EmbeddedRuntime(log, sink, processors(), max_records=max_records)

    for op in ops:
        if op[0] == "append":
            batch = [
                (
                    identity,
                    {
                        "identity": identity,
                        "source": "t",
                        "received_us": T0,
                        "samples": [{"ts_us": T0 + ts, "values": values, "quality": 0}],
                        # each append is a batch of its own (an identical resend is not)
                        "batch_id": f"b{len(appended) + i}",
                    },
                )
                for i, (identity, ts, values) in enumerate(op[1])
            ]
            await publisher.publish("telemetry", batch)
            appended.extend(op[1])
        elif op[0] == "crash":
            # crashes at insert op[1] if the log holds enough work to get there
            crashing = runtime(op[2], crash_at=op[1])
            try:
                await crashing.run_until_idle()
            except StoreError as exc:
                assert "injected" in str(exc)
        elif op[0] == "restart":
            await runtime(op[1]).run_until_idle()
        elif op[0] == "replay":
            drop_projections(store)
            migrate(store)
            await runtime(3).run_until_idle()
    await runtime(5).run_until_idle()
    check(store, appended)
    # and a second clean pass over an already-processed log changes nothing
    await runtime(1).run_until_idle()
    check(store, appended)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops_st)
def test_projections_exactly_once_under_crashes_and_replays(
    store: ChdbStore, ops: list[tuple[Any, ...]]
) -> None:
    empty_projections(store)  # each example starts empty
    asyncio.run(scenario(store, ops))


def test_crash_left_pending_batch_is_redone_over_the_same_ranges(store: ChdbStore) -> None:
    """A crash between the data inserts and the commit: the pending intent is
    redone with the same boundaries even though the new runtime's batch size differs,
    so deduplication drops the repeated inserts."""

    async def go() -> None:
        log = MemoryEventLog()
        pub = LogPublisher(log)
        batches = [
            (
                "d",
                {
                    "identity": "d",
                    "source": "t",
                    "received_us": T0,
                    "samples": [
                        {"ts_us": T0 + i * MINUTE, "values": {"x": float(i)}, "quality": 0}
                    ],
                },
            )
            for i in range(40)
        ]
        await pub.publish("telemetry", batches)
        # progress intent, readings, latest, agg_1m, agg_5m, agg_1h, commit = 7 inserts
        crashing = EmbeddedRuntime(
            log, ProjectionWriter(CrashingStore(store, 7)), processors(), max_records=100
        )
        with pytest.raises(StoreError):
            await crashing.step()
        assert store.execute("SELECT count() FROM millrace.readings").rows[0][0] == 40
        pending = ProjectionWriter(store).progress("projections")
        assert pending.pending, "the intent must be visible after the crash"
        await EmbeddedRuntime(
            log, ProjectionWriter(store), processors(), max_records=3
        ).run_until_idle()
        assert store.execute("SELECT count() FROM millrace.readings").rows[0][0] == 40
        assert store.execute("SELECT sum(count) FROM millrace.agg_1h").rows[0][0] == 40

    asyncio.run(go())
