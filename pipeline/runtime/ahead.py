"""FoldAhead: the fold worker folds the runtime's next step while this one is inserted.

Without it the runtime waits for its :class:`~millrace.pipeline.runtime.worker.FoldWorker`'s
answer, then inserts (eleven MergeTree inserts a step), and the worker idles meanwhile:
moving the fold out of the engine's process saved its CPU but gained no throughput.
With it, as soon as step N's tables go to the sink, the runtime reads the worker's
topics from the log past step N's ranges and sends them to the worker: step N+1's
fold overlaps step N's inserts (chDB releases the GIL while it inserts, and the
worker is another process).

Exactly-once does not change, because a fold ahead is only ever *used* as step N+1
when step N committed exactly what it assumed, and otherwise is dropped along with
what it taught the worker:

- it assumes step N's sequence number plus one and step N's end positions
  (:meth:`FoldAhead.take` compares them with the committed progress; a step that
  failed reloads its progress, leaves a pending intent, and the fold ahead no longer
  matches);
- its store reads see step N's rows: the batch ledger's ``applied_batches`` reads wait
  until step N's write ended (``restore_mark`` does not: restores write the marks, never
  the live fold), and fail when that write failed;
- dropping it (:meth:`FoldAhead.discard`: a failed step, a pause for a replay, a
  mismatch) resets the worker's folds after it, so the batch ids it admitted are
  forgotten and the ledger loads from the store again, as a restarted worker's does.

The records of the worker's topics that a fold ahead covers are step N+1's whole share
of those topics (what came after is the next fold's); the runtime's own topics are
read when step N+1 starts, as before.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from millrace.pipeline.batches import Applied, AppliedBatches
from millrace.pipeline.log.base import Record, TopicPartition
from millrace.pipeline.processors.base import Outputs
from millrace.pipeline.runtime.executors import OwnThreads
from millrace.pipeline.runtime.worker import FoldWorker
from millrace.pipeline.sink import Range

__all__ = ["Ahead", "FoldAhead"]

Folded = dict[TopicPartition, Outputs]


@dataclass(slots=True)
class Ahead:
    """A fold of the worker's topics started for step ``seq`` from ``basis``."""

    seq: int
    basis: dict[TopicPartition, int]  # the positions it starts from (step N's ends)
    ranges: dict[TopicPartition, Range]
    records: dict[TopicPartition, list[Record]]
    folded: cf.Future[Folded]


class _AfterWrite(AppliedBatches):
    """The sink's applied-batch reads for a fold ahead: answered once the step before
    it is written (its ids are then in the store), refused when that write failed."""

    def __init__(self, reader: AppliedBatches, written: cf.Future[None]) -> None:
        self.reader = reader
        self.written = written

    def applied_batches(
        self, partition: int, since_us: int, keys: Sequence[str] | None = None
    ) -> dict[str, Applied]:
        self.written.result()  # raises when the write failed: the fold ahead fails
        return self.reader.applied_batches(partition, since_us, keys)

    def applied_keys(
        self, partition: int, since_us: int, after: str | None, limit: int
    ) -> list[tuple[str, int]]:
        self.written.result()  # a load's pages, as the reads above
        return self.reader.applied_keys(partition, since_us, after, limit)

    def restore_mark(self) -> tuple[int, int]:
        return self.reader.restore_mark()


class FoldAhead:
    """The runtime's side of the worker's folds: now, or ahead for the next step, on a
    thread of their own (it waits for the worker and answers its store reads)."""

    def __init__(self, worker: FoldWorker, reader: object | None) -> None:
        self.worker = worker
        self.reader = reader
        self._threads = OwnThreads("millrace-fold", 1)
        self._ahead: Ahead | None = None
        #: folds ahead used as a step, and dropped
        self.used = 0
        self.dropped = 0

    def fold(
        self, records: Mapping[TopicPartition, Sequence[Record]], reader: object | None = None
    ) -> cf.Future[Folded]:
        """The worker's outputs per topic-partition of ``records`` (in the fold thread,
        after any fold or reset queued before)."""
        asks = self.reader if reader is None else reader
        return self._threads.executor.submit(self._fold, dict(records), asks)

    def _fold(
        self, records: dict[TopicPartition, Sequence[Record]], reader: object | None
    ) -> Folded:
        return {
            tp: self.worker.fold(tp.topic, tp.partition, records[tp], reader)
            for tp in sorted(records, key=lambda t: (t.topic, t.partition))
        }

    def start(
        self,
        seq: int,
        basis: dict[TopicPartition, int],
        ranges: dict[TopicPartition, Range],
        records: dict[TopicPartition, list[Record]],
        written: cf.Future[None],
    ) -> None:
        """Fold ``records`` as step ``seq``'s share of the worker's topics, while the
        step before is written (``written`` resolves when it is)."""
        self.discard()
        reader = self.reader
        if isinstance(reader, AppliedBatches):
            reader = _AfterWrite(reader, written)
        self._ahead = Ahead(seq, basis, ranges, records, self.fold(records, reader))

    def take(self, seq: int, positions: Mapping[TopicPartition, int]) -> Ahead | None:
        """The fold ahead when it was started for step ``seq`` from ``positions`` (the
        committed progress); otherwise it is dropped and None returned."""
        ahead = self._ahead
        if ahead is None:
            return None
        self._ahead = None
        if ahead.seq == seq and all(positions.get(tp, 0) == p for tp, p in ahead.basis.items()):
            self.used += 1
            return ahead
        self._drop(ahead)
        return None

    def discard(self) -> None:
        """Drop the fold ahead, if any (a failed step, a pause): what it admitted is
        forgotten by a reset of the worker's folds, queued after it."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            self._drop(ahead)

    def _drop(self, ahead: Ahead) -> None:
        self.dropped += 1
        self.resync()
        # nobody waits for it: keep its failure (the worker died) from being logged
        ahead.folded.add_done_callback(lambda f: f.exception())

    def resync(self) -> None:
        """Reset the worker's folds after whatever the fold thread has queued."""
        self._threads.executor.submit(self.worker.reset)

    def health(self) -> dict[str, int]:
        return {
            "worker_starts": self.worker.starts,
            "worker_resets": self.worker.resets,
            "folds_ahead_used": self.used,
            "folds_ahead_dropped": self.dropped,
        }

    def close(self) -> None:
        """Drop the fold ahead, end the fold thread after it, and the worker."""
        self._ahead = None
        self._threads.shutdown(wait=True, cancel_futures=True)
        self.worker.close()
