"""Decode one topic-partition's records and run its processor: the step every
runtime shares. Undecodable records become dead letters; the rest are applied."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.errors import DecodeError
from millrace.pipeline.processors.base import (
    Event,
    Outputs,
    Processor,
    ReadingProcessor,
    StatefulProcessor,
    StateReader,
    dead_letter,
)


class RawRecord(Protocol):
    """What a runtime knows of a record: its offset, timestamp, key and bytes."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp_us(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...


def decode_records(
    codec: AvroCodec, topic: str, partition: int, records: Iterable[RawRecord]
) -> tuple[list[Event], list[dict[str, Any]]]:
    """Decode ``records``: their events, and a dead letter for each undecodable one."""
    dead: list[dict[str, Any]] = []
    events: list[Event] = []
    for rec in records:
        try:
            value = codec.decode(topic, rec.value)
        except DecodeError as exc:
            dead.append(
                dead_letter(
                    None,
                    reason=str(exc),
                    error_type="DecodeError",
                    stage="decode",
                    ts_us=rec.timestamp_us,
                    payload=rec.value[:65536],
                    topic=topic,
                    partition=partition,
                    offset=rec.offset,
                    key=rec.key,
                )
            )
            continue
        events.append(
            Event(
                topic,
                partition,
                rec.offset,
                rec.timestamp_us,
                rec.key,
                value,
                len(rec.value),
                rec.value,
            )
        )
    return events, dead


def process_events(
    processor: Processor, events: Sequence[Event], state: StateReader | None = None
) -> Outputs:
    """Run ``processor`` over decoded ``events``; a stateful processor gets the state of
    the batch's keys from ``state`` (the sink)."""
    out = Outputs()
    if not events:
        return out
    if isinstance(processor, StatefulProcessor):
        keys = processor.state_keys(events)
        rows: dict[str, dict[str, Any]] = {}
        if keys:
            if state is None:
                raise TypeError(f"{type(processor).__name__} needs a StateReader")
            rows = state.load_state(processor.state_table, processor.state_key, keys)
        out.merge(processor.process_with_state(events, rows))
    elif isinstance(processor, ReadingProcessor):
        out.merge(processor.process_reading(events, state))
    else:
        out.merge(processor.process(events))
    return out


def decode_and_process(
    codec: AvroCodec,
    processor: Processor,
    topic: str,
    partition: int,
    records: Iterable[RawRecord],
    state: StateReader | None = None,
) -> Outputs:
    """Decode ``records`` and run ``processor`` (:func:`decode_records`, then
    :func:`process_events`); undecodable records become dead letters."""
    events, dead = decode_records(codec, topic, partition, records)
    out = process_events(processor, events, state)
    out.deadletters[:0] = dead
    return out
