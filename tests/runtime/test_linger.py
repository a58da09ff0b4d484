"""The runtime's linger (``runtime.linger_ms``, ``run_steps``'s period): a step that
folded something is followed by the next no sooner than the period after it began,
unless a read-your-writes wait wakes it, and a wake that comes while a step runs is
not lost. Lingering steps fold no step ahead in the worker (it would hold only what
came during the inserts). Every bound below is a lower bound, or a wait far shorter
than the period it cuts: load can only make a step later, never sooner."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from millrace.pipeline.cli.config import MillraceConfig
from millrace.pipeline.runtime.loop import run_steps
from millrace.pipeline.sink import MemoryProjectionSink
from tests.runtime.test_fold_worker import folded_here, rows, run, runtime_on, worker

__all__ = ["worker"]

#: a period no test waits out: a step that comes sooner was woken
LONG_S = 60.0


class Steps:
    """A step that records when it began and answers ``work`` records each time;
    ``during`` runs inside the n-th step (1-based)."""

    def __init__(self, work: int, during: dict[int, Any] | None = None) -> None:
        self.work = work
        self.began: list[float] = []
        self.during = during or {}
        self.more = asyncio.Event()

    async def __call__(self) -> int:
        self.began.append(asyncio.get_running_loop().time())
        action = self.during.get(len(self.began))
        if action is not None:
            action()
        if len(self.began) >= 2:
            self.more.set()
        return self.work


async def _start(
    steps: Steps,
    wake: asyncio.Event,
    period_s: float,
    idle_s: float = LONG_S,
    busy: int | None = None,
) -> tuple[Any, asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        run_steps(
            steps,
            stop,
            wake,
            idle_s=idle_s,
            on_error=lambda exc, s: None,
            first_backoff_s=0.1,
            period_s=period_s,
            busy=busy,
        )
    )
    return task, stop


async def _stop(task: Any, stop: asyncio.Event) -> None:
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_step_that_did_something_is_followed_no_sooner_than_the_period() -> None:
    steps = Steps(work=3)
    task, stop = await _start(steps, asyncio.Event(), period_s=0.3)
    await asyncio.wait_for(steps.more.wait(), 30)
    await _stop(task, stop)
    assert steps.began[1] - steps.began[0] >= 0.3 - 1e-3


async def test_without_a_period_the_next_step_follows_at_once() -> None:
    steps = Steps(work=3)
    task, stop = await _start(steps, asyncio.Event(), period_s=0.0)
    # a period of LONG_S would keep the second step a minute away
    await asyncio.wait_for(steps.more.wait(), 30)
    await _stop(task, stop)


async def test_a_step_that_did_enough_is_followed_at_once() -> None:
    steps = Steps(work=1000)
    task, stop = await _start(steps, asyncio.Event(), period_s=LONG_S, busy=1000)
    await asyncio.wait_for(steps.more.wait(), 30)  # a steady load: no linger
    await _stop(task, stop)


async def test_a_wake_cuts_the_linger_short() -> None:
    wake = asyncio.Event()
    steps = Steps(work=3)
    task, stop = await _start(steps, wake, period_s=LONG_S)
    while not steps.began:
        await asyncio.sleep(0.01)
    wake.set()  # a read-your-writes wait
    await asyncio.wait_for(steps.more.wait(), 30)
    await _stop(task, stop)


async def test_a_wake_during_a_step_is_kept() -> None:
    wake = asyncio.Event()
    # the wake comes while the first step runs (a write appended and waits on it)
    steps = Steps(work=3, during={1: wake.set})
    task, stop = await _start(steps, wake, period_s=LONG_S)
    await asyncio.wait_for(steps.more.wait(), 30)
    await _stop(task, stop)


async def test_an_idle_step_waits_the_idle_interval_not_the_period() -> None:
    steps = Steps(work=0)
    task, stop = await _start(steps, asyncio.Event(), period_s=LONG_S, idle_s=0.05)
    await asyncio.wait_for(steps.more.wait(), 30)
    await _stop(task, stop)


@pytest.mark.parametrize(
    ("work", "fails"), [(3, False), (0, False), (3, True)], ids=["lingering", "idle", "backoff"]
)
async def test_a_stop_ends_the_wait_at_once(work: int, fails: bool) -> None:
    """A stop during the linger, the idle wait or an error's backoff ends the loop
    without the rest of the wait (it waited them out: every ``millrace run`` took a
    second or more to stop)."""
    began: list[float] = []

    async def step() -> int:
        began.append(asyncio.get_running_loop().time())
        if fails:
            raise RuntimeError("the step fails")
        return work

    stop = asyncio.Event()
    task = asyncio.ensure_future(
        run_steps(
            step,
            stop,
            asyncio.Event(),
            idle_s=LONG_S,
            on_error=lambda exc, s: None,
            first_backoff_s=LONG_S,
            period_s=LONG_S,
        )
    )
    while not began:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # in the wait now
    stop.set()
    # ends by itself (no cancel), a minute before its wait would have ended
    await asyncio.wait_for(task, 30)
    assert len(began) == 1


async def test_lingering_steps_fold_nothing_ahead_and_fold_the_same(worker: Any) -> None:
    log, want = await folded_here(2, 7)
    sink = MemoryProjectionSink()
    runtime = runtime_on(log, sink, 7, worker())
    runtime.linger_s = LONG_S  # every step is shorter: each would be followed by a wait
    assert await run(runtime) == 0
    health = runtime.health()
    assert health["folds_ahead_used"] == 0 and health["folds_ahead_dropped"] == 0
    assert runtime.stats.batches >= 5  # several steps, each folded in the worker now
    assert rows(sink) == rows(want)


async def test_big_steps_fold_ahead_as_without_a_linger(worker: Any) -> None:
    log, want = await folded_here(2, 7)
    sink = MemoryProjectionSink()
    runtime = runtime_on(log, sink, 7, worker())
    runtime.linger_s, runtime.linger_below = LONG_S, 1  # every step is "big"
    assert await run(runtime) == 0
    assert runtime.health()["folds_ahead_used"] >= 5
    assert rows(sink) == rows(want)


def test_the_linger_is_configured_in_milliseconds() -> None:
    assert MillraceConfig().runtime.linger_ms == 1000
    assert MillraceConfig().runtime.linger_below == 1000
    assert MillraceConfig.model_validate({"runtime": {"linger_ms": 0}}).runtime.linger_ms == 0
