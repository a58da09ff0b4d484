"""ProjectionWriter: the projection sink on a ClickHouse store (chDB or server).

One ``INSERT ... SELECT ... FROM <arrow>`` per table per batch, each carrying the
batch's ``insert_deduplication_token``; every MergeTree table has a
``non_replicated_deduplication_window``, so an insert repeated after a crash is
dropped by ClickHouse. Progress rows go to ``millrace.progress`` in the same store.
See ``pipeline.sink`` for the protocol; every insert is declared in ``projections.tables``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from millrace.pipeline.batches import MARK_PARTITION, Applied, AppliedBatches
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.processors.base import StateReader
from millrace.pipeline.sink import Progress, ProjectionSink, Range, SinkBatch
from millrace.projections.store.base import ProjectionStore
from millrace.projections.tables import INSERTS, STATE_TABLES, TABLES

_PROGRESS_INSERT = TABLES["progress"].insert
_MAP_COLUMNS = {f.name for f in TABLES["identities"].rows.schema if isinstance(f.type, pa.MapType)}


class ProjectionWriter(ProjectionSink, StateReader, AppliedBatches):
    """Writes processor output to ClickHouse, exactly once per log record."""

    def __init__(self, store: ProjectionStore, targets: Mapping[str, str] | None = None) -> None:
        """``targets`` (projection -> the table it goes to; a replay's shadow tables):
        when given, projections left out are not written and state is read from the
        targets; progress rows always go to ``millrace.progress``."""
        self.store = store
        self.targets = None if targets is None else dict(targets)
        self._inserts = dict(INSERTS)
        if self.targets is not None:
            self._inserts = {
                name: INSERTS[name].replace(f"INTO millrace.{name}", f"INTO millrace.{to}", 1)
                for name, to in self.targets.items()
            }

    def _table(self, name: str) -> str:
        return name if self.targets is None else self.targets.get(name, name)

    def load_state(self, table: str, key: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        columns = STATE_TABLES.get(table)
        if columns is None or key not in columns:
            raise KeyError(f"no state table {table!r} keyed by {key!r}")
        res = self.store.query_arrow(
            f"SELECT {', '.join(columns)} FROM millrace.{self._table(table)} FINAL "
            f"WHERE {key} IN {{keys:Array(String)}}",
            params={"keys": list(keys)},
        )
        out: dict[str, dict[str, Any]] = {}
        for row in res.to_pylist():
            for name, v in row.items():
                if isinstance(v, list) and name in _MAP_COLUMNS:
                    row[name] = dict(v)
            out[row[key]] = row
        return out

    def applied_batches(
        self, partition: int, since_us: int, keys: Sequence[str] | None = None
    ) -> dict[str, Applied]:
        """The first application of each id among those unexpired at ``since_us``: its
        origin and *its* expiry (an id applied again after its window ran out has a
        later row; a step redone over that moment must see the first one expire, so
        that it applies the id again where it did; a race of two origins resolves the
        same way for every reader), one query; ``keys`` narrows it to the ids asked."""
        where = "partition = {p:UInt32} AND expires_us > {since:Int64}"
        params: dict[str, Any] = {"p": partition, "since": since_us}
        if keys is not None:
            where += " AND batch_key IN {keys:Array(String)}"
            params["keys"] = list(keys)
        res = self.store.query_arrow(
            "SELECT batch_key, argMin((origin, expires_us), (applied_us, origin)) AS app, "
            "tupleElement(app, 1) AS first_origin, tupleElement(app, 2) AS exp "
            f"FROM millrace.{self._table('applied_batches')} WHERE {where} "
            "GROUP BY batch_key ORDER BY min(applied_us)",
            params=params,
        )
        return {
            k: Applied(o, e)
            for k, o, e in zip(
                res["batch_key"].to_pylist(),
                res["first_origin"].to_pylist(),
                res["exp"].to_pylist(),
                strict=True,
            )
        }

    def applied_keys(
        self, partition: int, since_us: int, after: str | None, limit: int
    ) -> list[tuple[str, int]]:
        """One page of a partition's unexpired ids in primary-key order (a range read of
        ``limit`` rows, not an aggregation of the partition); ``WITH TIES`` keeps all
        rows of the last id in the page, so the next page starts after it."""
        where = "partition = {p:UInt32} AND expires_us > {since:Int64}"
        params: dict[str, Any] = {"p": partition, "since": since_us, "n": limit}
        if after is not None:
            where += " AND batch_key > {after:String}"
            params["after"] = after
        res = self.store.query_arrow(
            f"SELECT batch_key, expires_us FROM millrace.{self._table('applied_batches')} "
            f"WHERE {where} ORDER BY batch_key LIMIT {{n:UInt64}} WITH TIES",
            params=params,
        )
        return list(zip(res["batch_key"].to_pylist(), res["expires_us"].to_pylist(), strict=True))

    def restore_mark(self) -> tuple[int, int]:
        """Count and latest time of the restore marks: one primary-key read, once per
        live fold step (``pipeline.batches``)."""
        res = self.store.execute(
            "SELECT count(), max(applied_us) "
            f"FROM millrace.{self._table('applied_batches')} WHERE partition = {{p:UInt32}}",
            params={"p": MARK_PARTITION},
        )
        count, latest = res.rows[0] if res.rows else (0, 0)
        return (int(count), int(latest or 0))

    def progress(self, consumer: str) -> Progress:
        res = self.store.execute(
            "SELECT topic, partition, batch_seq, start_offset, end_offset, committed "
            "FROM millrace.progress FINAL WHERE consumer = {c:String}",
            params={"c": consumer},
        )
        p = Progress()
        for topic, partition, seq, start, end, committed in res.rows:
            tp = TopicPartition(str(topic), int(partition))
            seq = int(seq)
            p.last_seq = max(p.last_seq, seq)
            if int(committed):
                p.positions[tp] = int(end)
            else:
                # the intent row replaced the previous commit: its start is that
                # commit's position
                p.positions[tp] = int(start)
                p.pending[tp] = Range(int(start), int(end))
                p.pending_seq = seq if p.pending_seq is None else max(p.pending_seq, seq)
        return p

    def _progress_rows(self, consumer: str, batch: SinkBatch, committed: int) -> pa.Table:
        items = sorted(batch.ranges.items(), key=lambda kv: (kv[0].topic, kv[0].partition))
        n = len(items)
        return pa.Table.from_pydict(
            {
                "consumer": [consumer] * n,
                "topic": [tp.topic for tp, _ in items],
                "partition": pa.array([tp.partition for tp, _ in items], pa.uint32()),
                "batch_seq": pa.array([batch.seq] * n, pa.uint64()),
                "start_offset": pa.array([r.start for _, r in items], pa.int64()),
                "end_offset": pa.array([r.end for _, r in items], pa.int64()),
                "committed": pa.array([committed] * n, pa.uint8()),
                "version": pa.array([batch.seq * 2 + committed] * n, pa.uint64()),
            },
            schema=TABLES["progress"].rows.schema,
        )

    def write(
        self, consumer: str, batch: SinkBatch, fence: Callable[[], None] | None = None
    ) -> None:
        if not batch.ranges:
            return
        self.store.insert_arrow(_PROGRESS_INSERT, self._progress_rows(consumer, batch, 0))
        if fence is not None:
            fence()
        for name, table in batch.tables.items():
            if table.num_rows == 0 or (self.targets is not None and name not in self.targets):
                continue
            sql = self._inserts.get(name)
            if sql is None:
                raise KeyError(f"no projection table {name!r}")
            self.store.insert_arrow(
                sql,
                table,
                settings={
                    "insert_deduplicate": 1,
                    "insert_deduplication_token": batch.token(consumer, name),
                    # one pipeline: the blocks of a repeated INSERT ... SELECT (GROUP BY
                    # over a many-chunk Arrow input) come out the same, so the token
                    # (applied per block) deduplicates every one of them
                    "max_threads": 1,
                },
            )
        self.store.insert_arrow(_PROGRESS_INSERT, self._progress_rows(consumer, batch, 1))
