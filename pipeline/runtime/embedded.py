"""EmbeddedRuntime: the asyncio runtime of the one-process deployment.

Each step reads up to ``max_records`` records from every partition of the
processors' topics, decodes them, runs the processors, appends dead letters to the
log, and hands the rows to the sink as one batch (see ``pipeline.sink`` for why that
is exactly-once). CPU work and store inserts run on the runtime's own thread (see
``pipeline.runtime.executors``) so the API on the same event loop stays responsive and
no API or analyst work can take the thread ingest needs. After each batch the decoded
events go to :attr:`EmbeddedRuntime.feed` (``pipeline.runtime.feed``), where the alarm
runner and the live-stream tail of the same process take them: each record is decoded
once. With a :class:`~millrace.pipeline.runtime.worker.FoldWorker` (``runtime.worker``),
the records of its topics are decoded and folded in that worker process instead, and
while a step's tables are inserted the worker folds the next step's records
(``pipeline.runtime.ahead``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from millrace.pipeline.clock import now_us
from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.log.base import EventLog, Message, Record, TopicPartition
from millrace.pipeline.processors.base import Event, Outputs, Processor, StateReader
from millrace.pipeline.processors.decoding import decode_records, process_events
from millrace.pipeline.runtime.ahead import Ahead, FoldAhead
from millrace.pipeline.runtime.executors import OwnThreads
from millrace.pipeline.runtime.feed import DecodedFeed
from millrace.pipeline.runtime.loop import run_steps
from millrace.pipeline.runtime.worker import FoldWorker
from millrace.pipeline.sink import Progress, ProjectionSink, Range, SinkBatch
from millrace.pipeline.topics import DEADLETTER

log = logging.getLogger("millrace.runtime")


@dataclass
class RuntimeStats:
    batches: int = 0
    records: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    deadletters: int = 0
    errors: int = 0
    last_batch_ms: float = 0.0
    last_error: str = ""
    positions: dict[str, int] = field(default_factory=dict)


class EmbeddedRuntime:
    """Feeds log records to processors and their output to a sink."""

    def __init__(
        self,
        log: EventLog,
        sink: ProjectionSink,
        processors: Sequence[Processor],
        *,
        consumer: str = "projections",
        codec: AvroCodec | None = None,
        max_records: int = 5000,
        idle_sleep_s: float = 0.05,
        linger_s: float = 0.0,
        linger_below: int = 1000,
        clock: Callable[[], int] = now_us,
        publish_deadletters: bool = True,
        worker: FoldWorker | None = None,
    ) -> None:
        self.log = log
        self.sink = sink
        self.processors = list(processors)
        self.consumer = consumer
        self.codec = codec or default_codec()
        self.max_records = max_records
        self.idle_sleep_s = idle_sleep_s
        #: a step that folded something is followed by the next no sooner than this
        #: after it began, unless woken (``runtime.linger_ms``: ``run_steps``'s period)
        self.linger_s = linger_s
        #: ... when it folded fewer records than this (a bigger step is followed at once)
        self.linger_below = linger_below
        self.clock = clock
        self.publish_deadletters = publish_deadletters
        self.stats = RuntimeStats()
        self._by_topic: dict[str, Processor] = {t: p for p in self.processors for t in p.topics}
        self._state = sink if isinstance(sink, StateReader) else None
        self._progress: Progress | None = None
        self._wake = asyncio.Event()
        # held by a step, and by ``paused()``: a replay swaps tables between two steps
        self._hold = asyncio.Lock()
        #: an operator's pause (``POST /pipeline/pause``): steps fold nothing until
        #: :meth:`resume`; checked under the same hold, so it starts between two batches
        self.suspended = False
        #: called after each batch with (records, seconds) (the metrics' histogram)
        self.on_batch: Callable[[int, float], None] | None = None
        #: positions not to read past (a replay's shadow fold stops at the live runtime's)
        self.until: Mapping[TopicPartition, int] | None = None
        # one thread: batches are sequential, and the sink's session is used by one
        # thread at a time
        self._threads = OwnThreads("millrace-runtime", 1)
        #: the decoded events of each batch, for the other readers of this process
        self.feed = DecodedFeed(keep_records=2 * max_records)
        #: folds the records of its topics in a child process (None: all in this one)
        self.worker = worker
        self._ahead = FoldAhead(worker, self._state) if worker is not None else None

    # -- positions ------------------------------------------------------------------

    def topic_partitions(self) -> list[TopicPartition]:
        return [
            TopicPartition(topic, p)
            for topic in sorted(self._by_topic)
            for p in range(self.log.partitions(topic))
        ]

    async def _load_progress(self) -> Progress:
        if self._progress is None:
            progress = await self._threads.run(self.sink.progress, self.consumer)
            self.feed.start(
                {
                    tp: progress.positions.get(tp, 0)
                    for tp in self.topic_partitions()
                    if self._fed(tp)
                }
            )
            self._progress = progress
        return self._progress

    def position(self, tp: TopicPartition) -> int:
        """Next offset to process in ``tp`` (0 before the first batch is loaded)."""
        if self._progress is None:
            return 0
        return self._progress.positions.get(tp, 0)

    def wake(self) -> None:
        """Tell the runtime new records are there (cuts ingest-to-queryable latency)."""
        self._wake.set()

    def health(self) -> dict[str, Any]:
        """The stage's health: the batch figures, the decoded feed's, the worker's."""
        worker = self._ahead.health() if self._ahead is not None else {}
        return {**asdict(self.stats), "feed": self.feed.health(), **worker}

    # -- one batch ------------------------------------------------------------------

    async def _read_range(self, tp: TopicPartition, r: Range) -> list[Record]:
        out: list[Record] = []
        offset = r.start
        while offset < r.end:
            got = await self.log.read(tp.topic, tp.partition, offset, r.end - offset)
            if not got:
                log.error("log lost records %s[%d] %d..%d", tp.topic, tp.partition, offset, r.end)
                break
            out.extend(rec for rec in got if rec.offset < r.end)
            offset = got[-1].offset + 1
        return out

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[dict[TopicPartition, int]]:
        """Hold the runtime between two batches (no intent pending) and yield its
        committed positions; it goes on when the block ends (``projections.replay``)."""
        async with self._hold:
            if self._ahead is not None:
                self._ahead.discard()  # a replay may swap the tables its reads saw
            progress = await self._load_progress()
            self.feed.live = False  # held: readers read the log meanwhile
            yield {tp: progress.positions.get(tp, 0) for tp in self.topic_partitions()}

    async def suspend(self) -> None:
        """Stop folding after the batch in flight (the log keeps accepting appends);
        returns once no batch is running."""
        async with self._hold:
            self.suspended = True
            if self._ahead is not None:
                self._ahead.discard()

    def resume(self) -> None:
        """Fold again from the committed positions."""
        self.suspended = False
        self.wake()

    async def step(self) -> int:
        """Process one batch; return how many records it covered (0 = nothing new, or
        suspended)."""
        async with self._hold:
            if self.suspended:
                self.feed.live = False  # paused: readers read the log meanwhile
                return 0
            self.feed.live = True
            return await self._step()

    async def _step(self) -> int:
        progress = await self._load_progress()
        records: dict[TopicPartition, list[Record]] = {}
        ahead: Ahead | None = None
        if self._ahead is not None and (progress.pending or self.until is not None):
            self._ahead.discard()  # a redo, or a bounded fold: read as without
        if progress.pending:
            # redo a batch a crash left uncommitted over exactly the same ranges
            seq = progress.pending_seq or progress.last_seq
            ranges = dict(progress.pending)
            for tp, r in ranges.items():
                records[tp] = await self._read_range(tp, r)
        else:
            seq = progress.last_seq + 1
            ranges = {}
            if self._ahead is not None:
                ahead = self._ahead.take(seq, progress.positions)
            if ahead is not None:  # the worker's topics: what it folded ahead, no more
                records.update(ahead.records)
                ranges.update(ahead.ranges)
            for tp in self.topic_partitions():
                if ahead is not None and not self._fed(tp):
                    continue
                pos = progress.positions.get(tp, 0)
                count = self.max_records
                if self.until is not None:
                    count = min(count, self.until.get(tp, 0) - pos)
                    if count <= 0:
                        continue
                got = await self.log.read(tp.topic, tp.partition, pos, count)
                if self.until is not None:
                    got = [rec for rec in got if rec.offset < self.until.get(tp, 0)]
                if got:
                    records[tp] = got
                    # a position below the first retained offset starts there
                    ranges[tp] = Range(min(pos, got[0].offset), got[-1].offset + 1)
                elif self._fed(tp):
                    self.feed.at_end(tp, pos)
        if not ranges:
            return 0
        started = time.perf_counter()
        outputs, decoded = await self._fold(records, ahead)
        if outputs.deadletters and self.publish_deadletters:
            await self._publish_deadletters(outputs.deadletters)
        batch = SinkBatch(seq=seq, ranges=ranges, tables=outputs.tables)
        n = sum(len(v) for v in records.values())
        await self._write(batch, progress, self._lingering(n))
        # counted as soon as the rows are in the store (a reader that sees them sees them
        # counted; before the log's commit, which may wait on a disk, and which a crash
        # may skip: the sink's progress is the truth then)
        self.stats.batches += 1
        self.stats.records += n
        self.stats.deadletters += len(outputs.deadletters)
        for name, table in outputs.tables.items():
            self.stats.rows[name] = self.stats.rows.get(name, 0) + table.num_rows
        for tp, r in ranges.items():
            progress.positions[tp] = r.end
            self.stats.positions[f"{tp.topic}/{tp.partition}"] = r.end
        progress.pending, progress.pending_seq = {}, None
        progress.last_seq = max(progress.last_seq, seq)
        await self.log.commit(self.consumer, {tp: r.end for tp, r in ranges.items()})
        for tp, r in ranges.items():
            if not self._fed(tp):
                continue
            full = len(records.get(tp, ())) >= self.max_records
            self.feed.put(tp, r.start, r.end, decoded.get(tp, ()), full=full)
        self.feed.wake()
        elapsed = time.perf_counter() - started
        self.stats.last_batch_ms = elapsed * 1000
        if self.on_batch is not None:
            self.on_batch(n, elapsed)
        return n

    async def _fold(
        self, records: dict[TopicPartition, list[Record]], ahead: Ahead | None
    ) -> tuple[Outputs, dict[TopicPartition, list[Event]]]:
        """The step's outputs: the worker's topics folded by the worker (ahead, or now,
        meanwhile the others here), merged in topic-partition order as in one process."""
        there: cf.Future[dict[TopicPartition, Outputs]] | None = None
        if ahead is not None:
            there = ahead.folded
        elif self._ahead is not None:
            offloaded = {tp: recs for tp, recs in records.items() if not self._fed(tp)}
            if offloaded:
                there = self._ahead.fold(offloaded)
        here = {tp: recs for tp, recs in records.items() if self._fed(tp)}
        parts, decoded = await self._threads.run(self._process, here) if here else ({}, {})
        if there is not None:
            folded: dict[TopicPartition, Outputs] = await asyncio.wrap_future(there)
            parts.update(folded)
        out = Outputs()
        for tp in sorted(parts, key=lambda t: (t.topic, t.partition)):
            out.merge(parts[tp])
        return out, decoded

    def _process(
        self, records: dict[TopicPartition, list[Record]]
    ) -> tuple[dict[TopicPartition, Outputs], dict[TopicPartition, list[Event]]]:
        parts: dict[TopicPartition, Outputs] = {}
        decoded: dict[TopicPartition, list[Event]] = {}
        for tp in sorted(records, key=lambda t: (t.topic, t.partition)):
            events, dead = decode_records(self.codec, tp.topic, tp.partition, records[tp])
            out = process_events(self._by_topic[tp.topic], events, self._state)
            out.deadletters[:0] = dead
            parts[tp], decoded[tp] = out, events
        return parts, decoded

    async def _write(self, batch: SinkBatch, progress: Progress, lingering: bool) -> None:
        """The sink's write of ``batch``; meanwhile the worker folds the next step
        (unless the runtime will linger after this one)."""
        if self._ahead is None or self.until is not None or lingering:
            await self._threads.run(self.sink.write, self.consumer, batch)
            return
        written: cf.Future[None] = cf.Future()
        write = asyncio.ensure_future(self._threads.run(self.sink.write, self.consumer, batch))
        try:
            try:
                await self._fold_ahead(batch, progress, written)
            except Exception:  # the next step reads and folds as without
                log.warning("no fold ahead", exc_info=True)
                self._ahead.discard()
            await write
        except BaseException as exc:
            written.set_exception(exc if isinstance(exc, Exception) else RuntimeError("stopped"))
            raise
        written.set_result(None)

    async def _fold_ahead(
        self, batch: SinkBatch, progress: Progress, written: cf.Future[None]
    ) -> None:
        """Read the worker's topics past this step's ranges and start their fold."""
        assert self._ahead is not None
        basis: dict[TopicPartition, int] = {}
        ranges: dict[TopicPartition, Range] = {}
        records: dict[TopicPartition, list[Record]] = {}
        for tp in self.topic_partitions():
            if self._fed(tp):
                continue
            r = batch.ranges.get(tp)
            pos = basis[tp] = r.end if r is not None else progress.positions.get(tp, 0)
            got = await self.log.read(tp.topic, tp.partition, pos, self.max_records)
            if got:
                records[tp] = got
                ranges[tp] = Range(min(pos, got[0].offset), got[-1].offset + 1)
        if ranges:
            self._ahead.start(batch.seq + 1, basis, ranges, records, written)

    def _lingering(self, records: int) -> bool:
        """Whether the runtime will linger after this step of ``records`` (a small one,
        and the last one was shorter than the linger): a fold ahead would then hold only
        what came during this step's inserts, and what comes while the runtime lingers
        would wait for the step after."""
        return (
            self.linger_s > 0
            and records < self.linger_below
            and self.stats.last_batch_ms < self.linger_s * 1000
        )

    def _fed(self, tp: TopicPartition) -> bool:
        """Whether this process decodes ``tp`` (its events go to the feed)."""
        return self.worker is None or tp.topic not in self.worker.topics

    async def _publish_deadletters(self, dead: list[dict[str, Any]]) -> None:
        messages = []
        for d in dead:
            key = d.get("key")
            messages.append(Message(value=self.codec.encode(DEADLETTER, d), key=key))
        await self.log.append(DEADLETTER, messages)
        self.wake()

    # -- loop -----------------------------------------------------------------------

    async def run_until_idle(self) -> int:
        """Process until nothing is left; return records processed (tests, replay)."""
        total = 0
        while True:
            n = await self.step()
            if n == 0:
                return total
            total += n

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set; errors are logged and retried with backoff."""
        try:
            await run_steps(
                self.step,
                stop,
                self._wake,
                idle_s=self.idle_sleep_s,
                on_error=self._failed,
                first_backoff_s=0.1,
                period_s=self.linger_s,
                busy=self.linger_below,
            )
        finally:
            self.close()

    def close(self) -> None:
        """End the runtime's thread (a later step starts a new one)."""
        self.feed.live = False
        self._threads.shutdown(wait=False)
        if self._ahead is not None:
            self._ahead.close()

    def _failed(self, exc: Exception, retry_in_s: float) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        log.error("batch failed; retrying in %.1fs", retry_in_s, exc_info=exc)
        self._progress = None  # reload: the sink may hold a pending intent
        if self._ahead is not None:
            # what the worker folded of this step or ahead is not written: forget it
            self._ahead.discard()
            self._ahead.resync()
        self.feed.live = False  # readers read the log until a batch succeeds again
