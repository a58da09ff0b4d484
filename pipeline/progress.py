"""Read-your-writes: wait until the projections hold what the log held a moment ago.

An API write appends to the log and, before answering, waits until the processor
runtime has *committed to the projection sink* every record that was in the written
topic at that moment. Both halves go through ports, so every deployment can wait:

- the log's end offsets come from :meth:`EventLog.offsets` (the local log, or Kafka
  from another process);
- the committed positions come from a :data:`Positions` source: the in-process
  runtime's view of its own commits (:func:`runtime_positions`, what ``millrace run``
  uses: no query per poll), or the sink's stored progress
  (:func:`sink_positions`: ``ProjectionSink.progress``, i.e. ``millrace.progress``),
  which a process without the runtime (``millrace api``) reads.

The runtime updates its positions only after ``ProjectionSink.write`` committed the
batch, so both sources report the same committed progress; the sink's is just a
query away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Protocol

from millrace.pipeline.log.base import EventLog, TopicPartition
from millrace.pipeline.sink import ProjectionSink

#: committed positions (next offset to process) of ``topic``'s partitions
Positions = Callable[[str], Awaitable[Mapping[int, int]]]


class _HasPositions(Protocol):
    def position(self, tp: TopicPartition) -> int: ...


def runtime_positions(runtime: _HasPositions, log: EventLog) -> Positions:
    """Positions from an in-process runtime (``EmbeddedRuntime.position``)."""

    async def positions(topic: str) -> Mapping[int, int]:
        return {p: runtime.position(TopicPartition(topic, p)) for p in range(log.partitions(topic))}

    return positions


def sink_positions(sink: ProjectionSink, consumer: str) -> Positions:
    """Positions from the sink's stored progress of ``consumer`` (read on a thread)."""

    async def positions(topic: str) -> Mapping[int, int]:
        progress = await asyncio.to_thread(sink.progress, consumer)
        return {tp.partition: pos for tp, pos in progress.positions.items() if tp.topic == topic}

    return positions


def behind(ends: Mapping[int, int], positions: Mapping[int, int]) -> int:
    """Records below the ends that the positions have not reached."""
    return sum(max(0, end - positions.get(p, 0)) for p, end in ends.items())


class AppliedWaiter:
    """``await waiter(topic, timeout_s)``: True once every record appended to
    ``topic`` before the call is committed to the sink; False after ``timeout_s``."""

    def __init__(
        self,
        log: EventLog,
        positions: Positions,
        *,
        topics: Collection[str] | None = None,
        wake: Callable[[], None] | None = None,
        poll_s: float = 0.005,
    ) -> None:
        self.log = log
        self.positions = positions
        self.topics = None if topics is None else frozenset(topics)  # what is projected
        self.wake = wake
        self.poll_s = poll_s

    async def ends(self, topic: str) -> dict[int, int]:
        """End offset of each partition of ``topic`` now."""
        return {p: (await self.log.offsets(topic, p))[1] for p in range(self.log.partitions(topic))}

    async def __call__(self, topic: str, timeout_s: float = 5.0) -> bool:
        if self.topics is not None and topic not in self.topics:
            return True  # no processor projects it: nothing to wait for
        ends = await self.ends(topic)
        if self.wake is not None:
            self.wake()
        deadline = time.monotonic() + timeout_s
        while behind(ends, await self.positions(topic)):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(self.poll_s)
        return True
