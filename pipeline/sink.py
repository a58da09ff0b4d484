"""The projection sink port, and how it makes projections exactly-once.

A runtime hands the sink one :class:`SinkBatch` at a time: the offset range it covers
in each topic-partition, a sequence number, and the rows the processors made of it.
The sink must make ``write`` idempotent for a given batch:

1. store an *intent* (the batch's ranges, uncommitted) where the rows go,
2. insert every table with a deduplication token derived from (consumer, batch seq,
   ranges, table), so a repeated insert of the same batch is dropped by the store,
3. store the *commit* of the ranges.

After a crash the runtime asks :meth:`ProjectionSink.progress`; a pending intent is
redone over exactly the same ranges (processors are pure, so the rows and tokens are
the same) before anything new is read. Records below a committed position are never
applied again, so re-reading any range of the log is a no-op.

Several workers (the distributed runtime) pass a *fence* to ``write``: it runs after
the intent is stored and before the first insert, and raises when the worker no
longer owns the partitions (for Kafka: a group-generation-checked offset commit). A
worker whose fence passed wrote its intent before any new owner could read the
progress, so the new owner redoes that very range, with the same tokens; a worker
whose fence fails inserts nothing.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from millrace.pipeline.batches import MARK_PARTITION, Applied, AppliedBatches
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.processors.base import StateReader


@dataclass(frozen=True, slots=True)
class Range:
    start: int  # first offset in the batch
    end: int  # one past the last offset


@dataclass(slots=True)
class SinkBatch:
    seq: int
    ranges: dict[TopicPartition, Range]
    tables: dict[str, pa.Table] = field(default_factory=dict)

    def token(self, consumer: str, table: str) -> str:
        parts = sorted(
            f"{tp.topic}/{tp.partition}/{r.start}-{r.end}" for tp, r in self.ranges.items()
        )
        digest = hashlib.sha256(";".join(parts).encode()).hexdigest()[:24]
        return f"{consumer}:{self.seq}:{digest}:{table}"


@dataclass(slots=True)
class Progress:
    """A consumer's committed positions, and the batch left pending by a crash."""

    positions: dict[TopicPartition, int] = field(default_factory=dict)
    last_seq: int = 0
    pending: dict[TopicPartition, Range] = field(default_factory=dict)
    pending_seq: int | None = None


class ProjectionSink(ABC):
    """Port: where processors' rows go, idempotently per batch."""

    @abstractmethod
    def progress(self, consumer: str) -> Progress:
        """Committed positions and any pending batch of ``consumer``."""

    @abstractmethod
    def write(
        self, consumer: str, batch: SinkBatch, fence: Callable[[], None] | None = None
    ) -> None:
        """Intent, ``fence()``, tables (deduplicated by token), commit — see the module doc."""


class MemoryProjectionSink(ProjectionSink, StateReader, AppliedBatches):
    """Test double with the same semantics: tables are lists of row dicts, repeated
    tokens are ignored, and ``fail_after`` injects a crash after N steps of a write."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, object]]] = {}
        self.schemas: dict[str, pa.Schema] = {}
        self.tokens: set[str] = set()
        self._progress: dict[str, Progress] = {}
        self.fail_after: int | None = None
        self._steps = 0

    def _step(self) -> None:
        self._steps += 1
        if self.fail_after is not None and self._steps > self.fail_after:
            self.fail_after = None
            raise RuntimeError("injected crash")

    def load_state(self, table: str, key: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        wanted = set(keys)
        out: dict[str, dict[str, Any]] = {}
        for row in self.rows.get(table, []):
            k = str(row[key])
            if k in wanted and (k not in out or int(row["version"]) >= out[k]["version"]):  # type: ignore[call-overload]
                out[k] = row
        maps = {f.name for f in self.schemas.get(table, ()) if isinstance(f.type, pa.MapType)}
        return {k: _plain(v, maps) for k, v in out.items()}

    def applied_batches(
        self, partition: int, since_us: int, keys: Sequence[str] | None = None
    ) -> dict[str, Applied]:
        wanted = None if keys is None else set(keys)
        out: dict[str, Applied] = {}
        for row in self.rows.get("applied_batches", []):
            key = str(row["batch_key"])
            if row["partition"] != partition or int(row["expires_us"]) <= since_us:  # type: ignore[call-overload]
                continue
            if (wanted is None or key in wanted) and key not in out:
                out[key] = Applied(str(row["origin"]), int(row["expires_us"]))  # type: ignore[call-overload]
        return out

    def restore_mark(self) -> tuple[int, int]:
        marks = [
            int(r["applied_us"])  # type: ignore[call-overload]
            for r in self.rows.get("applied_batches", [])
            if r["partition"] == MARK_PARTITION
        ]
        return (len(marks), max(marks, default=0))

    def progress(self, consumer: str) -> Progress:
        p = self._progress.get(consumer, Progress())
        return Progress(dict(p.positions), p.last_seq, dict(p.pending), p.pending_seq)

    def write(
        self, consumer: str, batch: SinkBatch, fence: Callable[[], None] | None = None
    ) -> None:
        self._steps = 0
        p = self._progress.setdefault(consumer, Progress())
        self._step()
        p.pending, p.pending_seq = dict(batch.ranges), batch.seq
        p.last_seq = max(p.last_seq, batch.seq)
        if fence is not None:
            fence()
        for name, table in batch.tables.items():
            self._step()
            token = batch.token(consumer, name)
            if token in self.tokens:
                continue
            self.tokens.add(token)
            self.schemas[name] = table.schema
            self.rows.setdefault(name, []).extend(table.to_pylist())
        self._step()
        for tp, r in batch.ranges.items():
            p.positions[tp] = r.end
        p.pending, p.pending_seq = {}, None


def _plain(row: dict[str, object], maps: set[str]) -> dict[str, Any]:
    """Arrow's pylist maps (lists of pairs) back to dicts, as a store returns them."""
    return {k: dict(v) if k in maps and isinstance(v, list) else v for k, v in row.items()}
