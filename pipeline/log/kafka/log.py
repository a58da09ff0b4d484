"""The Kafka event log, on aiokafka.

Placement: a message with an explicit ``partition`` goes there; a keyed one is placed by
Kafka's default partitioner (murmur2 of the key modulo the partition count, the same as
the Java client, kafka-python and faust), so every client agrees on where an identity
lives; keyless messages are spread round-robin by the adapter.

Differences from the embedded log that callers may notice:

* Kafka record timestamps are milliseconds: ``timestamp_us`` is stored truncated to the
  millisecond and read back as ``ms * 1000``.
* an ``append`` of several messages is not atomic: on a broker error some may have been
  written (the idempotent producer still never writes one twice).
* partition counts come from the cluster (``partitions``/``replication_factor`` of the
  config apply only to :func:`~millrace.pipeline.log.kafka.admin.ensure_topics`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from millrace.pipeline.errors import LogClosedError, LogError
from millrace.pipeline.log.base import AppendResult, EventLog, Message, Record, TopicPartition
from millrace.pipeline.log.kafka.config import KafkaLogConfig
from millrace.pipeline.topics import ALL_TOPICS

INSTALL_HINT = "the Kafka event log needs aiokafka: pip install 'millrace[kafka]'"


def _aiokafka() -> Any:
    try:
        import aiokafka
    except ImportError as exc:
        raise LogError(INSTALL_HINT) from exc
    return aiokafka


@asynccontextmanager
async def _mapped(action: str) -> AsyncIterator[None]:
    """Map aiokafka's errors (and socket errors) into :class:`LogError`."""
    from aiokafka.errors import IllegalOperation, KafkaError

    try:
        yield
    except (KafkaError, IllegalOperation, OSError, TimeoutError) as exc:
        raise LogError(f"kafka: {action} failed: {exc!r}") from exc


class KafkaEventLog(EventLog):
    """The event log on a Kafka cluster (see the module docstring for placement).

    The constructor does no I/O; ``await start()`` connects and loads the partition
    counts of the topics the process will use, ``await close()`` (idempotent) disconnects.
    One producer appends; one cached consumer without a group serves ``read`` and
    ``offsets`` by assign + seek; one consumer per consumer group commits and fetches that
    group's offsets through the group coordinator, without joining the group.
    """

    def __init__(self, config: KafkaLogConfig) -> None:
        self.config = config
        self._producer: Any = None
        self._reader: Any = None
        self._groups: dict[str, Any] = {}
        self._partitions: dict[str, int] = {}
        self._round_robin: dict[str, Iterator[int]] = {}
        self._read_lock = asyncio.Lock()
        self._group_lock = asyncio.Lock()
        self._started = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, topics: Iterable[str] = ALL_TOPICS) -> None:
        """Connect, and load the partition counts of ``topics`` (millrace names).

        A broker with auto-creation creates missing topics here; otherwise a missing
        topic raises :class:`LogError` after ``request_timeout_ms``.
        """
        self._check_open()
        if self._started:
            return
        aiokafka = _aiokafka()
        common = self._client_kwargs()
        producer = aiokafka.AIOKafkaProducer(
            acks=self.config.acks,
            enable_idempotence=self.config.enable_idempotence,
            compression_type=self.config.compression_type,
            **common,
        )
        reader = aiokafka.AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **common,
        )
        self._producer, self._reader = producer, reader
        self._started = True  # from here on close() releases whatever did start
        try:
            async with _mapped("connect"):
                await producer.start()
                await reader.start()
            await self.load_topics(topics)
        except BaseException:
            await self.close()
            raise

    async def load_topics(self, topics: Iterable[str]) -> None:
        """Fetch (or refresh) the partition counts of ``topics`` from the cluster."""
        for topic in topics:
            await self._refresh(topic)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        clients = [self._producer, self._reader, *self._groups.values()]
        self._producer, self._reader, self._groups = None, None, {}
        errors = []
        for client in clients:
            if client is None:
                continue
            try:
                await client.stop()
            except Exception as exc:  # release the others before reporting
                errors.append(exc)
        if errors:
            raise LogError(f"kafka: close failed: {errors[0]!r}") from errors[0]

    @property
    def producer_id(self) -> int | None:
        """The idempotent producer's id assigned by the broker (None if not idempotent)."""
        # aiokafka keeps the producer id on its (private) transaction manager only.
        manager = getattr(self._producer, "_txn_manager", None)
        return None if manager is None else int(manager.producer_id)

    # -- the port ----------------------------------------------------------------------

    def partitions(self, topic: str) -> int:
        self._check_open()
        if topic not in self._partitions:
            raise LogError(f"kafka: topic {topic!r} is not loaded; pass it to start()")
        return self._partitions[topic]

    async def append(self, topic: str, messages: Sequence[Message]) -> list[AppendResult]:
        self._check_started()
        count = await self._refresh(topic)
        numbers: list[int | None] = []
        for msg in messages:  # validate the whole batch before sending any of it
            if msg.partition is not None:
                self._check_partition(topic, msg.partition, count)
                numbers.append(msg.partition)
            elif msg.key is not None:
                numbers.append(None)  # Kafka's default partitioner: murmur2(key)
            else:
                rr = self._round_robin.setdefault(topic, itertools.count())
                numbers.append(next(rr) % count)
        name = self.config.topic(topic)
        async with _mapped(f"append to {name}"):
            futures = []
            for msg, number in zip(messages, numbers, strict=True):
                ts_ms = None if msg.timestamp_us is None else msg.timestamp_us // 1000
                futures.append(
                    await self._producer.send(
                        name,
                        value=msg.value,
                        key=msg.key,
                        partition=number,
                        timestamp_ms=ts_ms,
                        headers=list(msg.headers),
                    )
                )
            sent = await asyncio.gather(*futures)
        return [AppendResult(topic, md.partition, md.offset) for md in sent]

    async def read(
        self, topic: str, partition: int, offset: int, max_records: int = 1000
    ) -> list[Record]:
        self._check_started()
        self._check_partition(topic, partition, await self._refresh(topic))
        if max_records <= 0:
            return []
        tp = self._tp(topic, partition)
        async with self._read_lock:
            first, end = await self._offsets(tp)
            start = max(offset, first)
            if start >= end:
                return []
            wanted = min(max_records, end - start)
            return await self._fetch(topic, tp, start, end, wanted)

    async def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        self._check_started()
        self._check_partition(topic, partition, await self._refresh(topic))
        async with self._read_lock:
            return await self._offsets(self._tp(topic, partition))

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        self._check_started()
        if not offsets:
            return
        OffsetAndMetadata = _aiokafka().structs.OffsetAndMetadata
        wanted = {self._tp(tp.topic, tp.partition): off for tp, off in offsets.items()}
        async with self._group_lock, _mapped(f"commit for group {group!r}"):
            consumer = await self._group(group)
            # commit() only accepts assigned partitions; paused, they are never fetched.
            assigned = consumer.assignment() | set(wanted)
            if assigned != consumer.assignment():
                consumer.assign(list(assigned))
                consumer.pause(*assigned)
            await consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in wanted.items()})

    async def committed(self, group: str, tp: TopicPartition) -> int | None:
        self._check_started()
        async with self._group_lock, _mapped(f"committed for group {group!r}"):
            consumer = await self._group(group)
            found = await consumer.committed(self._tp(tp.topic, tp.partition))
        return None if found is None else int(found)

    # -- helpers -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError("the log is closed")

    def _check_started(self) -> None:
        self._check_open()
        if not self._started:
            raise LogError("kafka: the log is not started; await start() first")

    def _check_partition(self, topic: str, partition: int, count: int) -> None:
        if not 0 <= partition < count:
            raise LogError(f"topic {topic!r} has no partition {partition} (it has {count})")

    def _tp(self, topic: str, partition: int) -> Any:
        return _aiokafka().TopicPartition(self.config.topic(topic), partition)

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs = self.config.client_kwargs()
        if self.config.security_protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            password = self.config.ssl_password
            kwargs["ssl_context"] = create_ssl_context(
                cafile=self.config.ssl_cafile,
                certfile=self.config.ssl_certfile,
                keyfile=self.config.ssl_keyfile,
                password=None if password is None else password.get_secret_value(),
            )
        return kwargs

    async def _refresh(self, topic: str) -> int:
        """Partition count of ``topic`` from the producer's metadata (cached by aiokafka,
        refreshed every ``metadata.max.age``)."""
        name = self.config.topic(topic)
        async with _mapped(f"metadata of {name}"):
            count = len(await self._producer.partitions_for(name))
        if count < 1:
            raise LogError(f"kafka: topic {name!r} has no partitions")
        self._partitions[topic] = count
        return count

    async def _offsets(self, tp: Any) -> tuple[int, int]:
        async with _mapped(f"offsets of {tp}"):
            first = await self._reader.beginning_offsets([tp])
            end = await self._reader.end_offsets([tp])
        return int(first[tp]), int(end[tp])

    async def _fetch(self, topic: str, tp: Any, start: int, end: int, wanted: int) -> list[Record]:
        reader = self._reader
        out: list[Record] = []
        # Offsets may have gaps (compaction, transaction markers): stop at the end offset.
        deadline = time.monotonic() + self.config.request_timeout_ms / 1000
        async with _mapped(f"read of {tp}"):
            if reader.assignment() != {tp}:
                reader.assign([tp])
            reader.seek(tp, start)
            while len(out) < wanted and time.monotonic() < deadline:
                batch = await reader.getmany(tp, timeout_ms=200, max_records=wanted - len(out))
                for r in batch.get(tp, []):
                    if r.offset >= start:
                        out.append(_record(topic, r))
                if out and out[-1].offset >= end - 1:
                    break
        if not out:
            raise LogError(f"kafka: no record of {tp} from {start} before the timeout")
        return out[:wanted]

    async def _group(self, group: str) -> Any:
        consumer = self._groups.get(group)
        if consumer is None:
            consumer = _aiokafka().AIOKafkaConsumer(
                group_id=group, enable_auto_commit=False, **self._client_kwargs()
            )
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._groups[group] = consumer
        return consumer


def _record(topic: str, r: Any) -> Record:
    headers = tuple((k, bytes(v)) for k, v in (r.headers or ()))
    value = b"" if r.value is None else bytes(r.value)
    key = None if r.key is None else bytes(r.key)
    return Record(topic, r.partition, r.offset, r.timestamp * 1000, key, value, headers)
