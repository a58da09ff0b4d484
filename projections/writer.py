"""ProjectionWriter: the projection sink on a ClickHouse store (chDB or server).

One ``INSERT ... SELECT ... FROM <arrow>`` per table per batch, each carrying the
batch's ``insert_deduplication_token``; every MergeTree table has a
``non_replicated_deduplication_window``, so an insert repeated after a crash is
dropped by ClickHouse. Progress rows go to ``millrace.progress`` in the same store.
See ``pipeline.sink`` for the protocol.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from pipeline.log.base import TopicPartition
from pipeline.sink import Progress, ProjectionSink, Range, SinkBatch
from projections.store.base import ProjectionStore

_AGG_INSERT = """INSERT INTO millrace.{table}
SELECT identity, signal, toDateTime(bucket, 'UTC'), kind, count, num_count,
       ifNull(sum, 0), ifNull(min, inf), ifNull(max, -inf),
       tuple(first_ts, first_value, first_text), tuple(last_ts, last_value, last_text)
FROM {{input}}"""

INSERTS: dict[str, str] = {
    "readings": """INSERT INTO millrace.readings
SELECT identity, signal, fromUnixTimestamp64Micro(ts, 'UTC'), value, text, kind, quality
FROM {input}""",
    "latest": """INSERT INTO millrace.latest
SELECT identity, signal, fromUnixTimestamp64Micro(ts, 'UTC'), value, text, kind, quality,
       fromUnixTimestamp64Micro(received, 'UTC')
FROM {input}""",
    "agg_1m": _AGG_INSERT.format(table="agg_1m"),
    "agg_5m": _AGG_INSERT.format(table="agg_5m"),
    "agg_1h": _AGG_INSERT.format(table="agg_1h"),
    "deadletter": """INSERT INTO millrace.deadletter
SELECT fromUnixTimestamp64Micro(ts_us, 'UTC'), source_topic, source_partition,
       source_offset, dedup_key, stage, error_type, reason, key, payload,
       dl_partition, dl_offset
FROM {input}""",
}

_PROGRESS_INSERT = """INSERT INTO millrace.progress
(consumer, topic, partition, batch_seq, start_offset, end_offset, committed, version)
SELECT consumer, topic, partition, batch_seq, start_offset, end_offset, committed, version
FROM {input}"""


class ProjectionWriter(ProjectionSink):
    """Writes processor output to ClickHouse, exactly once per log record."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store

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
        return pa.table(
            {
                "consumer": [consumer] * n,
                "topic": [tp.topic for tp, _ in items],
                "partition": pa.array([tp.partition for tp, _ in items], pa.uint32()),
                "batch_seq": pa.array([batch.seq] * n, pa.uint64()),
                "start_offset": pa.array([r.start for _, r in items], pa.int64()),
                "end_offset": pa.array([r.end for _, r in items], pa.int64()),
                "committed": pa.array([committed] * n, pa.uint8()),
                "version": pa.array([batch.seq * 2 + committed] * n, pa.uint64()),
            }
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
            if table.num_rows == 0:
                continue
            sql = INSERTS.get(name)
            if sql is None:
                raise KeyError(f"no projection table {name!r}")
            self.store.insert_arrow(
                sql,
                table,
                settings={
                    "insert_deduplicate": 1,
                    "insert_deduplication_token": batch.token(consumer, name),
                },
            )
        self.store.insert_arrow(_PROGRESS_INSERT, self._progress_rows(consumer, batch, 1))
