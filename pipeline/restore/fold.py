"""Folding one archive file into the projections, exactly once, through the sink.

A file is folded in chunks of records (offset order), each written as one
:class:`~millrace.pipeline.sink.SinkBatch` under the sink consumer
``restore/<task id>/<file>`` — a token scope of its own per task and file. The sink's
intent protocol gives what the live runtime has: after a kill -9 the consumer's
progress says where the file was, and a pending intent is redone over exactly the same
offsets with the same sequence number, so the same rows carry the same deduplication
tokens (``pipeline.sink``). Chunks are cut by record count from the committed position,
so the redo and the first attempt cover the same records.

The processors are the live ones (``processors.catalog``) with the telemetry fold
replaced by :class:`~millrace.pipeline.restore.admit.RestoredTelemetry` (batch ids
applied once across live and restored data) and without the tasks fold (a restore
does not bring old tasks back to life). The stateful folds (identities, alarms,
status) skip events at or below the version their rows hold: restored events the
projections already include change nothing (see the package doc for each projection).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from millrace.pipeline.archive.format import ArchivedRecord, topic_schema
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.processors.base import (
    Event,
    Outputs,
    Processor,
    ReadingProcessor,
    StatefulProcessor,
    StateReader,
    dead_letter,
)
from millrace.pipeline.processors.catalog import processors as live_processors
from millrace.pipeline.processors.tasks import TaskProcessor
from millrace.pipeline.processors.telemetry import TelemetryProcessor
from millrace.pipeline.restore.admit import HeldReadings, RestoredTelemetry
from millrace.pipeline.sink import ProjectionSink, Range, SinkBatch


def restore_processors(
    scope: str, now_us: int, held: HeldReadings | None = None
) -> list[Processor]:
    """The live folds, telemetry through the restore's id admission, tasks left out."""
    out: list[Processor] = [RestoredTelemetry(scope, now_us, held=held)]
    for p in live_processors():
        if not isinstance(p, TelemetryProcessor | TaskProcessor):
            out.append(p)
    return out


def consumer_name(task_id: str, file: str) -> str:
    return f"restore/{task_id}/{file}"


@dataclass(slots=True)
class ChunkResult:
    events: int = 0
    readings: int = 0
    skipped: int = 0
    deadletters: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False


def _event(rec: ArchivedRecord) -> Event:
    assert rec.value is not None
    # the payload as the log held it, when the file gives the datum: a content id
    # hashes it (``admit.log_payload`` would encode the event again)
    raw = b"" if rec.datum is None else topic_schema(rec.topic).header + rec.datum
    return Event(rec.topic, rec.partition, rec.offset, rec.timestamp_us, rec.key, rec.value, 0, raw)


def _undecodable(rec: ArchivedRecord) -> dict[str, Any]:
    return dead_letter(
        None,
        reason="archived record could not be decoded with any known schema",
        error_type="DecodeError",
        stage="restore",
        ts_us=rec.timestamp_us,
        payload=(rec.raw or b"")[:65536],
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        key=rec.key,
    )


def apply_events(
    processor: Processor, events: Sequence[Event], state: StateReader | None
) -> Outputs:
    """Run ``processor`` over decoded events as the runtimes do (state for a stateful
    fold, the reader for a reading one)."""
    if isinstance(processor, StatefulProcessor):
        keys = processor.state_keys(events)
        rows: dict[str, dict[str, Any]] = {}
        if keys:
            if state is None:
                raise TypeError(f"{type(processor).__name__} needs a StateReader")
            rows = state.load_state(processor.state_table, processor.state_key, keys)
        return processor.process_with_state(events, rows)
    if isinstance(processor, ReadingProcessor):
        return processor.process_reading(events, state)
    return processor.process(events)


class FileFold:
    """One file's records (already filtered, offset order) into the sink, a chunk per
    :meth:`step` (blocking: run it in a thread)."""

    def __init__(
        self,
        records: Iterator[ArchivedRecord],
        sink: ProjectionSink,
        consumer: str,
        processors: Sequence[Processor],
        *,
        chunk: int = 20_000,
    ) -> None:
        self.records = records
        self.sink = sink
        self.consumer = consumer
        self.by_topic = {t: p for p in processors for t in p.topics}
        self.chunk = chunk
        self.state = sink if isinstance(sink, StateReader) else None
        progress = sink.progress(consumer)
        self.positions = dict(progress.positions)
        self.seq = progress.last_seq
        self.pending = dict(progress.pending)
        self.pending_seq = progress.pending_seq
        self._ahead: ArchivedRecord | None = None

    def _take(self) -> tuple[list[ArchivedRecord], int, Range | None]:
        """The next chunk: the pending intent's records when a crash left one, else up to
        ``chunk`` records past the committed position."""
        out: list[ArchivedRecord] = []
        redo: Range | None = None
        while True:
            rec = self._ahead or next(self.records, None)
            self._ahead = None
            if rec is None:
                break
            tp = TopicPartition(rec.topic, rec.partition)
            if rec.offset < self.positions.get(tp, -1):
                continue  # folded by an earlier run
            pending = self.pending.get(tp)
            if pending is not None and redo is None and not out:
                redo = pending
            if redo is not None:
                if rec.offset >= redo.end:
                    self._ahead = rec
                    break
            elif len(out) >= self.chunk:
                self._ahead = rec
                break
            out.append(rec)
        if redo is not None:
            self.pending = {}
            return out, self.pending_seq or self.seq, redo
        return out, self.seq + 1, None

    def step(self) -> ChunkResult:
        """Fold the next chunk; ``done`` when the file has nothing left."""
        recs, seq, redo = self._take()
        if not recs:
            return ChunkResult(done=True)
        res = ChunkResult()
        tp = TopicPartition(recs[0].topic, recs[0].partition)
        events = [_event(r) for r in recs if r.value is not None]
        res.deadletters = [_undecodable(r) for r in recs if r.value is None]
        out = Outputs()
        processor = self.by_topic.get(tp.topic)
        before = processor.dropped if isinstance(processor, RestoredTelemetry) else 0
        if processor is not None and events:
            out = apply_events(processor, events, self.state)
            out.deadletters.extend(res.deadletters)
            res.deadletters = out.deadletters
        if isinstance(processor, RestoredTelemetry):
            res.skipped = processor.dropped - before
        end = redo.end if redo is not None else recs[-1].offset + 1
        first = recs[0].offset
        start = redo.start if redo is not None else min(first, self.positions.get(tp, first))
        self.sink.write(self.consumer, SinkBatch(seq, {tp: Range(start, end)}, out.tables))
        self.positions[tp] = end
        self.seq = max(self.seq, seq)
        readings = out.tables.get("readings")
        res.events = len(recs)
        res.readings = readings.num_rows if readings is not None else 0
        return res
