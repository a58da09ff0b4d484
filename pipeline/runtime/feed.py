"""DecodedFeed: the runtime's decoded records, for the other readers of its process.

Decode once (issue 18): in ``millrace run`` the processor runtime, the alarm runner and
the live-stream tail follow the same topics. The runtime decodes every record for its
processors anyway; after each batch it puts the decoded events here, and the alarm
runner and the tail take them instead of reading and decoding the log again.

A reader asks for one topic-partition from its own position (:meth:`DecodedFeed.take`):

- the feed holds the records from that position: it gets their decoded events (up to a
  limit), and how many records of the range the runtime could not decode (it
  dead-letters them; a reader skips them as it skipped an undecodable record);
- the position is at or past the runtime's: nothing yet (``Taken`` with no events and
  ``next`` where it was). The reader waits: the feed wakes it after the runtime's next
  batch. So while the runtime folds, no reader decodes what the runtime will;
- the feed cannot serve that position (the reader is behind what it still holds, or the
  runtime is not folding: paused, held by a replay, failing, stopped): None. The reader
  then reads and decodes the log itself, as it did before the feed.

A reader thus consumes the same records, decoded by the same codec from the same bytes,
in the same order as it would have read them from the log; only who decoded them
changes. Its positions, checkpoints and exactly-once argument (``pipeline.alarms.runner``)
are untouched, and a crash of any part only sends readers back to the log.

The feed keeps each partition's chunks until every subscribed reader has passed them,
and at most ``keep_records`` records per partition: a reader that stalls (a singleton
not leading, a topic nobody wants) costs at most that much memory, then reads the log
itself when it moves again. Everything here runs on the event loop (the runtime puts
after its batch's thread work returned), so it needs no lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.processors.base import Event

__all__ = ["DecodedFeed", "Taken"]


@dataclass(frozen=True, slots=True)
class _Chunk:
    start: int
    end: int
    #: decoded events with offsets in [start, end), in offset order; an offset with no
    #: event was undecodable
    events: Sequence[Event]


@dataclass(frozen=True, slots=True)
class Taken:
    """What :meth:`DecodedFeed.take` gives a reader."""

    #: decoded events of the records in [the reader's position, ``next``)
    events: list[Event]
    #: the reader's next position (unchanged: nothing decoded there yet, wait)
    next: int
    #: records of that range the runtime could not decode
    skipped: int
    #: more records may follow at once (the feed holds more, or the runtime's last read
    #: of this partition was full): the reader has not caught up with the log
    more: bool


class DecodedFeed:
    """The live runtime's decoded events per topic-partition (see the module doc)."""

    def __init__(self, keep_records: int = 10_000) -> None:
        if keep_records < 1:
            raise ValueError("keep_records must be at least 1")
        self.keep_records = keep_records
        #: set by the runtime while it folds; readers fall back to the log when clear
        self.live = False
        self._chunks: dict[TopicPartition, deque[_Chunk]] = {}
        #: the runtime's next offset per partition (what it decodes next)
        self._frontier: dict[TopicPartition, int] = {}
        #: the runtime's last read of the partition was full (the log holds more)
        self._full: dict[TopicPartition, bool] = {}
        self._wakes: dict[str, Callable[[], None] | None] = {}
        #: each reader's position per partition (everything before it consumed)
        self._readers: dict[str, dict[TopicPartition, int]] = {}
        #: records served from the feed, and takes it could not serve (figures)
        self.served = 0
        self.fallbacks = 0

    # -- the runtime's side -------------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        return bool(self._readers)

    def start(self, positions: Mapping[TopicPartition, int]) -> None:
        """The runtime's positions before its first batch (readers at or past them
        wait for it); forgets what the feed held."""
        self._chunks.clear()
        self._full.clear()
        self._frontier = dict(positions)

    def put(
        self, tp: TopicPartition, start: int, end: int, events: Sequence[Event], full: bool
    ) -> None:
        """The runtime decoded the records [start, end) of ``tp`` into ``events``
        (``full``: its read stopped at its limit, not at the end of the log)."""
        self._frontier[tp] = end
        self._full[tp] = full
        if not self._readers:
            return
        chunks = self._chunks.setdefault(tp, deque())
        if chunks and chunks[-1].end != start:
            # not the continuation (a batch redone after a failure, a rewound runtime):
            # start over; readers behind it read the log
            chunks.clear()
        chunks.append(_Chunk(start, end, events))
        self._prune(tp)

    def at_end(self, tp: TopicPartition, offset: int) -> None:
        """The runtime found nothing to read in ``tp`` at ``offset``: the end of the log."""
        self._frontier[tp] = offset
        self._full[tp] = False

    def wake(self) -> None:
        """Tell every reader there is something new."""
        for wake in self._wakes.values():
            if wake is not None:
                wake()

    # -- the readers' side ------------------------------------------------------------

    def subscribe(self, name: str, wake: Callable[[], None] | None = None) -> None:
        """Register reader ``name`` (chunks are kept until it passed them); ``wake`` is
        called after each batch the runtime puts."""
        self._wakes[name] = wake
        self._readers.setdefault(name, {})

    def passed(self, name: str, tp: TopicPartition, offset: int) -> None:
        """Reader ``name`` moved to ``offset`` in ``tp`` without the feed (a topic it
        skips, or read from the log)."""
        seen = self._readers.get(name)
        if seen is not None:
            seen[tp] = offset
            self._prune(tp)

    def take(self, name: str, tp: TopicPartition, offset: int, limit: int) -> Taken | None:
        """Reader ``name``'s next events of ``tp`` from ``offset`` (records up to
        ``limit``), nothing yet (wait), or None (read the log; see the module doc)."""
        frontier = self._frontier.get(tp)
        if not self.live or frontier is None:
            self.fallbacks += 1
            return None
        self.passed(name, tp, offset)
        full = self._full.get(tp, False)
        if offset >= frontier:
            return Taken([], offset, 0, full)
        chunk = next((c for c in self._chunks.get(tp, ()) if c.start <= offset < c.end), None)
        if chunk is None:
            self.fallbacks += 1
            return None
        stop = min(chunk.end, offset + max(limit, 1))
        events = [e for e in chunk.events if offset <= e.offset < stop]
        self.served += stop - offset
        return Taken(events, stop, stop - offset - len(events), stop < frontier or full)

    # -- memory -----------------------------------------------------------------------

    def _prune(self, tp: TopicPartition) -> None:
        chunks = self._chunks.get(tp)
        if not chunks:
            return
        low = min((seen.get(tp, -1) for seen in self._readers.values()), default=-1)
        while chunks and chunks[0].end <= low:
            chunks.popleft()
        held = sum(c.end - c.start for c in chunks)
        while len(chunks) > 1 and held > self.keep_records:
            held -= chunks[0].end - chunks[0].start
            chunks.popleft()

    def held(self) -> int:
        """Records the feed holds (all partitions)."""
        return sum(c.end - c.start for chunks in self._chunks.values() for c in chunks)

    def health(self) -> dict[str, int | bool]:
        return {
            "live": self.live,
            "held_records": self.held(),
            "served_records": self.served,
            "fallbacks": self.fallbacks,
        }
