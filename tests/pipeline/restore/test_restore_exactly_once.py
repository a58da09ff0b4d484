"""Exactly once under any pattern (hypothesis, the memory sink with crash injection):
live folds, restores of the whole archive crashing at any step of any chunk and resumed
(as after kill -9: the task's completed files kept, the rest redone from the sink's
progress), several tasks over the same range, projections dropped in between — the
readings and aggregates always equal each archived sample once (or nothing, when
nothing was folded since the last drop), computed here from the samples."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace.pipeline.archive.format import HOUR_US
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.restore import KIND, RestoreParams, RestoreTask
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.sink import MemoryProjectionSink, SinkBatch
from millrace.pipeline.tasks import TaskContext
from tests.pipeline.restore.helpers import MINUTE, T0, Sample, archive, telemetry_log

LOG, SAMPLES = telemetry_log(n=36, resend_every=6)
STORE, MANIFESTS = archive(LOG, "memory://restore-exactly-once")


class CrashingSink(MemoryProjectionSink):
    """Crashes (once) at step ``step`` of its ``write``-th write from now."""

    def __init__(self) -> None:
        super().__init__()
        self.countdown: tuple[int, int] | None = None

    def crash(self, write: int, step: int) -> None:
        self.countdown = (write, step)

    def write(
        self, consumer: str, batch: SinkBatch, fence: Callable[[], None] | None = None
    ) -> None:
        if self.countdown is not None:
            n, step = self.countdown
            if n <= 1:
                self.fail_after, self.countdown = step, None
            else:
                self.countdown = (n - 1, step)
        super().write(consumer, batch, fence)

    def drop(self) -> None:
        self.rows.clear()
        self.tokens.clear()
        self._progress.clear()


def expected(samples: list[Sample]) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    readings: Counter[tuple[Any, ...]] = Counter()
    agg: Counter[tuple[Any, ...]] = Counter()
    for identity, at, values in samples:
        ts = T0 + at
        for sig, v in values.items():
            readings[(identity, sig, ts, v)] += 1
            agg[(identity, sig, (ts - ts % MINUTE) // 1_000_000)] += 1
    return readings, agg


def actual(sink: MemoryProjectionSink) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    readings: Counter[tuple[Any, ...]] = Counter()
    for r in sink.rows.get("readings", []):
        ts = r["ts"]
        us = ts if isinstance(ts, int) else int(ts.timestamp() * 1_000_000)
        readings[(r["identity"], r["signal"], us, r["value"])] += 1
    agg: Counter[tuple[Any, ...]] = Counter()
    for r in sink.rows.get("agg_1m", []):
        b = r["bucket"]
        secs = b if isinstance(b, int) else int(b.timestamp())
        agg[(r["identity"], r["signal"], secs)] += int(r["count"])
    return readings, agg


async def restore_task(
    sink: CrashingSink, task_id: str, crashes: list[tuple[int, int]], chunk: int
) -> None:
    """One restore task: an attempt per crash point, each crashing there, then one that
    completes; completed files carry over (the task's events), as after kill -9."""
    handler = RestoreTask(sink, STORE, MemoryEventPublisher(), chunk=chunk)
    params = RestoreParams(start_us=T0, end_us=T0 + 3 * HOUR_US).to_json()
    done: dict[str, dict[str, int]] = {}
    for write, step in [*crashes, (0, 0)]:
        if write:
            sink.crash(write, step)
        ctx = TaskContext(task_id, KIND, params, MemoryEventPublisher(), asyncio.Event(), done=done)
        try:
            await handler(ctx)
        except RuntimeError as exc:
            assert "injected" in str(exc)
            sink.countdown, sink.fail_after = None, None
            done = ctx.done
            continue
        assert not ctx.failed, ctx.failed
        sink.countdown, sink.fail_after = None, None  # a crash point past the task's end
        return
    raise AssertionError("the last attempt must complete")


crash = st.tuples(st.integers(1, 12), st.integers(0, 6))
op = st.one_of(
    st.tuples(st.just("restore"), st.lists(crash, max_size=3), st.integers(2, 25)),
    st.tuples(st.just("live"), st.integers(3, 40)),
    st.tuples(st.just("drop")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=6))
def test_any_crash_and_repeat_pattern_folds_each_sample_once(ops: list[tuple[Any, ...]]) -> None:
    async def go() -> None:
        sink = CrashingSink()
        folded = False
        for n, o in enumerate(ops):
            if o[0] == "restore":
                await restore_task(sink, f"task-{n}", o[1], o[2])
                folded = True
            elif o[0] == "live":
                runtime = EmbeddedRuntime(LOG, sink, processors(), max_records=o[1])
                await runtime.run_until_idle()
                runtime.close()
                folded = True
            else:
                sink.drop()
                folded = False
        want = expected(SAMPLES) if folded else (Counter(), Counter())
        assert actual(sink) == want

    asyncio.run(go())
