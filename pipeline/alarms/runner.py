"""AlarmRunner: feeds the pure evaluator from the log and puts its alarms on the log.

The evaluator (``pipeline.alarms.evaluator``) is a fold over rule, identity, status and
telemetry events. The runner reads those topics from its own positions, hands every
event to the evaluator, calls its timer (``advance``) with the runtime's clock — the
only place a wall clock enters — and appends the AlarmEvents it returns to the
``alarms`` topic, where the alarm projection folds them.

Exactly-once, the argument: a step that produces alarms first saves a checkpoint
(positions + evaluator snapshot + the alarms as an *outbox*) in one row, then appends
the alarms. A crash before the save restarts from the previous checkpoint: nothing of
the step reached the log, so whatever the re-run emits is new. A crash after the save
appends the outbox again at restart: identical events, which the alarm projection folds
as no-ops (a RAISED of an existing alarm, a CLEARED of a cleared one). So the log never
holds an alarm the restored evaluator does not know (it cannot stay open forever), even
when rules changed meanwhile. Alarm ids derive from the rule, the identity, the signal
and the event-time onset; timer outputs carry their event-time deadline, not the clock.
Steps without alarms checkpoint at most every ``checkpoint_every_s``. A restart appends
only the part of the outbox not on the log yet (the runner that saved it may have
appended it before it stopped), so a handover doubles nothing.

Handover between two runners (a singleton moving to another process): a checkpoint's
version is a *term* (high 32 bits), started anew each time a runner opens from the store,
and a count of saves within it (low bits); the store keeps the highest version. So the
saves of a runner that resumed later win over those of one still stopping, however many
that one makes: the old leader cannot take the new one's checkpoint back.

Decode once: in ``millrace run`` the runner takes the events the processor runtime
decoded (``feed``, ``pipeline.runtime.feed``) instead of decoding the log again; the
same records in the same order, so nothing above changes. Where the feed cannot serve
(no runtime in the process: ``millrace process`` runs faust workers; the runtime paused
or failing; the runner behind what the feed holds) it reads and decodes the log itself.

Topics are read in a fixed order per step (rules first, then identity, status,
telemetry), so a rule defined before a reading is in force when the reading is judged
as long as both are in the same or earlier steps. A fresh runner (no checkpoint) starts
at the beginning of the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from millrace.pipeline.clock import now_us
from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.errors import DecodeError
from millrace.pipeline.log.base import EventLog, TopicPartition
from millrace.pipeline.runtime.feed import DecodedFeed, Taken
from millrace.pipeline.runtime.loop import run_steps
from millrace.pipeline.topics import ALARMS, IDENTITY, STATUS, TELEMETRY

log = logging.getLogger("millrace.alarms")

#: read order within a step: rules, then the state they judge, then readings
TOPICS: tuple[str, ...] = (ALARMS, IDENTITY, STATUS, TELEMETRY)
#: the name the runner's checkpoint is saved under unless given another
NAME = "alarms"

#: a checkpoint version is ``term << TERM_SHIFT | saves in the term`` (see the module doc)
TERM_SHIFT = 32


def next_term(version: int) -> int:
    """The first version of the term after the one ``version`` belongs to (saves add
    one each)."""
    return ((version >> TERM_SHIFT) + 1) << TERM_SHIFT


class AlarmEvaluator(Protocol):
    @property
    def watches_telemetry(self) -> bool: ...
    def on_event(self, topic: str, value: Mapping[str, Any]) -> list[dict[str, Any]]: ...
    def advance(self, now_us: int) -> list[dict[str, Any]]: ...
    def snapshot(self) -> str: ...


@dataclass
class Checkpoint:
    version: int = 0
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    state: str = ""
    #: AlarmEvents (JSON list) produced by the step this checkpoint ends, appended
    #: after it was saved: a restart appends them again
    outbox: str = ""


class Checkpoints(ABC):
    """Port: where a stage keeps its positions and state (saved atomically together).
    ``load`` returns the save with the highest version; a save of a version not above
    the highest one saved changes nothing."""

    @abstractmethod
    def load(self, name: str) -> Checkpoint | None: ...

    @abstractmethod
    def save(self, name: str, checkpoint: Checkpoint, now_us: int) -> None: ...


class MemoryCheckpoints(Checkpoints):
    """Test double, with the store's rule: the highest version wins."""

    def __init__(self) -> None:
        self.saved: dict[str, Checkpoint] = {}

    def load(self, name: str) -> Checkpoint | None:
        cp = self.saved.get(name)
        if cp is None:
            return None
        return Checkpoint(cp.version, dict(cp.positions), cp.state, cp.outbox)

    def save(self, name: str, checkpoint: Checkpoint, now_us: int) -> None:
        # as the store's: the highest version wins, the first save of a version stays
        # (a runner stopping late cannot take a newer checkpoint back)
        old = self.saved.get(name)
        if old is not None and old.version >= checkpoint.version:
            return
        self.saved[name] = Checkpoint(
            checkpoint.version, dict(checkpoint.positions), checkpoint.state, checkpoint.outbox
        )


@dataclass
class RunnerStats:
    steps: int = 0
    events: int = 0
    undecodable: int = 0
    emitted: int = 0
    checkpoints: int = 0
    errors: int = 0
    last_error: str = ""


class AlarmRunner:
    """Runs an evaluator over the log (see the module doc)."""

    def __init__(
        self,
        log: EventLog,
        publisher: EventPublisher,
        checkpoints: Checkpoints,
        codec: AvroCodec,
        evaluator_factory: Callable[[str | None], AlarmEvaluator],
        *,
        name: str = NAME,
        clock: Callable[[], int] = now_us,
        max_records: int = 5000,
        tick_s: float = 1.0,
        checkpoint_every_s: float = 1.0,
        grace_s: float = 2.0,
        topics: Sequence[str] = TOPICS,
        feed: DecodedFeed | None = None,
    ) -> None:
        self.log = log
        self.publisher = publisher
        self.checkpoints = checkpoints
        self.codec = codec
        self.factory = evaluator_factory
        self.name = name
        self.clock = clock
        self.max_records = max_records
        self.tick_s = tick_s
        self.checkpoint_every_s = checkpoint_every_s
        self.grace_s = grace_s
        self.topics = tuple(topics)
        self.stats = RunnerStats()
        self.evaluator: AlarmEvaluator | None = None
        self._cp = Checkpoint()
        self._dirty = False
        self._saved_at = 0.0
        self._wake = asyncio.Event()
        self.feed = feed
        self._reader = f"alarms:{name}"
        if feed is not None:
            feed.subscribe(self._reader, self.wake)

    def wake(self) -> None:
        self._wake.set()

    def position(self, tp: TopicPartition) -> int:
        return self._cp.positions.get(tp, 0)

    async def open(self) -> None:
        """Resume from the last checkpoint (or the beginning of the log); append its
        outbox again (a crash may have come before the append)."""
        cp = await asyncio.to_thread(self.checkpoints.load, self.name)
        self._cp = cp if cp is not None else Checkpoint()
        self._cp.version = next_term(self._cp.version) - 1  # the next save starts a term
        self.evaluator = self.factory(self._cp.state or None)
        if self._cp.outbox:
            outbox = json.loads(self._cp.outbox)
            # only what did not reach the log: after a clean stop, or when the runner
            # that saved it (a leader handing over) appended it meanwhile, nothing
            present = await self._alarms_after_checkpoint()
            missing = [e for e in outbox if _identity(e) not in present]
            if missing:
                await self.publisher.publish(ALARMS, [(str(e["alarm_id"]), e) for e in missing])

    async def _alarms_after_checkpoint(self) -> set[tuple[str, str, int]]:
        """Alarm events on the log past the checkpoint's positions (where an outbox
        lands once appended)."""
        seen: set[tuple[str, str, int]] = set()
        for p in range(self.log.partitions(ALARMS)):
            offset = self._cp.positions.get(TopicPartition(ALARMS, p), 0)
            while True:
                records = await self.log.read(ALARMS, p, offset, self.max_records)
                if not records:
                    break
                seen.update(await asyncio.to_thread(self._identities, records))
                offset = records[-1].offset + 1
        return seen

    def _identities(self, records: Sequence[Any]) -> set[tuple[str, str, int]]:
        out: set[tuple[str, str, int]] = set()
        for rec in records:
            try:
                out.add(_identity(self.codec.decode(ALARMS, rec.value)))
            except DecodeError:
                continue
        return out

    async def step(self, now_us: int | None = None) -> int:
        """Feed one batch of every topic, fire the timer, checkpoint with the alarms as
        an outbox, append them. Returns how many records were read."""
        if self.evaluator is None:
            await self.open()
        ev = self.evaluator
        assert ev is not None
        out: list[dict[str, Any]] = []
        read = 0
        caught_up = True
        for topic in self.topics:
            for p in range(self.log.partitions(topic)):
                tp = TopicPartition(topic, p)
                pos = self._cp.positions.get(tp, 0)
                taken = self._take(tp, pos)
                if taken is not None:
                    # the runtime's decoded events (an empty take: it has not read
                    # there yet; its next batch wakes this runner)
                    caught_up = caught_up and not taken.more
                    if taken.next > pos:
                        if taken.events and (topic != TELEMETRY or ev.watches_telemetry):
                            values = [(topic, e.value) for e in taken.events]
                            out.extend(await asyncio.to_thread(self._judge, ev, values))
                        self.stats.undecodable += taken.skipped
                        read += taken.next - pos
                        self._cp.positions[tp] = taken.next
                    continue
                records = await self.log.read(topic, p, pos, self.max_records)
                if not records:
                    continue
                if len(records) >= self.max_records:
                    caught_up = False
                if topic == TELEMETRY and not ev.watches_telemetry:
                    read += 1  # nothing judges readings: move past them undecoded
                else:
                    # decoding and judging are CPU work: off the loop the API serves on
                    out.extend(await asyncio.to_thread(self._feed, ev, topic, records))
                    read += len(records)
                self._cp.positions[tp] = records[-1].offset + 1
                if self.feed is not None:
                    self.feed.passed(self._reader, tp, records[-1].offset + 1)
        if caught_up:
            # the timer lags the clock by ``grace_s`` so a reading in flight is judged
            # before its deadline is; while catching up on a backlog it waits, or
            # deadlines the unread readings would cancel would fire
            now = self.clock() - int(self.grace_s * 1e6) if now_us is None else now_us
            out.extend(await asyncio.to_thread(ev.advance, now))
        self.stats.steps += 1
        self.stats.events += read
        if read or out:
            self._dirty = True
        if out:
            # outbox: the state that produced these alarms is saved with them before
            # they are appended; a restart appends a saved outbox again (identical
            # events, folded as no-ops), so the log never holds an alarm the restored
            # evaluator does not know
            await self._save(out)
            await self.publisher.publish(ALARMS, [(str(e["alarm_id"]), e) for e in out])
            self.stats.emitted += len(out)
            # appended: the next save (at the latest when the runner stops) drops the
            # outbox, so a clean stop leaves nothing to append again
            self._dirty = True
        elif self._dirty and time.monotonic() - self._saved_at >= self.checkpoint_every_s:
            await self._save([])
        return read

    def _take(self, tp: TopicPartition, pos: int) -> Taken | None:
        if self.feed is None:
            return None
        return self.feed.take(self._reader, tp, pos, self.max_records)

    def _feed(self, ev: AlarmEvaluator, topic: str, records: Sequence[Any]) -> list[dict[str, Any]]:
        values: list[tuple[str, Mapping[str, Any]]] = []
        for rec in records:
            try:
                values.append((topic, self.codec.decode(topic, rec.value)))
            except DecodeError:
                # the projection runtime sends it to deadletter; nothing to judge
                self.stats.undecodable += 1
        return self._judge(ev, values)

    @staticmethod
    def _judge(
        ev: AlarmEvaluator, values: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for topic, value in values:
            out.extend(ev.on_event(topic, value))
        return out

    async def _save(self, outbox: list[dict[str, Any]]) -> None:
        ev = self.evaluator
        assert ev is not None
        self._cp.version += 1
        self._cp.state = await asyncio.to_thread(ev.snapshot)
        self._cp.outbox = json.dumps(outbox) if outbox else ""
        await asyncio.to_thread(self.checkpoints.save, self.name, self._cp, self.clock())
        self._dirty = False
        self._saved_at = time.monotonic()
        self.stats.checkpoints += 1

    async def run_until_idle(self, now_us: int | None = None) -> int:
        total = 0
        while True:
            n = await self.step(now_us)
            total += n
            if n == 0:
                return total

    def _failed(self, exc: Exception, retry_in_s: float) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        log.error("alarm step failed; resuming in %.1fs", retry_in_s, exc_info=exc)
        self.evaluator = None  # the next step reopens from the checkpoint

    async def run(self, stop: asyncio.Event) -> None:
        """Step until ``stop``: at once when there is more to read, else every ``tick_s``
        (the timer of time-based rules). Errors are logged and retried from the last
        checkpoint. Each run resumes from the last checkpoint, not from this object's
        memory: a singleton runner leading again after another process led meanwhile
        must not go on from where it stopped."""
        self.evaluator = None
        await run_steps(
            self.step,
            stop,
            self._wake,
            idle_s=self.tick_s,
            on_error=self._failed,
            first_backoff_s=0.5,
        )
        if self._dirty and self.evaluator is not None:
            try:
                await self._save([])
            except Exception:  # pragma: no cover - the next start re-runs from the last one
                log.exception("final alarm checkpoint failed")


def _identity(event: Mapping[str, Any]) -> tuple[str, str, int]:
    """What tells alarm events apart: the runner's are deterministic, so the same alarm,
    step and event time is the same event."""
    return (str(event.get("alarm_id")), str(event.get("type")), int(event.get("ts_us") or 0))
