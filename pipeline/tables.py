"""The rows of every projection table, as the pipeline hands them to a sink.

One declaration per table: the Arrow schema of the rows a processor (or a stage)
emits for it, its key columns (the table's sorting key: the rows a ReplacingMergeTree
folds into one) and its version column (the one that decides which of them wins).

Why here and not in ``projections``: processors are pure and must not import the
projections package (``api -> projections -> pipeline``); they build their Arrow
tables from these schemas. What only the store needs — the stored ClickHouse column
types and the ``INSERT ... SELECT`` that turns these rows into stored ones — is
declared beside each of these in ``projections.tables``, which also checks, in a test,
that every declaration matches what ``DESCRIBE TABLE`` reports. The rows and the stored
columns differ where the insert converts (times in µs become DateTime64, aggregates
become partial states): the rows are the pipeline's contract, the columns the store's.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class TableRows:
    """What the pipeline writes to one projection table."""

    name: str
    #: the rows a processor or stage emits; the insert selects from them by name
    schema: pa.Schema
    #: sorting key columns of the stored table
    key: tuple[str, ...]
    #: ReplacingMergeTree version column, if the table has one
    version: str | None = None
    #: a processor keeps its state in this table (read back through a StateReader)
    state: bool = False
    #: value/text/kind columns hold readings through the value-kind codec
    value_kind: bool = False


_MAP_S = pa.map_(pa.string(), pa.string())
_MAP_I = pa.map_(pa.string(), pa.int64())

READINGS_SCHEMA = pa.schema(
    [
        ("identity", pa.string()),
        ("signal", pa.string()),
        ("ts", pa.int64()),
        ("value", pa.float64()),
        ("text", pa.string()),
        ("kind", pa.uint8()),
        ("quality", pa.int32()),
        ("received", pa.int64()),
    ]
)

AGG_SCHEMA = pa.schema(
    [
        ("identity", pa.string()),
        ("signal", pa.string()),
        ("bucket", pa.int64()),  # seconds
        ("kind", pa.uint8()),
        ("count", pa.uint64()),
        ("num_count", pa.uint64()),
        ("sum", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("first_ts", pa.int64()),
        ("first_value", pa.float64()),
        ("first_text", pa.string()),
        ("last_ts", pa.int64()),
        ("last_value", pa.float64()),
        ("last_text", pa.string()),
        # INT readings (pipeline.values): how many, and their exact min and max
        ("int_count", pa.uint64()),
        ("imin", pa.int64()),
        ("imax", pa.int64()),
    ]
)

SEEN_SCHEMA = pa.schema([("identity", pa.string()), ("received", pa.int64()), ("ip", pa.string())])

METRICS_SCHEMA = pa.schema([("metric", pa.string()), ("ts", pa.int64()), ("value", pa.float64())])

PROGRESS_SCHEMA = pa.schema(
    [
        ("consumer", pa.string()),
        ("topic", pa.string()),
        ("partition", pa.uint32()),
        ("batch_seq", pa.uint64()),
        ("start_offset", pa.int64()),
        ("end_offset", pa.int64()),
        ("committed", pa.uint8()),
        ("version", pa.uint64()),
    ]
)

DEADLETTER_SCHEMA = pa.schema(
    [
        ("ts_us", pa.int64()),
        ("source_topic", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
        ("dedup_key", pa.string()),
        ("stage", pa.string()),
        ("error_type", pa.string()),
        ("reason", pa.string()),
        ("key", pa.string()),
        ("payload", pa.string()),
        ("dl_partition", pa.int32()),
        ("dl_offset", pa.int64()),
    ]
)

IDENTITIES_SCHEMA = pa.schema(
    [
        ("identity", pa.string()),
        ("version", pa.uint64()),
        ("present", pa.uint8()),
        ("created_us", pa.int64()),
        ("updated_us", pa.int64()),
        ("status", pa.string()),
        ("locked_from", pa.string()),
        ("auth_type", pa.string()),
        ("credential_hash", pa.string()),
        ("credential_expires_us", pa.int64()),
        ("provision_until_us", pa.int64()),
        ("provisioned_us", pa.int64()),
        ("lastip", pa.string()),
        ("connected", pa.uint8()),
        ("connected_us", pa.int64()),
        ("disconnected_us", pa.int64()),
        ("inactivity_timeout_s", pa.uint32()),
        ("attributes", _MAP_S),
        ("tags", pa.map_(pa.string(), pa.list_(pa.string()))),
        ("set_values", _MAP_S),
        ("set_ts", _MAP_I),
        ("set_by", _MAP_S),
        ("acked_ts", _MAP_I),
        ("timed_out_ts", _MAP_I),
        ("stale_ts", _MAP_I),
    ]
)

RESOURCE_DEFS_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("version", pa.uint64()),
        ("present", pa.uint8()),
        ("definition", pa.string()),
        ("updated_us", pa.int64()),
        ("updated_by", pa.string()),
    ]
)

ALARMS_SCHEMA = pa.schema(
    [
        ("alarm_id", pa.string()),
        ("version", pa.uint64()),
        ("rule_id", pa.string()),
        ("type", pa.string()),
        ("identity", pa.string()),
        ("signal", pa.string()),
        ("priority", pa.uint8()),
        ("message", pa.string()),
        ("trigger_value", pa.string()),
        ("state", pa.string()),
        ("raised_us", pa.int64()),
        ("cleared_us", pa.int64()),
        ("clear_value", pa.string()),
        ("requires_ack", pa.uint8()),
        ("mgmt_status", pa.string()),
        ("ack_user", pa.string()),
        ("ack_us", pa.int64()),
        ("ack_note", pa.string()),
        ("discard_user", pa.string()),
        ("discard_us", pa.int64()),
        ("discard_note", pa.string()),
        ("annotation_count", pa.uint32()),
        ("last_annotation", pa.string()),
        ("updated_us", pa.int64()),
    ]
)

ANNOTATIONS_SCHEMA = pa.schema(
    [
        ("alarm_id", pa.string()),
        ("seq", pa.uint64()),
        ("ts_us", pa.int64()),
        ("user", pa.string()),
        ("text", pa.string()),
    ]
)

RULES_SCHEMA = pa.schema(
    [
        ("rule_id", pa.string()),
        ("version", pa.uint64()),
        ("present", pa.uint8()),
        ("kind", pa.string()),
        ("type", pa.string()),
        ("priority", pa.uint8()),
        ("enabled", pa.uint8()),
        ("definition", pa.string()),
        ("updated_us", pa.int64()),
        ("updated_by", pa.string()),
    ]
)

STATES_SCHEMA = pa.schema(
    [
        ("resource_id", pa.string()),
        ("version", pa.uint64()),
        ("service_id", pa.string()),
        ("resource_type", pa.string()),
        ("desired_state", pa.string()),
        ("current_state", pa.string()),
        ("deviated", pa.uint8()),
        ("info", pa.string()),
        ("runner", pa.string()),
        ("ts_us", pa.int64()),
        ("since_us", pa.int64()),
        ("deviated_since_us", pa.int64()),
        ("metrics", pa.map_(pa.string(), pa.float64())),
        ("connect_errors", pa.float64()),
        ("base_version", pa.uint64()),
        ("base_connect_errors", pa.float64()),
        ("base_ts_us", pa.int64()),
    ]
)

RUNNERS_SCHEMA = pa.schema(
    [
        ("runner", pa.string()),
        ("ts_us", pa.int64()),
        ("service_id", pa.string()),
        ("heartbeat_ts", pa.int64()),
        ("interval_s", pa.float64()),
        ("state", pa.string()),
    ]
)

AUDITS_SCHEMA = pa.schema(
    [
        ("ts_us", pa.int64()),
        ("audit_id", pa.string()),
        ("actor", pa.string()),
        ("actor_role", pa.string()),
        ("action", pa.string()),
        ("target_type", pa.string()),
        ("target_id", pa.string()),
        ("before", pa.string()),
        ("after", pa.string()),
        ("status", pa.string()),
        ("request_id", pa.string()),
        ("source_ip", pa.string()),
        ("log_offset", pa.int64()),
    ]
)

CHECKPOINTS_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("version", pa.uint64()),
        ("positions", pa.string()),
        ("state", pa.string()),
        ("outbox", pa.string()),
        ("updated_us", pa.int64()),
    ]
)

TASKS_SCHEMA = pa.schema(
    [
        ("task_id", pa.string()),
        ("version", pa.uint64()),
        ("kind", pa.string()),
        ("status", pa.string()),
        ("actor", pa.string()),
        ("params", pa.string()),
        ("created_us", pa.int64()),
        ("started_us", pa.int64()),
        ("updated_us", pa.int64()),
        ("finished_us", pa.int64()),
        ("attempts", pa.uint32()),
        ("error", pa.string()),
        ("counts", _MAP_I),
        ("progress", _MAP_I),
        ("files_done", _MAP_S),
        ("files_failed", _MAP_S),
    ]
)

#: services (pipeline/services/state.py): one row per service, the fold of its events
SERVICES_SCHEMA = pa.schema(
    [
        ("service_id", pa.string()),
        ("version", pa.uint64()),
        ("status", pa.string()),
        ("enabled", pa.uint8()),
        ("description", pa.string()),
        ("text", pa.string()),
        ("parameters", _MAP_S),
        ("runners", pa.list_(pa.string())),
        ("actor", pa.string()),
        ("revision", pa.uint32()),
        ("installed_us", pa.int64()),
        ("updated_us", pa.int64()),
    ]
)

#: batch ids the telemetry fold applied (pipeline/batches.py): partition, id, origin
APPLIED_BATCHES_SCHEMA = pa.schema(
    [
        ("partition", pa.uint32()),
        ("batch_key", pa.string()),
        ("origin", pa.string()),
        ("identity", pa.string()),
        ("applied_us", pa.int64()),
        ("expires_us", pa.int64()),
    ]
)

_AGG_KEY = ("identity", "signal", "bucket")

#: every projection table the pipeline writes, by name
TABLES: dict[str, TableRows] = {
    t.name: t
    for t in (
        TableRows("readings", READINGS_SCHEMA, ("identity", "signal", "ts"), value_kind=True),
        TableRows("latest", READINGS_SCHEMA, ("identity", "signal"), "ts", value_kind=True),
        TableRows("agg_1m", AGG_SCHEMA, _AGG_KEY, value_kind=True),
        TableRows("agg_5m", AGG_SCHEMA, _AGG_KEY, value_kind=True),
        TableRows("agg_1h", AGG_SCHEMA, _AGG_KEY, value_kind=True),
        TableRows("progress", PROGRESS_SCHEMA, ("consumer", "topic", "partition"), "version"),
        TableRows(
            "deadletter",
            DEADLETTER_SCHEMA,
            ("source_topic", "source_partition", "source_offset", "dedup_key"),
        ),
        TableRows("identities", IDENTITIES_SCHEMA, ("identity",), "version", state=True),
        TableRows("identity_seen", SEEN_SCHEMA, ("identity",)),
        TableRows("resource_defs", RESOURCE_DEFS_SCHEMA, ("name",), "version"),
        TableRows("device_metrics", METRICS_SCHEMA, ("metric", "bucket")),
        TableRows("alarms", ALARMS_SCHEMA, ("alarm_id",), "version", state=True),
        TableRows("alarm_annotations", ANNOTATIONS_SCHEMA, ("alarm_id", "seq")),
        TableRows("alarm_rules", RULES_SCHEMA, ("rule_id",), "version"),
        TableRows("resource_states", STATES_SCHEMA, ("resource_id",), "version", state=True),
        TableRows("resource_runners", RUNNERS_SCHEMA, ("runner",)),
        TableRows("audits", AUDITS_SCHEMA, ("toDate(ts)", "audit_id")),
        TableRows("checkpoints", CHECKPOINTS_SCHEMA, ("name",), "version"),
        TableRows("applied_batches", APPLIED_BATCHES_SCHEMA, ("partition", "batch_key")),
        TableRows("tasks", TASKS_SCHEMA, ("task_id",), "version", state=True),
        TableRows("services", SERVICES_SCHEMA, ("service_id",), "version", state=True),
    )
}
