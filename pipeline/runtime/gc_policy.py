"""The garbage-collection policy of the ingest path, in one place.

Ingest churns through millions of short-lived objects a second (decoded events,
flattened samples) while hundreds of thousands of long-lived ones (modules, schemas,
compiled writers, the app) stay alive. CPython's default thresholds (700, 10, 10) then
run a young collection every few hundred readings, and every older one walks all
the long-lived objects again. The events are acyclic, so reference counting frees
them anyway; the collector only has to find the rare cycle. bench/PROFILE.md measured
this policy at -12 % CPU per reading.

:class:`GcStage` applies it as the last stage the assembly starts, once every other
stage has built what it keeps (``Assembly.build`` appends it to roles that run the
``process`` role: ``millrace run`` and ``millrace process``):

1. ``gc.collect()``: cycles that start-up left behind are freed, not frozen forever;
2. ``gc.freeze()``: every object alive now moves to the permanent generation, which
   the collector never scans again;
3. ``gc.set_threshold(gen0, gen1, gen2)``: young collections every ``gen0``
   allocations (100,000 instead of 700).

At stop it restores the thresholds it found and unfreezes (a test, or an embedding
program, keeps a normal interpreter). ``runtime.gc.enabled: false`` leaves the
interpreter's collector as it is. The policy is process-wide, like the collector:
one stage per process applies it.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from millrace.pipeline.runtime.stage import Stage

__all__ = ["GcConfig", "GcStage", "apply", "restore"]


class GcConfig(BaseModel):
    """``runtime.gc``: the collector's policy while the process role runs."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="false: the interpreter's defaults (700, 10, 10)")
    freeze: bool = Field(True, description="move start-up objects out of the collector's scans")
    gen0: int = Field(100_000, ge=1, description="allocations between young collections")
    gen1: int = Field(50, ge=1, description="young collections per middle collection")
    gen2: int = Field(100, ge=1, description="middle collections per full collection")


def apply(config: GcConfig) -> tuple[int, int, int] | None:
    """Apply ``config`` to this interpreter; the thresholds it replaced (None: disabled)."""
    if not config.enabled:
        return None
    previous = gc.get_threshold()
    if config.freeze:
        gc.collect()
        gc.freeze()
    gc.set_threshold(config.gen0, config.gen1, config.gen2)
    return previous


def restore(previous: tuple[int, int, int] | None, config: GcConfig) -> None:
    """Undo :func:`apply`: the thresholds it replaced, and no frozen objects."""
    if previous is None:
        return
    gc.set_threshold(*previous)
    if config.freeze:
        gc.unfreeze()


class GcStage(Stage):
    """Applies :class:`GcConfig` at start (after the stages before it started), undoes
    it at stop (see the module doc)."""

    name = "gc-policy"
    stop_timeout_s = 1.0

    def __init__(self, config: GcConfig) -> None:
        self.config = config
        self._previous: tuple[int, int, int] | None = None
        self.frozen = 0

    async def start(self) -> None:
        self._previous = apply(self.config)
        self.frozen = gc.get_freeze_count()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await stop.wait()
        finally:
            restore(self._previous, self.config)
            self._previous = None

    def health(self) -> dict[str, Any]:
        return {
            "enabled": self.config.enabled,
            "thresholds": list(gc.get_threshold()),
            "frozen_objects": self.frozen,
            "collections": [s["collections"] for s in gc.get_stats()],
        }
