"""LogPublisher: the EventPublisher that encodes events and appends them to the log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.connector import Event, EventPublisher
from millrace.pipeline.log.base import EventLog, Message

#: a publish of more events than this encodes them in slices of at most ``SLICE_S``
#: seconds, letting the event loop run between slices
SLICED_ABOVE = 64
SLICE_S = 0.005


class LogPublisher(EventPublisher):
    """Encodes with the topic's Avro schema; keys are UTF-8 (identity, resource id).

    Encoding is Python work on the caller's event loop, which in ``millrace run`` also
    serves the API: a connector's flush of 2,000 devices' records held it 90 to 210 ms. A
    large publish therefore lets the loop run every ``SLICE_S`` of encoding, and runs
    as a task of its own that a cancel does not stop: as before, what a publish was
    given is encoded and appended whole (one append), even if its caller is cancelled
    (a connector stopping mid-flush)."""

    def __init__(self, log: EventLog, codec: AvroCodec | None = None) -> None:
        self.log = log
        self.codec = codec or default_codec()
        self.published = 0
        self._running: set[asyncio.Task[None]] = set()  # a cancelled caller's slices

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        if not events:
            return
        if len(events) <= SLICED_ABOVE:
            encode = self.codec.encode
            await self._append(
                topic, [Message(value=encode(topic, e), key=k.encode()) for k, e in events]
            )
            return
        task = asyncio.ensure_future(self._sliced(topic, events))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        await asyncio.shield(task)

    async def _sliced(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        encode = self.codec.encode
        messages: list[Message] = []
        began = time.perf_counter()
        for i, (key, event) in enumerate(events):
            messages.append(Message(value=encode(topic, event), key=key.encode()))
            if i % 16 == 15 and time.perf_counter() - began > SLICE_S:
                await asyncio.sleep(0)
                began = time.perf_counter()
        await self._append(topic, messages)

    async def _append(self, topic: str, messages: list[Message]) -> None:
        await self.log.append(topic, messages)
        self.published += len(messages)
