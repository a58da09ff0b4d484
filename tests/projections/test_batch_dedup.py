"""Each batch id once, against chDB: appends, resends of earlier batches (same id, or
the same id-less event again), crashes at any insert, restarts with other batch sizes
and full replays, interleaved by hypothesis, leave the projections equal to a pass
that takes, per identity, the first batch of each id in log order (computed here, not
with pipeline.batches)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace.pipeline import batch_ledger
from millrace.pipeline.errors import StoreError
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.processors.base import Processor
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.processors.telemetry import TelemetryProcessor
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.telemetry_columns import samples_of
from millrace.projections.migrations import drop_projections, migrate
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.projection_reset import empty_projections
from tests.projections.test_exactly_once import MINUTE, T0, CrashingStore, check

IDENTITIES = ["dev-a", "dev-b", "dev-c"]

batch_st = st.tuples(
    st.sampled_from(IDENTITIES),
    st.integers(0, 120 * MINUTE),
    st.dictionaries(
        st.sampled_from(["t", "p"]),
        st.integers(-40, 40).map(lambda v: v / 4),
        min_size=1,
        max_size=2,
    ),
    st.one_of(st.none(), st.integers(0, 5)),  # id number, or no id (content key)
)
append_op = st.tuples(st.just("append"), st.lists(batch_st, min_size=1, max_size=6))
resend_op = st.tuples(st.just("resend"), st.lists(st.integers(0, 50), min_size=1, max_size=4))
crash_op = st.tuples(st.just("crash"), st.integers(1, 14), st.integers(1, 5))
restart_op = st.tuples(st.just("restart"), st.integers(1, 5))
replay_op = st.tuples(st.just("replay"))
ops_st = st.lists(
    st.one_of(append_op, append_op, resend_op, resend_op, crash_op, restart_op, replay_op),
    min_size=1,
    max_size=12,
)


def event(
    identity: str, ts: int, values: dict[str, float], bid: int | None, n: int
) -> dict[str, Any]:
    return {
        "identity": identity,
        "source": "t",
        "received_us": T0 + n,  # id-less batches differ by content: n is unique per append
        "samples": [{"ts_us": T0 + ts, "values": values, "quality": 0}],
        "batch_id": None if bid is None else f"{identity}/{bid}",
    }


def resent(e: dict[str, Any], i: int) -> dict[str, Any]:
    """A batch sent again: with an id, rebuilt and received later (a client's retry);
    without one, the very same event (a resend of the same bytes)."""
    return e if e["batch_id"] is None else {**e, "received_us": T0 + 10**9 + i}


def first_of_each(log_order: list[dict[str, Any]]) -> list[tuple[str, int, dict[str, float]]]:
    """The batches a correct fold applies: per identity (one partition), the first of
    each id, or of each identical id-less event, in log order."""
    seen: set[tuple[str, str]] = set()
    out = []
    for e in log_order:
        name = e["batch_id"] or json.dumps(e, sort_keys=True)
        if (e["identity"], name) in seen:
            continue
        seen.add((e["identity"], name))
        s = samples_of(e)[0]
        out.append((e["identity"], s["ts_us"] - T0, s["values"]))
    return out


def folds(tiny: bool) -> list[Processor]:
    """The processors; ``tiny``: the telemetry fold's ledger with a 64-bit filter (every
    id a hit) and one exact id, so the store's answers decide (batch_ledger)."""
    procs = processors()
    if tiny:
        procs = [TelemetryProcessor(max_keys=1, filter_bytes=1), *procs[1:]]
    return procs


async def scenario(store: ChdbStore, ops: list[tuple[Any, ...]], tiny: bool = False) -> None:
    log = MemoryEventLog()
    publisher = LogPublisher(log)
    appended: list[dict[str, Any]] = []  # log order per identity = append order

    def runtime(max_records: int, crash_at: int | None = None) -> EmbeddedRuntime:
        sink = ProjectionWriter(CrashingStore(store, crash_at))
        return EmbeddedRuntime(log, sink, folds(tiny), max_records=max_records)

    for op in ops:
        if op[0] == "append":
            batch = [event(*b, len(appended) + i) for i, b in enumerate(op[1])]
        elif op[0] == "resend" and appended:
            batch = [resent(appended[i % len(appended)], i) for i in op[1]]
        elif op[0] == "crash":
            try:
                await runtime(op[2], crash_at=op[1]).run_until_idle()
            except StoreError as exc:
                assert "injected" in str(exc)
            continue
        elif op[0] == "restart":
            await runtime(op[1]).run_until_idle()
            continue
        elif op[0] == "replay":
            drop_projections(store)
            migrate(store)
            await runtime(3).run_until_idle()
            continue
        else:
            continue
        await publisher.publish("telemetry", [(b["identity"], b) for b in batch])
        appended.extend(batch)
    await runtime(5).run_until_idle()
    check(store, first_of_each(appended))
    await runtime(1).run_until_idle()  # a clean pass over a folded log changes nothing
    check(store, first_of_each(appended))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops_st, tiny=st.booleans())
def test_each_batch_id_is_applied_once_under_resends_crashes_and_replays(
    store: ChdbStore, ops: list[tuple[Any, ...]], tiny: bool
) -> None:
    """``tiny``: ledgers whose filter hits on every id and that hold one id exactly,
    loaded two ids per page (the store's keyset pages and point reads decide)."""
    empty_projections(store)  # each example starts empty
    with mock.patch.object(batch_ledger, "LOAD_PAGE", 2 if tiny else batch_ledger.LOAD_PAGE):
        asyncio.run(scenario(store, ops, tiny))
