-- Device registry, folded from the identity topic by pipeline.processors.identity.
-- One row per identity holding its whole state after the event at log offset
-- version - 1 (all events of an identity share one partition, keyed by identity);
-- the row with the greatest version wins (read with FINAL). A deleted identity keeps
-- a tombstone row (present = 0) so a replayed older event cannot resurrect it.
-- credential_hash is an argon2id hash; no endpoint returns it.
-- Per-resource desired state: set_values (JSON) with set_ts/set_by; a command is
-- acknowledged at acked_ts, timed out at timed_out_ts; stale_ts marks a resource that
-- went silent past its definition's timeout. Reported values are millrace.latest.
CREATE TABLE IF NOT EXISTS millrace.identities
(
    identity             String,
    version              UInt64,
    present              UInt8,
    created_us           Int64,
    updated_us           Int64,
    status               LowCardinality(String),
    locked_from          LowCardinality(String),
    auth_type            LowCardinality(String),
    credential_hash      String,
    credential_expires_us Int64,
    provision_until_us   Int64,
    provisioned_us       Int64,
    lastip               String,
    connected            UInt8,
    connected_us         Int64,
    disconnected_us      Int64,
    inactivity_timeout_s UInt32,
    attributes           Map(String, String),
    tags                 Map(String, Array(String)),
    set_values           Map(String, String),
    set_ts               Map(String, Int64),
    set_by               Map(String, String),
    acked_ts             Map(String, Int64),
    timed_out_ts         Map(String, Int64),
    stale_ts             Map(String, Int64)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY identity
SETTINGS non_replicated_deduplication_window = 10000;

-- When each identity last sent telemetry, and from where (folded by the telemetry
-- processor; partial states merge across batches).
CREATE TABLE IF NOT EXISTS millrace.identity_seen
(
    identity   String,
    lastseen   SimpleAggregateFunction(max, Int64),
    firstseen  SimpleAggregateFunction(min, Int64),
    lastip     AggregateFunction(argMax, String, Int64),
    batches    SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY identity
SETTINGS non_replicated_deduplication_window = 10000;

-- Resource definitions (identity "*" events of the identity topic); the greatest
-- version wins, removed ones keep a tombstone. definition is the JSON of
-- pipeline.identities.resources.ResourceDefinition.
CREATE TABLE IF NOT EXISTS millrace.resource_defs
(
    name        String,
    version     UInt64,
    present     UInt8,
    definition  String,
    updated_us  Int64,
    updated_by  String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY name
SETTINGS non_replicated_deduplication_window = 10000;

-- Device metrics in 1-minute buckets (5m/1h are sums of these): connection,
-- disconnection, connection_error, provisioning, publish_count, publish_size,
-- publish_resource_count.
CREATE TABLE IF NOT EXISTS millrace.device_metrics
(
    metric  LowCardinality(String),
    bucket  DateTime('UTC'),
    count   SimpleAggregateFunction(sum, UInt64),
    sum     SimpleAggregateFunction(sum, Float64),
    min     SimpleAggregateFunction(min, Float64),
    max     SimpleAggregateFunction(max, Float64)
)
ENGINE = AggregatingMergeTree
ORDER BY (metric, bucket)
SETTINGS non_replicated_deduplication_window = 10000;
