"""In-memory event log: the test double of the port.  Nothing survives the process."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence

from millrace.pipeline.clock import now_us
from millrace.pipeline.errors import LogClosedError, LogError
from millrace.pipeline.log.base import (
    AppendResult,
    EventLog,
    Message,
    Record,
    TopicPartition,
    partition_for,
)


class MemoryEventLog(EventLog):
    """Topics as lists of records in memory; same semantics as the durable adapters."""

    def __init__(self, partitions: int = 4, partitions_per_topic: dict[str, int] | None = None):
        if partitions < 1 or any(n < 1 for n in (partitions_per_topic or {}).values()):
            raise ValueError("a topic needs at least one partition")
        self._default_partitions = partitions
        self._partitions_per_topic = dict(partitions_per_topic or {})
        self._topics: dict[str, list[list[Record]]] = {}
        self._round_robin: dict[str, Iterator[int]] = {}
        self._committed: dict[str, dict[TopicPartition, int]] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError("the log is closed")

    def partitions(self, topic: str) -> int:
        return self._partitions_per_topic.get(topic, self._default_partitions)

    def _partition(self, topic: str, partition: int) -> list[Record]:
        self._check_open()
        count = self.partitions(topic)
        if not 0 <= partition < count:
            raise LogError(f"topic {topic!r} has no partition {partition} (it has {count})")
        return self._topics.setdefault(topic, [[] for _ in range(count)])[partition]

    async def append(self, topic: str, messages: Sequence[Message]) -> list[AppendResult]:
        self._check_open()
        count = self.partitions(topic)
        numbers: list[int] = []
        for msg in messages:  # validate the whole batch before storing any of it
            if msg.partition is not None:
                if not 0 <= msg.partition < count:
                    raise LogError(f"topic {topic!r} has no partition {msg.partition}")
                numbers.append(msg.partition)
            elif msg.key is not None:
                numbers.append(partition_for(msg.key, count))
            else:
                rr = self._round_robin.setdefault(topic, itertools.count())
                numbers.append(partition_for(None, count, next(rr)))
        now = now_us()
        results = []
        for msg, number in zip(messages, numbers, strict=True):
            records = self._partition(topic, number)
            ts = now if msg.timestamp_us is None else msg.timestamp_us
            offset = len(records)
            records.append(Record(topic, number, offset, ts, msg.key, msg.value, msg.headers))
            results.append(AppendResult(topic, number, offset))
        return results

    async def read(
        self, topic: str, partition: int, offset: int, max_records: int = 1000
    ) -> list[Record]:
        records = self._partition(topic, partition)
        if max_records <= 0:
            return []
        start = max(offset, 0)
        return records[start : start + max_records]

    async def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        return 0, len(self._partition(topic, partition))

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        self._check_open()
        for tp, offset in offsets.items():
            if not isinstance(offset, int) or offset < 0:
                raise LogError(f"invalid offset {offset!r} for {tp}")
        self._committed.setdefault(group, {}).update(offsets)

    async def committed(self, group: str, tp: TopicPartition) -> int | None:
        self._check_open()
        return self._committed.get(group, {}).get(tp)

    async def close(self) -> None:
        self._closed = True
