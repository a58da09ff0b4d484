"""The faust runtime's batcher: takes -> one SinkBatch per topic-partition.

Free of faust, so it is tested with plain records (``tests/runtime``); the app
(``pipeline.runtime.faust_runtime``) feeds it what faust's agents take.

A partition's batch sequence number is the end offset of its range. It grows with
every batch of the partition (the store keeps the row with the highest version), a
pending intent carries its own seq (``pending[tp].end``), and the dedup token stays
unique per (partition, range). Every worker of the group writes under the same
consumer name (the app id by default).

Records below the sink's committed position are skipped; a pending range
``[start, end)`` is accumulated over takes and written, with its seq, before
anything after it. faust acks a take's events once the agent's loop body returns,
even when it raises, so a failed write is retried in place until it succeeds: the
Kafka commit never passes the sink's position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.processors.base import Outputs, Processor, StateReader
from millrace.pipeline.processors.decoding import decode_and_process
from millrace.pipeline.sink import Progress, ProjectionSink, Range, SinkBatch


@dataclass(frozen=True, slots=True)
class _Rec:
    offset: int
    timestamp_us: int
    key: bytes | None
    value: bytes


@dataclass
class _Pending:
    """A pending intent being re-read: its range and what was read of it so far."""

    range: Range
    records: list[_Rec] = field(default_factory=list)


class PartitionBatcher:
    """Turns takes into per-partition SinkBatches against the sink's progress.

    Kept free of faust so it can be tested with plain records.
    """

    def __init__(
        self,
        sink: ProjectionSink,
        processors: Sequence[Processor],
        consumer: str,
        codec: AvroCodec | None = None,
    ) -> None:
        self.sink = sink
        self.consumer = consumer
        self.codec = codec or default_codec()
        self._by_topic = {t: p for p in processors for t in p.topics}
        self._redo: dict[TopicPartition, _Pending] = {}

    def plan(
        self, progress: Progress, tp: TopicPartition, records: Sequence[_Rec]
    ) -> list[tuple[SinkBatch, list[_Rec]]]:
        """The batches to write for ``records`` of ``tp`` (in order), given progress.

        A pending intent of ``tp`` is first completed over exactly its range; records
        below the committed position are dropped.
        """
        out: list[tuple[SinkBatch, list[_Rec]]] = []
        pending = progress.pending.get(tp)
        position = progress.positions.get(tp, 0)
        recs = sorted((r for r in records if r.offset >= position), key=lambda r: r.offset)
        if pending is not None:
            redo = self._redo.get(tp)
            if redo is None or redo.range != pending:
                redo = self._redo[tp] = _Pending(pending)
            seen = {r.offset for r in redo.records}
            redo.records.extend(r for r in recs if r.offset < pending.end and r.offset not in seen)
            recs = [r for r in recs if r.offset >= pending.end]
            complete = bool(recs) or any(r.offset >= pending.end - 1 for r in redo.records)
            if not complete:
                return out  # wait for the rest of the pending range
            redo.records.sort(key=lambda r: r.offset)
            out.append((SinkBatch(seq=pending.end, ranges={tp: pending}), redo.records))
            position = pending.end
        if recs:
            r = Range(recs[0].offset, recs[-1].offset + 1)
            out.append((SinkBatch(seq=r.end, ranges={tp: r}), recs))
        return out

    def gap(self, progress: Progress, tp: TopicPartition, records: Sequence[_Rec]) -> int | None:
        """The offset to seek ``tp`` back to when ``records`` skip some not yet written.

        After a rebalance faust starts a partition at the group's committed offset,
        which can be past the sink's position (faust acks what a take buffered for an
        unfinished pending range); a batch must never jump over records.
        """
        want = progress.positions.get(tp, 0)
        pending = progress.pending.get(tp)
        redo = self._redo.get(tp)
        if pending is not None and redo is not None and redo.range == pending and redo.records:
            want = max(r.offset for r in redo.records) + 1
        offsets = [r.offset for r in records if r.offset >= want]
        if not offsets or min(offsets) == want:
            return None
        return want

    def process(self, tp: TopicPartition, records: Sequence[_Rec]) -> Outputs:
        """Decode and run the topic's processor (decode failures become dead letters)."""
        state = self.sink if isinstance(self.sink, StateReader) else None
        return decode_and_process(
            self.codec, self._by_topic[tp.topic], tp.topic, tp.partition, records, state
        )

    def commit_done(self, tp: TopicPartition, batch: SinkBatch) -> None:
        redo = self._redo.get(tp)
        if redo is not None and batch.ranges.get(tp) == redo.range:
            del self._redo[tp]
