"""The processor contract.

A processor folds a batch of decoded events into rows for projection tables. It is
pure: no I/O, no clock, no globals — the same events give the same rows, which is what
lets a retried batch carry the same deduplication token (see ``pipeline.sink``).
State that must outlive a batch lives in the projections themselves (partial
aggregates merged by ClickHouse), so the state argument of ``(state, event) ->
(state, outputs)`` is empty for the processors of this package.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from millrace.pipeline.events import dead_letter as dead_letter_event


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded event with the log position it came from."""

    topic: str
    partition: int
    offset: int
    timestamp_us: int
    key: bytes | None
    value: Mapping[str, Any]
    size: int = 0  # encoded bytes on the log
    raw: bytes = b""  # the encoded event as the log holds it (a content id hashes it)


@dataclass(slots=True)
class Outputs:
    """Rows per projection table, and events that could not be applied."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    deadletters: list[dict[str, Any]] = field(default_factory=list)

    def merge(self, other: Outputs) -> None:
        for name, table in other.tables.items():
            if name in self.tables:
                self.tables[name] = pa.concat_tables([self.tables[name], table])
            else:
                self.tables[name] = table
        self.deadletters.extend(other.deadletters)


def dead_letter(
    event: Event | None,
    *,
    reason: str,
    error_type: str,
    stage: str,
    ts_us: int,
    payload: bytes = b"",
    topic: str = "",
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
) -> dict[str, Any]:
    """The DeadLetter (``pipeline.events.dead_letter``) of ``event``, which a processor
    could not use; without an event, of the record at ``topic``/``partition``/``offset``."""
    if event is not None:
        topic, partition, offset, key = event.topic, event.partition, event.offset, event.key
    return dead_letter_event(
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        key=key,
        payload=payload,
        reason=reason,
        error_type=error_type,
        stage=stage,
        ts_us=ts_us,
    )


class Processor(ABC):
    """Port: a pure fold of decoded events into projection rows."""

    #: topics whose events this processor takes
    topics: tuple[str, ...] = ()

    @abstractmethod
    def process(self, events: Sequence[Event]) -> Outputs:
        """Rows for the events, in log order. Never raises for one bad event: it
        becomes a dead letter and the rest of the batch is applied."""


class StateReader(ABC):
    """Port: the state rows a stateful processor folds from (the sink's projection)."""

    @abstractmethod
    def load_state(self, table: str, key: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The current row of ``table`` for each of ``keys`` found (by column ``key``)."""


class ReadingProcessor(Processor):
    """A processor that consults a projection through the runtime's reader itself,
    keeping what it read in its own cache (the telemetry fold's applied batch ids,
    ``pipeline.batches``): no store round trip per batch. Its output stays a function
    of the log: the cache only ever holds what folding the log so far implies."""

    @abstractmethod
    def process_reading(self, events: Sequence[Event], reader: object | None) -> Outputs:
        """Rows for the events; ``reader`` is the sink (None: no store, memory only)."""

    def process(self, events: Sequence[Event]) -> Outputs:
        return self.process_reading(events, None)


class StatefulProcessor(Processor):
    """A processor whose output depends on state kept in its own projection.

    The runtime reads the state rows of the batch's keys through a
    :class:`StateReader` before calling :meth:`process_with_state`; the processor
    stays pure. Rows carry the log offset of the last event they include
    (``version``), so an event at or below it is skipped: a batch redone after a crash
    whose state rows had already landed changes nothing.
    """

    #: projection table holding the state, and its key column
    state_table: str = ""
    state_key: str = ""

    @abstractmethod
    def state_keys(self, events: Sequence[Event]) -> list[str]:
        """The keys whose state the batch needs."""

    @abstractmethod
    def process_with_state(
        self, events: Sequence[Event], state: Mapping[str, Mapping[str, Any]]
    ) -> Outputs:
        """Rows for the events, given the state before the first of them."""

    def process(self, events: Sequence[Event]) -> Outputs:
        return self.process_with_state(events, {})
