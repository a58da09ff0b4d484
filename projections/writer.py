"""ProjectionWriter: the projection sink on a ClickHouse store (chDB or server).

One ``INSERT ... SELECT ... FROM <arrow>`` per table per batch, each carrying the
batch's ``insert_deduplication_token``; every MergeTree table has a
``non_replicated_deduplication_window``, so an insert repeated after a crash is
dropped by ClickHouse. Progress rows go to ``millrace.progress`` in the same store.
See ``pipeline.sink`` for the protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from pipeline.log.base import TopicPartition
from pipeline.processors.alarms import ALARMS_SCHEMA, ANNOTATIONS_SCHEMA, RULES_SCHEMA
from pipeline.processors.base import StateReader
from pipeline.processors.identity import IDENTITIES_SCHEMA
from pipeline.processors.status import STATES_SCHEMA
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

INSERTS["identities"] = (
    "INSERT INTO millrace.identities ({cols}) SELECT {cols} FROM {{input}}".format(
        cols=", ".join(f.name for f in IDENTITIES_SCHEMA)
    )
)
INSERTS["resource_defs"] = """INSERT INTO millrace.resource_defs
SELECT name, version, present, definition, updated_us, updated_by FROM {input}"""
INSERTS["device_metrics"] = """INSERT INTO millrace.device_metrics
SELECT metric, toStartOfMinute(fromUnixTimestamp64Micro(t, 'UTC')) AS b,
       count(), sum(v), min(v), max(v)
FROM (SELECT assumeNotNull(metric) AS metric, assumeNotNull(ts) AS t,
             assumeNotNull(value) AS v FROM {input})
GROUP BY metric, b"""
INSERTS["identity_seen"] = """INSERT INTO millrace.identity_seen
SELECT identity, max(r), min(r), argMaxState(i, r), count()
FROM (SELECT assumeNotNull(identity) AS identity, assumeNotNull(received) AS r,
             ifNull(ip, '') AS i FROM {input})
GROUP BY identity"""

INSERTS["audits"] = """INSERT INTO millrace.audits
SELECT fromUnixTimestamp64Micro(ts_us, 'UTC'), audit_id, actor, actor_role, action,
       target_type, target_id, before, after, status, request_id, source_ip, log_offset
FROM {input}"""

INSERTS["resource_states"] = (
    "INSERT INTO millrace.resource_states ({cols}) SELECT {cols} FROM {{input}}".format(
        cols=", ".join(f.name for f in STATES_SCHEMA)
    )
)
INSERTS["resource_runners"] = """INSERT INTO millrace.resource_runners
SELECT runner, max(t), min(t), argMaxState(tuple(iv, st), hb), groupUniqArray(sid)
FROM (SELECT assumeNotNull(runner) AS runner, assumeNotNull(ts_us) AS t,
             assumeNotNull(heartbeat_ts) AS hb, assumeNotNull(interval_s) AS iv,
             ifNull(state, '') AS st, ifNull(service_id, '') AS sid FROM {input})
GROUP BY runner"""

for _name, _schema in (
    ("alarms", ALARMS_SCHEMA),
    ("alarm_annotations", ANNOTATIONS_SCHEMA),
    ("alarm_rules", RULES_SCHEMA),
):
    INSERTS[_name] = "INSERT INTO millrace.{t} ({cols}) SELECT {cols} FROM {{input}}".format(
        t=_name, cols=", ".join(f.name for f in _schema)
    )

#: state tables a StatefulProcessor may read (table -> its columns)
STATE_TABLES: dict[str, tuple[str, ...]] = {
    "identities": tuple(f.name for f in IDENTITIES_SCHEMA),
    "resource_states": tuple(f.name for f in STATES_SCHEMA),
    "alarms": tuple(f.name for f in ALARMS_SCHEMA),
}

_PROGRESS_INSERT = """INSERT INTO millrace.progress
(consumer, topic, partition, batch_seq, start_offset, end_offset, committed, version)
SELECT consumer, topic, partition, batch_seq, start_offset, end_offset, committed, version
FROM {input}"""


_MAP_COLUMNS = {f.name for f in IDENTITIES_SCHEMA if isinstance(f.type, pa.MapType)}


class ProjectionWriter(ProjectionSink, StateReader):
    """Writes processor output to ClickHouse, exactly once per log record."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store

    def load_state(self, table: str, key: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        columns = STATE_TABLES.get(table)
        if columns is None or key not in columns:
            raise KeyError(f"no state table {table!r} keyed by {key!r}")
        res = self.store.query_arrow(
            f"SELECT {', '.join(columns)} FROM millrace.{table} FINAL "
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
                    # one pipeline: the blocks of a repeated INSERT ... SELECT (GROUP BY
                    # over a many-chunk Arrow input) come out the same, so the token
                    # (applied per block) deduplicates every one of them
                    "max_threads": 1,
                },
            )
        self.store.insert_arrow(_PROGRESS_INSERT, self._progress_rows(consumer, batch, 1))
