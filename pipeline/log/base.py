"""The event log port.

An event log is a set of topics, each split into numbered partitions; a partition is
an append-only sequence of records addressed by a dense offset starting at 0.  The
embedded :class:`~millrace.pipeline.log.local.LocalEventLog`, the in-memory
:class:`~millrace.pipeline.log.memory.MemoryEventLog` and the Kafka adapter implement this one
interface and pass the same contract tests (``tests/pipeline/log/contract.py``).

Consumer groups store a committed offset per (topic, partition): the offset of the
next record the group will read, as in Kafka.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Record:
    """One record as read back from the log."""

    topic: str
    partition: int
    offset: int
    timestamp_us: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    """One record to append. ``timestamp_us`` None means "the log's clock"."""

    value: bytes
    key: bytes | None = None
    timestamp_us: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass(slots=True)
class AppendResult:
    """Where an appended message landed."""

    topic: str
    partition: int
    offset: int
    extra: dict[str, object] = field(default_factory=dict)


def partition_for(key: bytes | None, partitions: int, fallback: int = 0) -> int:
    """Stable key -> partition mapping so one device's events stay ordered.

    Keyless messages go to ``fallback`` (callers round-robin it).
    """
    if key is None:
        return fallback % partitions
    return zlib.crc32(key) % partitions


class EventLog(ABC):
    """Port: an append-only, partitioned, durable event log with consumer groups."""

    @abstractmethod
    async def append(self, topic: str, messages: Sequence[Message]) -> list[AppendResult]:
        """Append messages as one batch; return once they are acknowledged (durable
        according to the configured fsync policy).  Order within a partition is the
        order of ``messages``."""

    @abstractmethod
    async def read(
        self, topic: str, partition: int, offset: int, max_records: int = 1000
    ) -> list[Record]:
        """Records of one partition from ``offset`` on (at most ``max_records``);
        empty when ``offset`` is at the end.  An offset below the first retained
        record starts at the first retained record."""

    @abstractmethod
    def partitions(self, topic: str) -> int:
        """Number of partitions of ``topic``."""

    @abstractmethod
    async def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        """(first retained offset, end offset = offset the next append will get)."""

    @abstractmethod
    async def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Durably store a consumer group's next-to-read offsets."""

    @abstractmethod
    async def committed(self, group: str, tp: TopicPartition) -> int | None:
        """The group's committed offset for ``tp``, or None if it never committed."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release files, sockets and threads."""
