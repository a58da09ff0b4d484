"""Follows the end of the log and turns its events into live-stream items.

:class:`LogTail` reads every partition of the followed topics from their end offsets at
startup on, decodes each record and hands it to the pure
:class:`~millrace.pipeline.stream.items.ItemBuilder` (which says what each item is), then gives
the items to the hub (:class:`~millrace.api.stream.StreamHub`). Undecodable or malformed records
are skipped (the pipeline dead-letters them).

Decode once: with the processor runtime in the same process (``millrace run``) the tail
takes the events the runtime decoded (``feed``, ``pipeline.runtime.feed``) instead of
decoding the log again, and reads the log itself only where the feed cannot serve
(``millrace api`` has no runtime: it decodes what it tails, once per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol, cast

from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.errors import DecodeError
from millrace.pipeline.log.base import EventLog, Record, TopicPartition
from millrace.pipeline.runtime.feed import DecodedFeed
from millrace.pipeline.stream.items import KINDS, STATEFUL, Item, ItemBuilder
from millrace.pipeline.topics import ALARMS, AUDIT, IDENTITY, STATUS, TELEMETRY

log = logging.getLogger("millrace.api.stream")

DEFAULT_TOPICS = (ALARMS, AUDIT, STATUS, TELEMETRY, IDENTITY)
#: the tail's name as a reader of the runtime's decoded events
_READER = "stream-tail"
__all__ = ["DEFAULT_TOPICS", "Item", "ItemBuilder", "ItemSink", "LogTail"]


class ItemSink(Protocol):
    """What the tail needs from the hub."""

    def wants(self, kind: str) -> bool: ...

    def publish(self, kind: str, data: dict[str, Any]) -> int | None: ...


class LogTail:
    """Follows the end of ``topics`` in ``log`` and publishes items to ``hub``."""

    def __init__(
        self,
        log: EventLog,
        codec: AvroCodec,
        hub: ItemSink,
        topics: Sequence[str] = DEFAULT_TOPICS,
        poll_s: float = 0.1,
        max_records: int = 1000,
        builder: ItemBuilder | None = None,
        feed: DecodedFeed | None = None,
    ) -> None:
        self.log = log
        self.codec = codec
        self.hub = hub
        self.topics = tuple(topics)
        self.poll_s = poll_s
        self.max_records = max_records
        self.builder = builder or ItemBuilder()
        self.positions: dict[TopicPartition, int] = {}
        self.skipped = 0  # undecodable or malformed records
        self._started = False
        self._wake = asyncio.Event()
        self.feed = feed
        if feed is not None:
            feed.subscribe(_READER, self.wake)

    def wake(self) -> None:
        """New records are there: poll now instead of after ``poll_s``."""
        self._wake.set()

    async def start(self) -> None:
        """Position at the current end of every partition (later events only)."""
        positions = {}
        for topic in self.topics:
            for p in range(self.log.partitions(topic)):
                positions[TopicPartition(topic, p)] = (await self.log.offsets(topic, p))[1]
        self.positions, self._started = positions, True

    async def step(self) -> int:
        """Read what is new in every partition (up to ``max_records`` each); the
        number of records read."""
        if not self._started:
            await self.start()
        total = 0
        feed = self.feed
        for tp, position in self.positions.items():
            wanted = self._wanted(tp.topic)
            taken = feed.take(_READER, tp, position, self.max_records) if wanted and feed else None
            if taken is not None:  # decoded by the runtime (none yet: wait for its batch)
                self.positions[tp] = taken.next
                total += taken.next - position
                self.skipped += taken.skipped
                for event in taken.events:
                    self._items(tp.topic, cast(dict[str, Any], event.value))
                continue
            start, end = await self.log.offsets(tp.topic, tp.partition)
            if end <= position:
                continue
            if not wanted:  # skip without reading
                self.positions[tp] = end
                total += end - max(position, start)
                if feed is not None:
                    feed.passed(_READER, tp, end)
                continue
            records = await self.log.read(
                tp.topic, tp.partition, max(position, start), self.max_records
            )
            if not records:
                continue
            self.positions[tp] = records[-1].offset + 1
            total += len(records)
            if feed is not None:
                feed.passed(_READER, tp, self.positions[tp])
            # decoding is CPU work: off the loop the API serves on
            for value in await asyncio.to_thread(self._decode, tp.topic, records):
                self._items(tp.topic, value)
        return total

    def _wanted(self, topic: str) -> bool:
        # a topic whose items nobody wants is not even read, unless the builder must
        # remember something from it (alarm states, deviated flags)
        return topic in STATEFUL or any(self.hub.wants(k) for k in KINDS.get(topic, ()))

    def _decode(self, topic: str, records: Sequence[Record]) -> list[dict[str, Any]]:
        out = []
        for record in records:
            try:
                out.append(self.codec.decode(topic, record.value))
            except DecodeError:
                self.skipped += 1
        return out

    def _items(self, topic: str, event: dict[str, Any]) -> None:
        try:
            items = self.builder.items(topic, event)
        except (KeyError, TypeError, AttributeError):
            self.skipped += 1
            return
        for kind, data in items:
            self.hub.publish(kind, data)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the log until ``stop``; errors are logged and retried."""
        relay = asyncio.create_task(self._wake_on(stop))
        backoff = self.poll_s
        try:
            while not stop.is_set():
                try:
                    n = await self.step()
                    backoff = self.poll_s
                except Exception:
                    log.exception("live stream tail failed; retrying in %.1f s", backoff)
                    n, backoff = 0, min(backoff * 2, 5.0)
                if n:
                    await asyncio.sleep(0)  # let clients drain between batches
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), backoff)
        finally:
            relay.cancel()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()
