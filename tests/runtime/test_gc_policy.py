"""The GC policy stage: what it freezes, the thresholds it sets, and what it restores."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from pydantic import ValidationError

from millrace.pipeline.cli.config import MillraceConfig
from millrace.pipeline.runtime.gc_policy import GcConfig, GcStage
from millrace.pipeline.runtime.stage import Stage, run_stages


class _Node:
    def __init__(self) -> None:
        self.other: Any = None


class _Builder(Stage):
    """A stage that builds long-lived objects at start, as the real stages do."""

    name = "builder"

    def __init__(self) -> None:
        self.kept: list[_Node] = []

    async def start(self) -> None:
        self.kept = [_Node() for _ in range(1000)]  # instances stay tracked

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()


def _tracked_ids() -> set[int]:
    # gc.get_objects() walks generations 0-2: frozen objects are not among them
    return {id(o) for o in gc.get_objects()}


def _collector_state(seen: dict[str, Any]) -> Any:
    def during(builder: _Builder, policy: GcStage) -> None:
        seen["threshold"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()

    return during


def _run_with(config: GcConfig, during: Any) -> tuple[_Builder, GcStage]:
    builder, policy = _Builder(), GcStage(config)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_stages([builder, policy], stop))
        while not policy.health()["frozen_objects"] and config.enabled and config.freeze:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        during(builder, policy)
        stop.set()
        await task

    asyncio.run(main())
    return builder, policy


def test_freezes_what_earlier_stages_built_and_restores_at_stop() -> None:
    before = gc.get_threshold()
    seen: dict[str, Any] = {}

    def during(builder: _Builder, policy: GcStage) -> None:
        seen["threshold"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()
        tracked = _tracked_ids()
        seen["kept_tracked"] = sum(id(d) in tracked for d in builder.kept)
        seen["health"] = policy.health()

    builder, _ = _run_with(GcConfig(gen0=12_345, gen1=7, gen2=9), during)
    assert seen["threshold"] == (12_345, 7, 9)
    assert seen["frozen"] >= len(builder.kept)
    assert seen["kept_tracked"] == 0  # all in the permanent generation
    assert seen["health"]["thresholds"] == [12_345, 7, 9]
    assert seen["health"]["enabled"] is True
    # stopped: the interpreter is as it was
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    tracked = _tracked_ids()
    assert all(id(d) in tracked for d in builder.kept)


def test_garbage_cycles_left_by_start_up_are_collected_not_frozen() -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    del a, b
    gc.disable()  # only the policy's own collect may free the cycle
    try:
        alive: dict[str, bool] = {}
        _run_with(GcConfig(), lambda *_: alive.update(during=ref() is not None))
    finally:
        gc.enable()
    assert alive["during"] is False


def test_disabled_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()
    seen: dict[str, Any] = {}
    during = _collector_state(seen)
    _run_with(GcConfig(enabled=False), during)
    assert seen == {"threshold": before, "frozen": 0}
    assert gc.get_threshold() == before


def test_thresholds_without_freeze() -> None:
    seen: dict[str, Any] = {}
    during = _collector_state(seen)
    _run_with(GcConfig(freeze=False, gen0=50_000), during)
    assert seen == {"threshold": (50_000, 50, 100), "frozen": 0}


def test_configured_under_runtime_gc() -> None:
    cfg = MillraceConfig.model_validate({"runtime": {"gc": {"enabled": False, "gen0": 5000}}})
    assert cfg.runtime.gc == GcConfig(enabled=False, gen0=5000)
    assert MillraceConfig().runtime.gc == GcConfig()
    with pytest.raises(ValidationError, match="gen0"):
        MillraceConfig.model_validate({"runtime": {"gc": {"gen0": 0}}})
    with pytest.raises(ValidationError, match="thresholds"):
        MillraceConfig.model_validate({"runtime": {"gc": {"thresholds": 1}}})
