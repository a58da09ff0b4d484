"""EmbeddedRuntime: the asyncio runtime of the one-process deployment.

Each step reads up to ``max_records`` records from every partition of the
processors' topics, decodes them, runs the processors, appends dead letters to the
log, and hands the rows to the sink as one batch (see ``pipeline.sink`` for why that
is exactly-once). CPU work and store inserts run on the runtime's own thread (see
``pipeline.runtime.executors``) so the API on the same event loop stays responsive and
no API or analyst work can take the thread ingest needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from millrace.pipeline.clock import now_us
from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.log.base import EventLog, Message, Record, TopicPartition
from millrace.pipeline.processors.base import Outputs, Processor, StateReader
from millrace.pipeline.processors.decoding import decode_and_process
from millrace.pipeline.runtime.executors import OwnThreads
from millrace.pipeline.runtime.loop import run_steps
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
        clock: Callable[[], int] = now_us,
        publish_deadletters: bool = True,
    ) -> None:
        self.log = log
        self.sink = sink
        self.processors = list(processors)
        self.consumer = consumer
        self.codec = codec or default_codec()
        self.max_records = max_records
        self.idle_sleep_s = idle_sleep_s
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

    # -- positions ------------------------------------------------------------------

    def topic_partitions(self) -> list[TopicPartition]:
        return [
            TopicPartition(topic, p)
            for topic in sorted(self._by_topic)
            for p in range(self.log.partitions(topic))
        ]

    async def _load_progress(self) -> Progress:
        if self._progress is None:
            self._progress = await self._threads.run(self.sink.progress, self.consumer)
        return self._progress

    def position(self, tp: TopicPartition) -> int:
        """Next offset to process in ``tp`` (0 before the first batch is loaded)."""
        if self._progress is None:
            return 0
        return self._progress.positions.get(tp, 0)

    def wake(self) -> None:
        """Tell the runtime new records are there (cuts ingest-to-queryable latency)."""
        self._wake.set()

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
            progress = await self._load_progress()
            yield {tp: progress.positions.get(tp, 0) for tp in self.topic_partitions()}

    async def suspend(self) -> None:
        """Stop folding after the batch in flight (the log keeps accepting appends);
        returns once no batch is running."""
        async with self._hold:
            self.suspended = True

    def resume(self) -> None:
        """Fold again from the committed positions."""
        self.suspended = False
        self.wake()

    async def step(self) -> int:
        """Process one batch; return how many records it covered (0 = nothing new, or
        suspended)."""
        async with self._hold:
            if self.suspended:
                return 0
            return await self._step()

    async def _step(self) -> int:
        progress = await self._load_progress()
        records: dict[TopicPartition, list[Record]] = {}
        if progress.pending:
            # redo a batch a crash left uncommitted over exactly the same ranges
            seq = progress.pending_seq or progress.last_seq
            ranges = dict(progress.pending)
            for tp, r in ranges.items():
                records[tp] = await self._read_range(tp, r)
        else:
            seq = progress.last_seq + 1
            ranges = {}
            for tp in self.topic_partitions():
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
        if not ranges:
            return 0
        started = time.perf_counter()
        outputs = await self._threads.run(self._process, records)
        if outputs.deadletters and self.publish_deadletters:
            await self._publish_deadletters(outputs.deadletters)
        batch = SinkBatch(seq=seq, ranges=ranges, tables=outputs.tables)
        await self._threads.run(self.sink.write, self.consumer, batch)
        # counted as soon as the rows are in the store (a reader that sees them sees them
        # counted; before the log's commit, which may wait on a disk, and which a crash
        # may skip: the sink's progress is the truth then)
        n = sum(len(v) for v in records.values())
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
        elapsed = time.perf_counter() - started
        self.stats.last_batch_ms = elapsed * 1000
        if self.on_batch is not None:
            self.on_batch(n, elapsed)
        return n

    def _process(self, records: dict[TopicPartition, list[Record]]) -> Outputs:
        out = Outputs()
        for tp in sorted(records, key=lambda t: (t.topic, t.partition)):
            out.merge(
                decode_and_process(
                    self.codec,
                    self._by_topic[tp.topic],
                    tp.topic,
                    tp.partition,
                    records[tp],
                    self._state,
                )
            )
        return out

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
            )
        finally:
            self.close()

    def close(self) -> None:
        """End the runtime's thread (a later step starts a new one)."""
        self._threads.shutdown(wait=False)

    def _failed(self, exc: Exception, retry_in_s: float) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        log.error("batch failed; retrying in %.1fs", retry_in_s, exc_info=exc)
        self._progress = None  # reload: the sink may hold a pending intent
