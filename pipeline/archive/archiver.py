"""The archiver stage: every topic's records copied to the archive store.

One file per topic-partition and time window (:class:`~.window.WindowBuilder`), by log
timestamp: a partition's open window closes when the log holds a record past its end,
when it reaches ``max_file_bytes``, when the partition has been quiet for
``idle_close_s`` past the window's end, or on :meth:`Archiver.flush`. A record whose
timestamp goes back (a producer's clock) stays in the open file, so a file's records
may precede its window.

Exactly once. The archiver's position per topic-partition is the end offset of the last
window in the store, read from the manifests when it starts (each start: a singleton
leading again resumes from the store, never from memory). What it has read but not yet
written is in memory only; a crash loses it and the next start reads it again from the
log, building the same files (the bytes depend only on the records), so a window whose
data landed but whose manifest did not is rewritten identically and then committed. A
second runner over the same store writes the same paths with the same bytes.

Both deployments read through the EventLog port: the local log's segments embedded,
Kafka distributed (positions from the manifests as well; the consumer group
``millrace-archiver`` is committed after each window so broker tools show its lag).
Retention of the local log asks :meth:`Archiver.archived_end` before deleting a segment.

An unreachable store: windows stay in memory, the archiver retries with a backoff
doubling up to ``retry_max_s``, :meth:`health` shows the error and the log keeps
its segments. Flushes arrive as tasks of kind ``archive-flush`` on the ``tasks`` topic
(created by ``POST /api/v1/archive/flush``), which the archiver runs itself, so a flush
reaches it in whichever ``millrace process`` leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from millrace.pipeline.archive.config import ArchiveConfig
from millrace.pipeline.archive.errors import ArchiveError
from millrace.pipeline.archive.format import Manifest, window_start
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.archive.window import WindowBuilder
from millrace.pipeline.clock import now_us
from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.errors import LogError
from millrace.pipeline.log.base import EventLog, Record, TopicPartition
from millrace.pipeline.restore.urls import masked_url
from millrace.pipeline.runtime.stage import Stage
from millrace.pipeline.tasks import TaskContext, TaskKinds, TaskRunner
from millrace.pipeline.topics import ALL_TOPICS

log = logging.getLogger("millrace.archive")

GROUP = "millrace-archiver"
FLUSH_KIND = "archive-flush"
TP = tuple[str, int]


@dataclass
class ArchiverStats:
    windows: int = 0
    records: int = 0
    readings: int = 0
    bytes: int = 0
    behind_records: int = 0  # appended to the log, not yet in the store (last look)
    open_windows: int = 0
    failures: int = 0
    error: str | None = None
    retry_in_s: float = 0.0
    skipped_records: int = 0  # gone from the log (retention) before they were archived
    flushes: int = 0
    last_window_us: int = 0


class Archiver(Stage):
    """Copies every topic of ``log`` to ``store`` (a singleton of the process role)."""

    name = "archiver"
    singleton = True
    stop_timeout_s = 30.0

    def __init__(
        self,
        log_: EventLog,
        store: ArchiveStore,
        config: ArchiveConfig | None = None,
        *,
        publisher: EventPublisher | None = None,
        topics: Sequence[str] = ALL_TOPICS,
        clock: Callable[[], int] = now_us,
        max_records: int = 5000,
        max_file_bytes: int = 64 << 20,
        codec: AvroCodec | None = None,
        sync: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        cfg = config or ArchiveConfig(url=store.url)
        self.log, self.store, self.publisher = log_, store, publisher
        self.topics = tuple(topics)
        self.window_us, self.file_codec = cfg.window_us, cfg.codec
        self.idle_close_us = int(cfg.idle_close_s * 1e6)
        self.poll_s, self.retry_max_s = cfg.poll_ms / 1000, cfg.retry_max_s
        self.clock, self.max_records, self.max_file_bytes = clock, max_records, max_file_bytes
        self.codec = codec or default_codec()
        #: makes what was appended durable before it is archived (the local log under
        #: ``fsync: interval|never``): an archived record must not vanish from the log
        #: in a power failure and its offset be taken by another record
        self.sync = sync
        self.stats = ArchiverStats()
        #: per topic-partition: the offset after the last archived record (the store's)
        self.positions: dict[TP, int] = {}
        self.loaded = False
        self._read: dict[TP, int] = {}
        self._open: dict[TP, WindowBuilder] = {}
        self._ready: deque[tuple[bytes, Manifest]] = deque()
        self._flushes: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self.kinds = TaskKinds()
        self.kinds.register(FLUSH_KIND, self._flush_task)

    # --- what others ask --------------------------------------------------------------

    def archived_end(self, topic: str, partition: int) -> int:
        """The offset below which every record of the partition is archived (0 before
        the positions are loaded: retention then keeps everything)."""
        return self.positions.get((topic, partition), 0)

    def health(self) -> dict[str, Any]:
        out = asdict(self.stats)
        out["store"] = self.store.display_url
        out["open_windows"] = len(self._open)
        return out

    def wake(self) -> None:
        self._wake.set()

    async def flush(self) -> None:
        """Archive everything appended so far, closing the open windows early; returns
        once it is in the store (waits through store failures)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushes.append(fut)
        self._wake.set()
        await fut

    async def _flush_task(self, ctx: TaskContext) -> None:
        before = self.stats.windows
        await self.flush()
        await ctx.progress(windows=self.stats.windows - before)

    # --- the loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.positions, self.loaded = {}, False
        self._read, self._open = {}, {}
        self._ready.clear()
        tasks = None
        if self.publisher is not None:
            runner = TaskRunner(self.log, self.publisher, self.kinds, codec=self.codec)
            tasks = asyncio.create_task(runner.run(stop), name="archiver-tasks")
        delay = 0.0
        try:
            while not stop.is_set():
                flushes, self._flushes = self._flushes, []
                try:
                    if not self.loaded:
                        self.positions = await asyncio.to_thread(self.store.positions)
                        self.loaded = True
                    await self.step(stop, flush=bool(flushes))
                except (ArchiveError, OSError, LogError) as exc:
                    self._flushes[:0] = flushes
                    delay = min(max(delay * 2, 0.5), self.retry_max_s)
                    self.stats.failures += 1
                    # a store's error may name its URL: never a password in status or log
                    self.stats.error, self.stats.retry_in_s = masked_url(f"{exc}"), delay
                    log.warning("archiver: %s; retrying in %.1fs", self.stats.error, delay)
                    await self._sleep(stop, delay)
                    continue
                delay, self.stats.error, self.stats.retry_in_s = 0.0, None, 0.0
                if flushes and not stop.is_set():
                    self.stats.flushes += 1
                for fut in flushes:
                    if not fut.done():
                        fut.set_result(None)
                if not self._flushes:
                    await self._sleep(stop, self.poll_s)
        finally:
            for fut in self._flushes:
                fut.cancel()
            if tasks is not None:
                await asyncio.gather(tasks, return_exceptions=True)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        self._wake.clear()
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when="FIRST_COMPLETED")
        finally:
            for w in waiters:
                w.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await w

    async def step(self, stop: asyncio.Event | None = None, *, flush: bool = False) -> None:
        """One pass over every partition: read what is new, write the windows that
        closed (all open ones when ``flush``)."""
        await self._drain()
        ends: dict[TP, tuple[int, int]] = {}
        for topic in self.topics:
            try:
                count = self.log.partitions(topic)
            except LogError:
                continue  # a topic the log does not hold (Kafka: not created)
            for p in range(count):
                ends[(topic, p)] = await self.log.offsets(topic, p)
        if self.sync is not None:
            await self.sync()  # what lies below the ends is on disk now
        behind = 0
        for tp, (first, end) in ends.items():
            if stop is not None and stop.is_set():
                return
            await self._partition(tp, first, end, flush)
            behind += max(0, end - self.positions.get(tp, 0))
        self.stats.behind_records = behind

    async def _partition(self, tp: TP, first: int, end: int, flush: bool) -> None:
        topic, p = tp
        pos = self._read.setdefault(tp, self.positions.get(tp, 0))
        if pos < first:
            self._close(tp)
            self.stats.skipped_records += first - pos
            log.warning("archiver: %s/%d offsets %d..%d left the log unarchived",
                        topic, p, pos, first - 1)  # fmt: skip
            pos = self._read[tp] = first
        while pos < end:
            records = await self.log.read(topic, p, pos, min(self.max_records, end - pos))
            records = [r for r in records if r.offset < end]
            if not records:
                break
            await asyncio.to_thread(self._feed, tp, records)
            pos = self._read[tp]
            await self._drain()
        b = self._open.get(tp)
        if b is not None and (flush or self.clock() >= b.window_end_us + self.idle_close_us):
            self._close(tp)
            await self._drain()

    def _feed(self, tp: TP, records: list[Record]) -> None:
        """Add records to the partition's open window, closing it where they say."""
        for r in records:
            b = self._open.get(tp)
            if b is not None and (
                r.timestamp_us >= b.window_end_us or b.size >= self.max_file_bytes
            ):
                self._close(tp)
                b = None
            if b is None:
                ws = window_start(max(r.timestamp_us, 0), self.window_us)
                b = self._open[tp] = WindowBuilder(r, ws, ws + self.window_us, self.file_codec)
            b.add(r)
            self._read[tp] = r.offset + 1

    def _close(self, tp: TP) -> None:
        b = self._open.pop(tp, None)
        if b is not None:
            self._ready.append(b.finish(self.clock()))

    async def _drain(self) -> None:
        """Write the closed windows, oldest first; a failure keeps the rest queued."""
        while self._ready:
            data, m = self._ready[0]
            await asyncio.to_thread(self.store.put_window, data, m)
            self._ready.popleft()
            self.positions[(m.topic, m.partition)] = m.end_offset
            s = self.stats
            s.windows, s.records, s.readings = (
                s.windows + 1,
                s.records + m.records,
                s.readings + m.readings,
            )
            s.bytes, s.last_window_us = s.bytes + m.bytes, self.clock()
            try:  # for broker tools' lag; the manifests are the position
                await self.log.commit(GROUP, {TopicPartition(m.topic, m.partition): m.end_offset})
            except Exception as exc:  # a lag figure must not stop archiving
                log.debug("archiver: commit of %s/%d failed: %s", m.topic, m.partition, exc)
