"""The contract every ProjectionSink adapter passes (see ``pipeline/sink.py``).

Subclass :class:`ProjectionSinkContract` as ``TestXxx`` and implement :meth:`make_sink`
(a sink over empty projections) and :meth:`rows` (what the sink holds of a table, every
copy: a repeated insert must show). The rows written are ``alarm_annotations`` rows, a
table every sink can hold.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.sink import ProjectionSink, Range, SinkBatch
from millrace.projections.tables import TABLES

TABLE = "alarm_annotations"
TP0 = TopicPartition("alarms", 0)
TP1 = TopicPartition("alarms", 1)


def rows_of(*seqs: int, alarm: str = "a-1") -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"alarm_id": alarm, "seq": s, "ts_us": 1_000 + s, "user": "op", "text": f"note {s}"}
            for s in seqs
        ],
        schema=TABLES[TABLE].rows.schema,
    )


def batch(seq: int, ranges: dict[TopicPartition, Range], *seqs: int) -> SinkBatch:
    return SinkBatch(seq, ranges, {TABLE: rows_of(*seqs)} if seqs else {})


class FenceLostError(Exception):
    pass


def lost() -> None:
    raise FenceLostError("another worker owns the partitions")


class ProjectionSinkContract:
    def make_sink(self) -> ProjectionSink:
        raise NotImplementedError

    def rows(self, sink: ProjectionSink, table: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    @pytest.fixture
    def sink(self) -> ProjectionSink:
        return self.make_sink()

    def seqs(self, sink: ProjectionSink) -> list[int]:
        return sorted(int(r["seq"]) for r in self.rows(sink, TABLE))

    def test_a_new_consumer_has_no_progress(self, sink: ProjectionSink) -> None:
        p = sink.progress("fresh")
        assert p.positions == {} and p.pending == {}
        assert p.last_seq == 0 and p.pending_seq is None

    def test_a_write_stores_the_rows_and_commits_the_ranges(self, sink: ProjectionSink) -> None:
        sink.write("c", batch(1, {TP0: Range(0, 3), TP1: Range(0, 2)}, 1, 2, 3))
        p = sink.progress("c")
        assert p.positions == {TP0: 3, TP1: 2}
        assert p.last_seq == 1 and p.pending == {} and p.pending_seq is None
        assert self.seqs(sink) == [1, 2, 3]
        sink.write("c", batch(2, {TP0: Range(3, 5)}, 4))
        p = sink.progress("c")
        assert p.positions == {TP0: 5, TP1: 2} and p.last_seq == 2
        assert self.seqs(sink) == [1, 2, 3, 4]

    def test_a_repeated_batch_stores_nothing_twice(self, sink: ProjectionSink) -> None:
        b = batch(1, {TP0: Range(0, 2)}, 1, 2)
        sink.write("c", b)
        sink.write("c", batch(1, {TP0: Range(0, 2)}, 1, 2))
        assert self.seqs(sink) == [1, 2]
        assert sink.progress("c").positions == {TP0: 2}

    def test_consumers_keep_their_own_progress_and_tokens(self, sink: ProjectionSink) -> None:
        sink.write("one", batch(1, {TP0: Range(0, 2)}, 1))
        sink.write("two", batch(1, {TP0: Range(0, 7)}, 1))
        assert sink.progress("one").positions == {TP0: 2}
        assert sink.progress("two").positions == {TP0: 7}
        # the same batch of another consumer is another write (its own token)
        assert self.seqs(sink) == [1, 1]

    def test_a_failed_fence_leaves_the_intent_pending_and_inserts_nothing(
        self, sink: ProjectionSink
    ) -> None:
        sink.write("c", batch(1, {TP0: Range(0, 2)}, 1))
        with pytest.raises(FenceLostError):
            sink.write("c", batch(2, {TP0: Range(2, 4)}, 2, 3), fence=lost)
        assert self.seqs(sink) == [1]
        p = sink.progress("c")
        assert p.pending == {TP0: Range(2, 4)} and p.pending_seq == 2
        assert p.positions.get(TP0, 0) == 2 and p.last_seq == 2

    def test_a_pending_batch_redone_completes_once(self, sink: ProjectionSink) -> None:
        with pytest.raises(FenceLostError):
            sink.write("c", batch(1, {TP0: Range(0, 3)}, 1, 2), fence=lost)
        p = sink.progress("c")
        assert p.pending == {TP0: Range(0, 3)} and p.positions.get(TP0, 0) == 0
        sink.write("c", batch(1, p.pending, 1, 2), fence=lambda: None)
        sink.write("c", batch(1, {TP0: Range(0, 3)}, 1, 2))  # and once more: no-op
        p = sink.progress("c")
        assert p.positions == {TP0: 3} and p.pending == {} and p.pending_seq is None
        assert self.seqs(sink) == [1, 2]

    def test_the_fence_runs_after_the_intent_before_the_rows(self, sink: ProjectionSink) -> None:
        seen: list[tuple[dict[TopicPartition, Range], list[int]]] = []

        def fence() -> None:
            seen.append((sink.progress("c").pending, self.seqs(sink)))

        sink.write("c", batch(1, {TP0: Range(0, 1)}, 7), fence=fence)
        assert seen == [({TP0: Range(0, 1)}, [])]
        assert self.seqs(sink) == [7]
