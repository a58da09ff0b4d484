"""AlarmRunner: feeds the pure evaluator from the log and puts its alarms on the log.

The evaluator (``pipeline.alarms.evaluator``) is a fold over rule, identity, status and
telemetry events. The runner reads those topics from its own positions, hands every
event to the evaluator, calls its timer (``advance``) with the runtime's clock — the
only place a wall clock enters — and appends the AlarmEvents it returns to the
``alarms`` topic, where the alarm projection folds them.

Exactly-once, the argument: after the events of a step are appended, the runner saves
a checkpoint (positions + evaluator snapshot) in one row. A crash between the append
and the save restarts from the previous checkpoint and re-runs the same events through
the same state, so it re-emits *identical* AlarmEvents (alarm ids derive from the rule,
the identity, the signal and the event-time onset; timer outputs carry their event-time
deadline, not the clock). The alarm projection folds a RAISED of an existing alarm and
a CLEARED of a cleared one as no-ops, so duplicates leave every projection unchanged.

Topics are read in a fixed order per step (rules first, then identity, status,
telemetry), so a rule defined before a reading is in force when the reading is judged
as long as both are in the same or earlier steps. A fresh runner (no checkpoint) starts
at the beginning of the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.codec import AvroCodec
from pipeline.connector import EventPublisher
from pipeline.errors import DecodeError
from pipeline.log.base import EventLog, TopicPartition
from pipeline.topics import ALARMS, IDENTITY, STATUS, TELEMETRY

log = logging.getLogger("millrace.alarms")

#: read order within a step: rules, then the state they judge, then readings
TOPICS: tuple[str, ...] = (ALARMS, IDENTITY, STATUS, TELEMETRY)


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


class Checkpoints(ABC):
    """Port: where a stage keeps its positions and state (saved atomically together)."""

    @abstractmethod
    def load(self, name: str) -> Checkpoint | None: ...

    @abstractmethod
    def save(self, name: str, checkpoint: Checkpoint, now_us: int) -> None: ...


class MemoryCheckpoints(Checkpoints):
    """Test double."""

    def __init__(self) -> None:
        self.saved: dict[str, Checkpoint] = {}

    def load(self, name: str) -> Checkpoint | None:
        cp = self.saved.get(name)
        return None if cp is None else Checkpoint(cp.version, dict(cp.positions), cp.state)

    def save(self, name: str, checkpoint: Checkpoint, now_us: int) -> None:
        self.saved[name] = Checkpoint(
            checkpoint.version, dict(checkpoint.positions), checkpoint.state
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


def _now_us() -> int:
    return time.time_ns() // 1000


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
        name: str = "alarms",
        clock: Callable[[], int] = _now_us,
        max_records: int = 5000,
        tick_s: float = 1.0,
        checkpoint_every_s: float = 1.0,
        grace_s: float = 2.0,
        topics: Sequence[str] = TOPICS,
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

    def wake(self) -> None:
        self._wake.set()

    def position(self, tp: TopicPartition) -> int:
        return self._cp.positions.get(tp, 0)

    async def open(self) -> None:
        """Resume from the last checkpoint (or the beginning of the log)."""
        cp = await asyncio.to_thread(self.checkpoints.load, self.name)
        self._cp = cp if cp is not None else Checkpoint()
        self.evaluator = self.factory(self._cp.state or None)

    async def step(self, now_us: int | None = None) -> int:
        """Feed one batch of every topic, fire the timer, append the alarms, checkpoint.
        Returns how many records were read."""
        if self.evaluator is None:
            await self.open()
        ev = self.evaluator
        assert ev is not None
        out: list[dict[str, Any]] = []
        read = 0
        for topic in self.topics:
            for p in range(self.log.partitions(topic)):
                tp = TopicPartition(topic, p)
                pos = self._cp.positions.get(tp, 0)
                records = await self.log.read(topic, p, pos, self.max_records)
                if not records:
                    continue
                if topic == TELEMETRY and not ev.watches_telemetry:
                    records = records[-1:]  # nothing judges readings: move past them
                    read += 1
                    self._cp.positions[tp] = records[-1].offset + 1
                    continue
                for rec in records:
                    try:
                        value = self.codec.decode(topic, rec.value)
                    except DecodeError:
                        # the projection runtime sends it to deadletter; nothing to judge
                        self.stats.undecodable += 1
                        continue
                    out.extend(ev.on_event(topic, value))
                self._cp.positions[tp] = records[-1].offset + 1
                read += len(records)
        # the timer lags the clock by ``grace_s`` so a reading in flight is judged
        # before its deadline is
        now = self.clock() - int(self.grace_s * 1e6) if now_us is None else now_us
        out.extend(ev.advance(now))
        if out:
            await self.publisher.publish(ALARMS, [(str(e["alarm_id"]), e) for e in out])
            self.stats.emitted += len(out)
        self.stats.steps += 1
        self.stats.events += read
        if read or out:
            self._dirty = True
        if self._dirty and (out or time.monotonic() - self._saved_at >= self.checkpoint_every_s):
            await self._save()
        return read

    async def _save(self) -> None:
        ev = self.evaluator
        assert ev is not None
        self._cp.version += 1
        self._cp.state = ev.snapshot()
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

    async def run(self, stop: asyncio.Event) -> None:
        """Step until ``stop``: at once when there is more to read, else every ``tick_s``
        (the timer of time-based rules). Errors are logged and retried from the last
        checkpoint."""
        backoff = 0.5
        while not stop.is_set():
            try:
                n = await self.step()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep alarms alive; resume from the checkpoint
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("alarm step failed; resuming from the checkpoint in %.1fs", backoff)
                self.evaluator = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if n == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.tick_s)
                except TimeoutError:
                    pass
        if self._dirty and self.evaluator is not None:
            try:
                await self._save()
            except Exception:  # pragma: no cover - the next start re-runs from the last one
                log.exception("final alarm checkpoint failed")
