"""The live fold a replay catches up with and holds for its swap, in each deployment.

A replay (``projections.replay``) needs two things of the live fold: its positions
(the shadow fold never reads past them, so the shadows stay at or behind the live
tables) and a hold at one position (no batch in flight) for the final catch-up and
the ``EXCHANGE TABLES``. :class:`LiveFold` is that port:

* :class:`EmbeddedLive` (``millrace run``): the in-process runtime's positions and its
  ``paused()`` lock, held between two batches;
* :class:`DistributedLive` (``millrace process`` workers on Kafka): the positions are
  the workers' committed progress in the store (every worker writes under one sink
  consumer, ``millrace-projections``); the hold is the pipeline pause through the log,
  answered by every worker (``pipeline.runtime.hold``), after which the committed
  progress is the live position. Before the exchange it checks the progress did not
  move (a worker that missed the pause, whatever the reason): the replay then fails
  instead of swapping in tables that lack a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from millrace.pipeline.errors import MillraceError
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.runtime.hold import PauseHold
from millrace.projections.store.base import ProjectionStore
from millrace.projections.writer import ProjectionWriter

Positions = dict[TopicPartition, int]


class LiveMovedError(MillraceError):
    """The live fold moved while it was held (a replay does not swap then)."""


class LiveFold(Protocol):
    """What a replay needs of the live fold (see the module doc)."""

    async def positions(self, tps: Sequence[TopicPartition]) -> Positions:
        """The live fold's committed position in each of ``tps``."""
        ...

    def held(
        self, tps: Sequence[TopicPartition], holder: str
    ) -> AbstractAsyncContextManager[Positions]:
        """Hold the live fold between two batches; yields its positions in ``tps``."""
        ...

    async def unchanged(self, positions: Positions) -> None:
        """Raise :class:`LiveMovedError` when the held fold moved past ``positions``."""
        ...

    async def release(self, holder: str) -> None:
        """End a hold an earlier run of ``holder`` may have left (killed while holding)."""
        ...


class EmbeddedLive:
    """The in-process runtime of ``millrace run``."""

    def __init__(self, runtime: EmbeddedRuntime) -> None:
        self.runtime = runtime

    async def positions(self, tps: Sequence[TopicPartition]) -> Positions:
        return {tp: self.runtime.position(tp) for tp in tps}

    def held(
        self, tps: Sequence[TopicPartition], holder: str
    ) -> AbstractAsyncContextManager[Positions]:
        return self.runtime.paused()

    async def unchanged(self, positions: Positions) -> None:
        """Held by a lock in this process: it cannot move."""

    async def release(self, holder: str) -> None:
        """A lock of this process: a killed run left none."""


class DistributedLive:
    """The faust workers of ``millrace process``, through the store and the log."""

    def __init__(self, store: ProjectionStore, hold: PauseHold, consumer: str) -> None:
        self.writer = ProjectionWriter(store)
        self.hold = hold
        self.consumer = consumer

    async def positions(self, tps: Sequence[TopicPartition]) -> Positions:
        progress = await asyncio.to_thread(self.writer.progress, self.consumer)
        return {tp: progress.positions.get(tp, 0) for tp in tps}

    @contextlib.asynccontextmanager
    async def held(self, tps: Sequence[TopicPartition], holder: str) -> AsyncIterator[Positions]:
        async with self.hold.held(holder):
            yield await self.positions(tps)

    async def unchanged(self, positions: Positions) -> None:
        now = await self.positions(list(positions))
        moved = {
            f"{tp.topic}/{tp.partition}": now[tp] for tp, p in positions.items() if now[tp] != p
        }
        if moved:
            raise LiveMovedError(
                f"the live fold moved while held (a worker started during the hold?): {moved}"
            )

    async def release(self, holder: str) -> None:
        await self.hold.release(holder)


def live_of(live: EmbeddedRuntime | LiveFold) -> LiveFold:
    """The port over ``live`` (an in-process runtime is wrapped)."""
    return EmbeddedLive(live) if isinstance(live, EmbeddedRuntime) else live
