"""The embedded event log: topics and partitions as segment files on one machine."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

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
from millrace.pipeline.log.local.config import LocalLogConfig
from millrace.pipeline.log.local.offsets import FileOffsetStore
from millrace.pipeline.log.local.partition import Partition
from millrace.pipeline.log.local.segment import fsync_dir
from millrace.pipeline.runtime.executors import OwnThreads

log = logging.getLogger(__name__)

OFFSETS_DIR = "__consumer_offsets"
LOCK_FILE = ".lock"
_TOPIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class LocalEventLog(EventLog):
    """Embedded, durable event log in ``directory``::

        <directory>/<topic>/<partition>/<base_offset:020d>.log    framed records
        <directory>/<topic>/<partition>/<base_offset:020d>.index  sparse offset index
        <directory>/__consumer_offsets/<group>.json               committed offsets

    The constructor does no I/O; :meth:`open` (called by the first use) creates the
    directory, takes an exclusive lock on it and recovers every partition.  The
    ``*_sync`` methods serve CLI tools and the embedded runtime's hot path; the async
    methods of the port call them inline.  A topic keeps the number of partitions it
    was created with (the directories on disk win over the configuration).
    """

    def __init__(
        self,
        directory: str | Path,
        config: LocalLogConfig | None = None,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.directory = Path(directory)
        self.config = config if config is not None else LocalLogConfig()
        self._clock = clock
        self._topics: dict[str, list[Partition]] = {}
        self._round_robin: dict[str, Iterator[int]] = {}
        self._offsets = FileOffsetStore(
            self.directory / OFFSETS_DIR, durable=self.config.fsync != "never"
        )
        self._lock = threading.Lock()  # open/close and topic creation
        self._lock_fd: int | None = None
        self._state = "new"
        # threads of the log's own (see pipeline.runtime.executors): an append waits
        # for no API read or analyst query, and a slow fsync for no read
        self._appends = OwnThreads("millrace-log-append", 2)
        self._reads = OwnThreads("millrace-log-read", 2)
        self._retention_hold: Callable[[str, int], int] | None = None

    # --- lifecycle ---------------------------------------------------------------

    def open(self) -> None:
        """Create the directory, lock it and recover every partition on disk."""
        with self._lock:
            if self._state == "open":
                return
            if self._state == "closed":
                raise LogClosedError("the log is closed")
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._lock_directory()
                self._offsets.open()
                for child in sorted(self.directory.iterdir()):
                    if child.is_dir() and _TOPIC_NAME.fullmatch(child.name):
                        self._recover_topic(child)
            except BaseException as exc:
                self._release()
                if isinstance(exc, OSError):
                    raise LogError(f"cannot open the log in {self.directory}: {exc}") from exc
                raise
            self._state = "open"

    def _lock_directory(self) -> None:
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise LogError(f"{self.directory} is already open in another log") from exc
        self._lock_fd = fd

    def _recover_topic(self, directory: Path) -> None:
        numbers = [int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()]
        if not numbers:
            return
        topic, count = directory.name, max(numbers) + 1
        if count != self.config.partitions_of(topic):
            log.warning(
                "topic %s has %d partitions on disk, %d configured; keeping %d",
                topic,
                count,
                self.config.partitions_of(topic),
                count,
            )
        partitions = [Partition(topic, n, directory / str(n), self.config) for n in range(count)]
        self._topics[topic] = partitions
        for partition in partitions:
            partition.retention_hold = self._retention_hold
            partition.directory.mkdir(exist_ok=True)
            partition.recover()

    def close_sync(self) -> None:
        """Flush and close every partition; further use raises LogClosedError."""
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
            try:
                self._release()
            finally:
                self._appends.shutdown(wait=False)
                self._reads.shutdown(wait=False)

    def _release(self) -> None:
        errors: list[BaseException] = []
        for partitions in self._topics.values():
            for partition in partitions:
                try:
                    partition.close()
                except OSError as exc:
                    errors.append(exc)
        self._topics.clear()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        if errors:
            raise LogError(f"closing the log in {self.directory}: {errors[0]}") from errors[0]

    def __enter__(self) -> LocalEventLog:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_sync()

    def _ensure_open(self) -> None:
        if self._state != "open":
            self.open()

    # --- topics ------------------------------------------------------------------

    def topics(self) -> list[str]:
        """Topics present on disk."""
        self._ensure_open()
        return sorted(self._topics)

    def partitions(self, topic: str) -> int:
        self._ensure_open()
        existing = self._topics.get(topic)
        return len(existing) if existing is not None else self.config.partitions_of(topic)

    def _partition(self, topic: str, number: int) -> Partition | None:
        """The partition, or None for a topic not created yet."""
        partitions = self._topics.get(topic)
        count = len(partitions) if partitions is not None else self.config.partitions_of(topic)
        if not 0 <= number < count:
            raise LogError(f"topic {topic!r} has no partition {number} (it has {count})")
        return partitions[number] if partitions is not None else None

    def _create_topic(self, topic: str) -> list[Partition]:
        with self._lock:
            existing = self._topics.get(topic)
            if existing is not None:
                return existing
            if self._state != "open":
                raise LogClosedError("the log is closed")
            if not _TOPIC_NAME.fullmatch(topic) or topic == OFFSETS_DIR:
                raise LogError(f"invalid topic name {topic!r}: use letters, digits, . _ -")
            directory = self.directory / topic
            count = self.config.partitions_of(topic)
            partitions = [
                Partition(topic, n, directory / str(n), self.config) for n in range(count)
            ]
            try:
                for partition in partitions:
                    partition.retention_hold = self._retention_hold
                    partition.directory.mkdir(parents=True, exist_ok=True)
                if self.config.fsync != "never":
                    fsync_dir(directory)
                    fsync_dir(self.directory)
            except OSError as exc:
                raise LogError(f"cannot create topic {topic!r}: {exc}") from exc
            self._topics[topic] = partitions
            return partitions

    # --- sync API ----------------------------------------------------------------

    def append_sync(self, topic: str, messages: Sequence[Message]) -> list[AppendResult]:
        """Append ``messages``; one write (and fsync, per policy) per partition."""
        self._ensure_open()
        if not messages:
            return []
        partitions = self._topics.get(topic) or self._create_topic(topic)
        count = len(partitions)
        batches: dict[int, list[int]] = {}
        for i, msg in enumerate(messages):
            if msg.partition is not None:
                number = msg.partition
                if not 0 <= number < count:
                    raise LogError(f"topic {topic!r} has no partition {number} (it has {count})")
            elif msg.key is not None:
                number = partition_for(msg.key, count)
            else:
                rr = self._round_robin.get(topic)
                if rr is None:
                    rr = self._round_robin.setdefault(topic, itertools.count())
                number = partition_for(None, count, next(rr))
            batches.setdefault(number, []).append(i)
        now = self._clock()
        slots: list[AppendResult | None] = [None] * len(messages)
        try:
            for number, indexes in batches.items():
                first = partitions[number].append([messages[i] for i in indexes], now)
                for k, i in enumerate(indexes):
                    slots[i] = AppendResult(topic, number, first + k)
        except OSError as exc:
            raise LogError(f"appending to {topic!r}: {exc}") from exc
        return [slot for slot in slots if slot is not None]

    def read_sync(
        self, topic: str, partition: int, offset: int, max_records: int = 1000
    ) -> list[Record]:
        """Acknowledged records of one partition from ``offset`` on."""
        self._ensure_open()
        found = self._partition(topic, partition)
        return [] if found is None else found.read(offset, max_records)

    def offsets_sync(self, topic: str, partition: int) -> tuple[int, int]:
        """(first retained offset, next offset) of one partition."""
        self._ensure_open()
        found = self._partition(topic, partition)
        return (0, 0) if found is None else found.offsets()

    def commit_sync(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        self._ensure_open()
        self._offsets.commit(group, offsets)

    def committed_sync(self, group: str, tp: TopicPartition) -> int | None:
        self._ensure_open()
        return self._offsets.committed(group, tp)

    def flush(self) -> None:
        """fsync every partition's unsynced appends (``interval`` and ``never``)."""
        self._ensure_open()
        try:
            for partitions in list(self._topics.values()):
                for partition in partitions:
                    partition.flush()
        except OSError as exc:
            raise LogError(f"flushing {self.directory}: {exc}") from exc

    def hold_retention(self, hold: Callable[[str, int], int] | None) -> None:
        """Retention deletes a segment of (topic, partition) only when every record in
        it lies below ``hold(topic, partition)`` (the archiver's position: a segment
        goes only once it is archived); None lifts the hold."""
        self._retention_hold = hold
        for partitions in list(self._topics.values()):
            for partition in partitions:
                partition.retention_hold = hold

    def set_retention(self, retention_ms: int | None, retention_bytes: int | None) -> None:
        """Change ``retention_ms``/``retention_bytes`` while running (``PATCH
        /api/v1/config``); the next enforcement uses them."""
        with self._lock:
            self.config = self.config.model_copy(
                update={"retention_ms": retention_ms, "retention_bytes": retention_bytes}
            )
            for partitions in self._topics.values():
                for partition in partitions:
                    partition._config = self.config

    def enforce_retention(self) -> int:
        """Delete whole segments past ``retention_ms``/``retention_bytes``; returns how
        many.  Also runs on every segment roll of the partition that rolled."""
        self._ensure_open()
        now = self._clock()
        try:
            return sum(
                partition.enforce_retention(now)
                for partitions in list(self._topics.values())
                for partition in partitions
            )
        except OSError as exc:
            raise LogError(f"enforcing retention in {self.directory}: {exc}") from exc

    # --- the port ----------------------------------------------------------------

    # Appends (with their fsync) and reads run on the log's own threads so that the
    # event loop, which also serves the API, is never blocked on disk, and no other
    # part's blocking work delays them. A cancelled append still completes in its
    # thread: acknowledged or not, it is never half written.

    async def append(self, topic: str, messages: Sequence[Message]) -> list[AppendResult]:
        return await self._appends.run(self.append_sync, topic, messages)

    async def read(
        self, topic: str, partition: int, offset: int, max_records: int = 1000
    ) -> list[Record]:
        if self._state == "open":
            # a reader at the end (every poller of an idle engine, many times a second)
            # is answered here: the hop to a read thread and back costs more than the
            # answer, and an idle `millrace run` spent most of its CPU on those hops
            found = self._partition(topic, partition)
            if found is None or max_records <= 0 or offset >= found.next_offset:
                return []
        return await self._reads.run(self.read_sync, topic, partition, offset, max_records)

    async def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        return self.offsets_sync(topic, partition)

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        await self._reads.run(self.commit_sync, group, offsets)

    async def committed(self, group: str, tp: TopicPartition) -> int | None:
        return self.committed_sync(group, tp)

    async def close(self) -> None:
        self.close_sync()

    async def flush_async(self) -> None:
        """:meth:`flush` on the log's append threads (the ``interval`` policy's clock)."""
        await self._appends.run(self.flush)

    async def enforce_retention_async(self) -> int:
        """:meth:`enforce_retention` on the log's append threads."""
        return await self._appends.run(self.enforce_retention)
