"""LogPublisher: the EventPublisher that encodes events and appends them to the log."""

from __future__ import annotations

from collections.abc import Sequence

from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.connector import Event, EventPublisher
from millrace.pipeline.log.base import EventLog, Message


class LogPublisher(EventPublisher):
    """Encodes with the topic's Avro schema; keys are UTF-8 (identity, resource id)."""

    def __init__(self, log: EventLog, codec: AvroCodec | None = None) -> None:
        self.log = log
        self.codec = codec or default_codec()
        self.published = 0

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        if not events:
            return
        messages = [
            Message(value=self.codec.encode(topic, event), key=key.encode())
            for key, event in events
        ]
        await self.log.append(topic, messages)
        self.published += len(messages)
