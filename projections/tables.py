"""Every projection table in one place: the rows the pipeline writes to it
(``pipeline.tables``: Arrow schema, key and version columns), the columns ClickHouse
stores, and the ``INSERT ... SELECT`` that turns the one into the other.

The stored columns repeat what the migrations (``projections/sql``) create, as
``DESCRIBE TABLE`` reports them; ``tests/projections/test_tables.py`` compares every
declaration with a migrated chDB, so a migration that changes a table must change its
declaration here too. The writer, the checkpoint store and the state reader take their
SQL and column lists from here; no other module builds an insert for these tables.
Reading the value-kind columns (value, text, kind) back is the value-kind codec's job
(``TableRows.value_kind`` marks the tables that hold them).

Longer than 400 lines on purpose: it is data, one declaration per table for 19 tables,
and reading them side by side is the point.
"""

from __future__ import annotations

from dataclasses import dataclass

from millrace.pipeline.tables import TABLES as ROWS
from millrace.pipeline.tables import TableRows

Columns = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ProjectionTable:
    """One table: what the pipeline writes, what ClickHouse stores, how it gets there."""

    rows: TableRows
    #: (name, ClickHouse type) as DESCRIBE TABLE shows them
    columns: Columns
    #: INSERT ... SELECT from an Arrow table bound as ``{input}``
    insert: str

    @property
    def name(self) -> str:
        return self.rows.name


def _columns(text: str) -> Columns:
    """``name Type`` per line."""
    out = []
    for line in text.strip().splitlines():
        name, type_ = line.split(None, 1)
        out.append((name, type_.strip()))
    return tuple(out)


def _by_name(table: str) -> str:
    """An insert whose rows are the stored columns, taken by name."""
    cols = ", ".join(f.name for f in ROWS[table].schema)
    return f"INSERT INTO millrace.{table} ({cols}) SELECT {cols} FROM {{input}}"


_AGG_COLUMNS = _columns(
    """
        identity  LowCardinality(String)
        signal    LowCardinality(String)
        bucket    DateTime('UTC')
        kind      SimpleAggregateFunction(max, UInt8)
        count     SimpleAggregateFunction(sum, UInt64)
        num_count SimpleAggregateFunction(sum, UInt64)
        sum       SimpleAggregateFunction(sum, Float64)
        min       SimpleAggregateFunction(min, Float64)
        max       SimpleAggregateFunction(max, Float64)
        first     SimpleAggregateFunction(min, Tuple(Int64, Float64, String))
        last      SimpleAggregateFunction(max, Tuple(Int64, Float64, String))
        int_count SimpleAggregateFunction(sum, UInt64)
        imin      SimpleAggregateFunction(min, Int64)
        imax      SimpleAggregateFunction(max, Int64)
    """
)

#: every projection table, by name
TABLES: dict[str, ProjectionTable] = {
    t.name: t
    for t in (
        ProjectionTable(
            ROWS["readings"],
            _columns(
                """
                identity LowCardinality(String)
                signal   LowCardinality(String)
                ts       DateTime64(6, 'UTC')
                value    Float64
                text     String
                kind     UInt8
                quality  Int32
                """
            ),
            """INSERT INTO millrace.readings
    SELECT identity, signal, fromUnixTimestamp64Micro(ts, 'UTC'), value, text, kind, quality
    FROM {input}""",
        ),
        ProjectionTable(
            ROWS["latest"],
            _columns(
                """
                identity LowCardinality(String)
                signal   LowCardinality(String)
                ts       DateTime64(6, 'UTC')
                value    Float64
                text     String
                kind     UInt8
                quality  Int32
                received DateTime64(6, 'UTC')
                """
            ),
            """INSERT INTO millrace.latest
    SELECT identity, signal, fromUnixTimestamp64Micro(ts, 'UTC'), value, text, kind, quality,
           fromUnixTimestamp64Micro(received, 'UTC')
    FROM {input}""",
        ),
        ProjectionTable(
            ROWS["agg_1m"],
            _AGG_COLUMNS,
            """INSERT INTO millrace.agg_1m
    SELECT identity, signal, toDateTime(bucket, 'UTC'), kind, count, num_count,
           ifNull(sum, 0), ifNull(min, inf), ifNull(max, -inf),
           tuple(first_ts, first_value, first_text), tuple(last_ts, last_value, last_text),
           int_count, ifNull(imin, 9223372036854775807), ifNull(imax, -9223372036854775808)
    FROM {input}""",
        ),
        ProjectionTable(
            ROWS["agg_5m"],
            _AGG_COLUMNS,
            """INSERT INTO millrace.agg_5m
    SELECT identity, signal, toDateTime(bucket, 'UTC'), kind, count, num_count,
           ifNull(sum, 0), ifNull(min, inf), ifNull(max, -inf),
           tuple(first_ts, first_value, first_text), tuple(last_ts, last_value, last_text),
           int_count, ifNull(imin, 9223372036854775807), ifNull(imax, -9223372036854775808)
    FROM {input}""",
        ),
        ProjectionTable(
            ROWS["agg_1h"],
            _AGG_COLUMNS,
            """INSERT INTO millrace.agg_1h
    SELECT identity, signal, toDateTime(bucket, 'UTC'), kind, count, num_count,
           ifNull(sum, 0), ifNull(min, inf), ifNull(max, -inf),
           tuple(first_ts, first_value, first_text), tuple(last_ts, last_value, last_text),
           int_count, ifNull(imin, 9223372036854775807), ifNull(imax, -9223372036854775808)
    FROM {input}""",
        ),
        ProjectionTable(
            ROWS["progress"],
            _columns(
                """
                consumer     LowCardinality(String)
                topic        LowCardinality(String)
                partition    UInt32
                batch_seq    UInt64
                start_offset Int64
                end_offset   Int64
                committed    UInt8
                version      UInt64
                written_at   DateTime64(6, 'UTC')
                """
            ),
            _by_name("progress"),
        ),
        ProjectionTable(
            ROWS["deadletter"],
            _columns(
                """
                ts               DateTime64(6, 'UTC')
                source_topic     LowCardinality(String)
                source_partition Int32
                source_offset    Int64
                dedup_key        String
                stage            LowCardinality(String)
                error_type       LowCardinality(String)
                reason           String
                key              String
                payload          String
                dl_partition     Int32
                dl_offset        Int64
                """
            ),
            """INSERT INTO millrace.deadletter
    SELECT fromUnixTimestamp64Micro(ts_us, 'UTC'), source_topic, source_partition,
           source_offset, dedup_key, stage, error_type, reason, key, payload,
           dl_partition, dl_offset
    FROM {input}""",
        ),
        ProjectionTable(
            ROWS["identities"],
            _columns(
                """
                identity              String
                version               UInt64
                present               UInt8
                created_us            Int64
                updated_us            Int64
                status                LowCardinality(String)
                locked_from           LowCardinality(String)
                auth_type             LowCardinality(String)
                credential_hash       String
                credential_expires_us Int64
                provision_until_us    Int64
                provisioned_us        Int64
                lastip                String
                connected             UInt8
                connected_us          Int64
                disconnected_us       Int64
                inactivity_timeout_s  UInt32
                attributes            Map(String, String)
                tags                  Map(String, Array(String))
                set_values            Map(String, String)
                set_ts                Map(String, Int64)
                set_by                Map(String, String)
                acked_ts              Map(String, Int64)
                timed_out_ts          Map(String, Int64)
                stale_ts              Map(String, Int64)
                """
            ),
            _by_name("identities"),
        ),
        ProjectionTable(
            ROWS["identity_seen"],
            _columns(
                """
                identity  String
                lastseen  SimpleAggregateFunction(max, Int64)
                firstseen SimpleAggregateFunction(min, Int64)
                lastip    AggregateFunction(argMax, String, Int64)
                batches   SimpleAggregateFunction(sum, UInt64)
                """
            ),
            """INSERT INTO millrace.identity_seen
    SELECT identity, max(r), min(r), argMaxState(i, r), count()
    FROM (SELECT assumeNotNull(identity) AS identity, assumeNotNull(received) AS r,
                 ifNull(ip, '') AS i FROM {input})
    GROUP BY identity""",
        ),
        ProjectionTable(
            ROWS["resource_defs"],
            _columns(
                """
                name       String
                version    UInt64
                present    UInt8
                definition String
                updated_us Int64
                updated_by String
                """
            ),
            _by_name("resource_defs"),
        ),
        ProjectionTable(
            ROWS["device_metrics"],
            _columns(
                """
                metric LowCardinality(String)
                bucket DateTime('UTC')
                count  SimpleAggregateFunction(sum, UInt64)
                sum    SimpleAggregateFunction(sum, Float64)
                min    SimpleAggregateFunction(min, Float64)
                max    SimpleAggregateFunction(max, Float64)
                """
            ),
            """INSERT INTO millrace.device_metrics
    SELECT metric, toStartOfMinute(fromUnixTimestamp64Micro(t, 'UTC')) AS b,
           count(), sum(v), min(v), max(v)
    FROM (SELECT assumeNotNull(metric) AS metric, assumeNotNull(ts) AS t,
                 assumeNotNull(value) AS v FROM {input})
    GROUP BY metric, b""",
        ),
        ProjectionTable(
            ROWS["alarms"],
            _columns(
                """
                alarm_id         String
                version          UInt64
                rule_id          String
                type             LowCardinality(String)
                identity         String
                signal           String
                priority         UInt8
                message          String
                trigger_value    String
                state            LowCardinality(String)
                raised_us        Int64
                cleared_us       Int64
                clear_value      String
                requires_ack     UInt8
                mgmt_status      LowCardinality(String)
                ack_user         String
                ack_us           Int64
                ack_note         String
                discard_user     String
                discard_us       Int64
                discard_note     String
                annotation_count UInt32
                last_annotation  String
                updated_us       Int64
                """
            ),
            _by_name("alarms"),
        ),
        ProjectionTable(
            ROWS["alarm_annotations"],
            _columns(
                """
                alarm_id String
                seq      UInt64
                ts_us    Int64
                user     String
                text     String
                """
            ),
            _by_name("alarm_annotations"),
        ),
        ProjectionTable(
            ROWS["alarm_rules"],
            _columns(
                """
                rule_id    String
                version    UInt64
                present    UInt8
                kind       LowCardinality(String)
                type       String
                priority   UInt8
                enabled    UInt8
                definition String
                updated_us Int64
                updated_by String
                """
            ),
            _by_name("alarm_rules"),
        ),
        ProjectionTable(
            ROWS["resource_states"],
            _columns(
                """
                resource_id         String
                version             UInt64
                service_id          LowCardinality(String)
                resource_type       LowCardinality(String)
                desired_state       LowCardinality(String)
                current_state       LowCardinality(String)
                deviated            UInt8
                info                String
                runner              LowCardinality(String)
                ts_us               Int64
                since_us            Int64
                deviated_since_us   Int64
                metrics             Map(String, Float64)
                connect_errors      Float64
                base_version        UInt64
                base_connect_errors Float64
                base_ts_us          Int64
                """
            ),
            _by_name("resource_states"),
        ),
        ProjectionTable(
            ROWS["resource_runners"],
            _columns(
                """
                runner      String
                last_us     SimpleAggregateFunction(max, Int64)
                first_us    SimpleAggregateFunction(min, Int64)
                heartbeat   AggregateFunction(argMax, Tuple(Float64, String), Int64)
                service_ids SimpleAggregateFunction(groupUniqArrayArray, Array(String))
                """
            ),
            """INSERT INTO millrace.resource_runners
    SELECT runner, max(t), min(t), argMaxState(tuple(iv, st), hb), groupUniqArray(sid)
    FROM (SELECT assumeNotNull(runner) AS runner, assumeNotNull(ts_us) AS t,
                 assumeNotNull(heartbeat_ts) AS hb, assumeNotNull(interval_s) AS iv,
                 ifNull(state, '') AS st, ifNull(service_id, '') AS sid FROM {input})
    GROUP BY runner""",
        ),
        ProjectionTable(
            ROWS["audits"],
            _columns(
                """
                ts          DateTime64(6, 'UTC')
                audit_id    String
                actor       String
                actor_role  LowCardinality(String)
                action      LowCardinality(String)
                target_type LowCardinality(String)
                target_id   String
                before      String
                after       String
                status      LowCardinality(String)
                request_id  String
                source_ip   String
                log_offset  Int64
                """
            ),
            """INSERT INTO millrace.audits
    SELECT fromUnixTimestamp64Micro(ts_us, 'UTC'), audit_id, actor, actor_role, action,
           target_type, target_id, before, after, status, request_id, source_ip, log_offset
    FROM {input}""",
        ),
        ProjectionTable(
            ROWS["checkpoints"],
            _columns(
                """
                name       String
                version    UInt64
                positions  String
                state      String
                outbox     String
                updated_us Int64
                """
            ),
            _by_name("checkpoints"),
        ),
        ProjectionTable(
            ROWS["applied_batches"],
            _columns(
                """
                partition  UInt32
                batch_key  String
                origin     String
                identity   LowCardinality(String)
                applied_us Int64
                expires_us Int64
                """
            ),
            _by_name("applied_batches"),
        ),
        ProjectionTable(
            ROWS["tasks"],
            _columns(
                """
                task_id      String
                version      UInt64
                kind         LowCardinality(String)
                status       LowCardinality(String)
                actor        String
                params       String
                created_us   Int64
                started_us   Int64
                updated_us   Int64
                finished_us  Int64
                attempts     UInt32
                error        String
                counts       Map(String, Int64)
                progress     Map(String, Int64)
                files_done   Map(String, String)
                files_failed Map(String, String)
                """
            ),
            _by_name("tasks"),
        ),
        ProjectionTable(
            ROWS["services"],
            _columns(
                """
                service_id   String
                version      UInt64
                status       LowCardinality(String)
                enabled      UInt8
                description  String
                text         String
                parameters   Map(String, String)
                runners      Array(String)
                actor        String
                revision     UInt32
                installed_us Int64
                updated_us   Int64
                """
            ),
            _by_name("services"),
        ),
    )
}

#: the inserts the writer runs, by table
INSERTS: dict[str, str] = {name: t.insert for name, t in TABLES.items()}

#: state tables a StatefulProcessor may read (table -> its columns)
STATE_TABLES: dict[str, tuple[str, ...]] = {
    name: tuple(f.name for f in t.rows.schema) for name, t in TABLES.items() if t.rows.state
}
