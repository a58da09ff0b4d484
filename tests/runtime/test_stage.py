"""The Stage port and its runner (``pipeline.runtime.stage``)."""

from __future__ import annotations

import asyncio

import pytest

from millrace.pipeline.runtime.stage import LoopStage, ServiceStage, Stage, run_stages


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def loop(self, name: str, **kw: float) -> LoopStage:
        async def run(stop: asyncio.Event) -> None:
            self.events.append(f"run {name}")
            await stop.wait()
            self.events.append(f"stopped {name}")

        return LoopStage(name, run, **kw)  # type: ignore[arg-type]

    def service(self, name: str, fail: bool = False) -> ServiceStage:
        async def start() -> None:
            if fail:
                raise RuntimeError(f"{name} cannot start")
            self.events.append(f"start {name}")

        async def stop() -> None:
            self.events.append(f"stop {name}")

        return ServiceStage(name, start, stop)


async def _run_then_stop(stages: list[Stage]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_stages(stages, stop))
    for _ in range(20):
        await asyncio.sleep(0)
    stop.set()
    await task


def test_stages_start_in_order_and_stop_in_reverse_order() -> None:
    r = Recorder()
    stages: list[Stage] = [r.loop("a"), r.service("b"), r.loop("c")]
    asyncio.run(_run_then_stop(stages))
    starts = [e for e in r.events if e.startswith(("run", "start"))]
    # a stage's start is awaited before the next stage is started
    assert sorted(starts) == ["run a", "run c", "start b"]
    assert starts.index("start b") < starts.index("run c")
    stops = [e for e in r.events if e.startswith("stop")]
    assert stops == ["stopped c", "stop b", "stopped a"]


def test_a_failed_start_stops_what_was_started_and_raises() -> None:
    r = Recorder()
    stages: list[Stage] = [r.service("a"), r.loop("b"), r.service("c", fail=True), r.loop("d")]
    with pytest.raises(RuntimeError, match="c cannot start"):
        asyncio.run(_run_then_stop(stages))
    assert "run d" not in r.events
    assert [e for e in r.events if e.startswith("stop")] == ["stopped b", "stop a"]


def test_zero_stop_timeout_cancels_and_a_stuck_stage_is_cancelled() -> None:
    cancelled: list[str] = []

    def forever(name: str) -> LoopStage:
        async def run(stop: asyncio.Event) -> None:
            try:
                await asyncio.Event().wait()  # ignores stop
            except asyncio.CancelledError:
                cancelled.append(name)
                raise

        return LoopStage(name, run, stop_timeout_s=0.0 if name == "now" else 0.05)

    asyncio.run(_run_then_stop([forever("later"), forever("now")]))
    assert cancelled == ["now", "later"]


def test_a_failing_stage_does_not_stop_the_others() -> None:
    r = Recorder()

    async def boom(stop: asyncio.Event) -> None:
        raise ValueError("boom")

    asyncio.run(_run_then_stop([r.loop("a"), LoopStage("bad", boom)]))
    assert r.events == ["run a", "stopped a"]


def test_health_never_raises() -> None:
    def broken() -> dict[str, object]:
        raise KeyError("x")

    async def run(stop: asyncio.Event) -> None:
        await stop.wait()

    assert "error" in LoopStage("x", run, health=broken).health()
    assert LoopStage("y", run, health=lambda: {"n": 1}).health() == {"n": 1}
