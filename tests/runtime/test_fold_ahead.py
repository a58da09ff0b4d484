"""The fold worker folds the next step while the runtime inserts this one
(``pipeline.runtime.ahead``): the folds ahead are used, and a step that fails, a
pause, or a fold ahead whose store reads race the write before it, loses and doubles
nothing."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from millrace.pipeline.batches import Applied
from millrace.pipeline.errors import MillraceError
from millrace.pipeline.runtime.ahead import _AfterWrite
from millrace.pipeline.sink import MemoryProjectionSink, SinkBatch
from tests.runtime.test_fold_worker import folded_here, rows, run, runtime_on, worker

__all__ = ["worker"]


class FailingSink(MemoryProjectionSink):
    """Fails the ``nth`` write after its intent and first table (a fold ahead is in
    flight then), once."""

    def __init__(self, nth: int) -> None:
        super().__init__()
        self.nth = nth
        self.writes = 0

    def write(self, consumer: str, batch: SinkBatch, fence: Any = None) -> None:
        self.writes += 1
        if self.writes == self.nth:
            self.fail_after = 2
        super().write(consumer, batch, fence)


async def test_folds_ahead_are_used_and_fold_what_one_process_folds(worker: Any) -> None:
    log, want = await folded_here(2, 7)
    sink = MemoryProjectionSink()
    fold = worker()
    runtime = runtime_on(log, sink, 7, fold)
    assert await run(runtime) == 0
    health = runtime.health()
    # 3 devices x 40 batches (+ resends, garbage, one more) in steps of 7 per partition
    assert health["folds_ahead_used"] >= 5
    assert health["folds_ahead_dropped"] == 0 and health["worker_resets"] == 0
    assert rows(sink) == rows(want)


async def test_a_failed_write_drops_the_fold_ahead_and_resyncs_the_worker(worker: Any) -> None:
    log, want = await folded_here(2, 7)
    for nth in (2, 4):
        sink = FailingSink(nth)
        fold = worker()
        runtime = runtime_on(log, sink, 7, fold)
        assert await run(runtime, (RuntimeError,)) == 1  # the injected crash
        assert fold.resets >= 1 and fold.starts == 1  # resynced, not restarted
        assert runtime.health()["folds_ahead_dropped"] >= 1
        assert rows(sink) == rows(want), nth


async def test_a_pause_drops_the_fold_ahead(worker: Any) -> None:
    log, want = await folded_here(1, 9)
    sink = MemoryProjectionSink()
    fold = worker()
    runtime = runtime_on(log, sink, 9, fold)
    await runtime.step()
    async with runtime.paused():
        pass
    assert runtime.health()["folds_ahead_dropped"] == 1
    assert await run(runtime) == 0
    assert rows(sink) == rows(want)


class Reads(MemoryProjectionSink):
    def __init__(self) -> None:
        super().__init__()
        self.asked = threading.Event()

    def applied_batches(
        self, partition: int, since_us: int, keys: Sequence[str] | None = None
    ) -> dict[str, Applied]:
        self.asked.set()
        return super().applied_batches(partition, since_us, keys)


def test_applied_batch_reads_of_a_fold_ahead_wait_for_the_write_before() -> None:
    """The ledger loads a partition from the store; the step before's ids must be there."""
    sink = Reads()
    written: cf.Future[None] = cf.Future()
    reader = _AfterWrite(sink, written)
    assert reader.restore_mark() == (0, 0)  # restores write the marks: no wait
    with cf.ThreadPoolExecutor(1) as pool:
        read = pool.submit(reader.applied_batches, 0, 0)
        assert not sink.asked.wait(0.2) and not read.done()
        written.set_result(None)
        assert read.result() == {} and sink.asked.is_set()
    failed: cf.Future[None] = cf.Future()
    failed.set_exception(MillraceError("the write failed"))
    sink.asked.clear()
    with pytest.raises(MillraceError, match="the write failed"):
        _AfterWrite(sink, failed).applied_batches(0, 0)
    assert not sink.asked.is_set()
