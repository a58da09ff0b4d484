-- Resource states, folded from the status topic by pipeline.processors.status. One row
-- per resource holding its state after the event at log offset version - 1 (all events
-- of a resource share one partition, keyed by resource_id); the row with the greatest
-- version wins (read with FINAL). deviated = desired_state != current_state; an event
-- observed before the row's ts_us (delivered late) leaves the row as it is;
-- since_us: when current_state last changed; deviated_since_us: when the resource last
-- became deviated (0 while it is not). connect_errors is the connector's cumulative
-- counter of failed connection attempts as last reported; base_version,
-- base_connect_errors and base_ts_us are the state before the batch that wrote the
-- row, so that a redone batch counts the same connection_error device metrics.
CREATE TABLE IF NOT EXISTS millrace.resource_states
(
    resource_id         String,
    version             UInt64,
    service_id          LowCardinality(String),
    resource_type       LowCardinality(String),
    desired_state       LowCardinality(String),
    current_state       LowCardinality(String),
    deviated            UInt8,
    info                String,
    runner              LowCardinality(String),
    ts_us               Int64,
    since_us            Int64,
    deviated_since_us   Int64,
    metrics             Map(String, Float64),
    connect_errors      Float64,
    base_version        UInt64,
    base_connect_errors Float64,
    base_ts_us          Int64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY resource_id
SETTINGS non_replicated_deduplication_window = 10000;

-- Signs of life per runner (the runner field of status events). Partial states merge
-- across inserts, and every column is idempotent (max, min, argMax, set union): the
-- latest event wins by time whatever order rows arrive in, and an insert applied twice
-- changes nothing (no counts: deduplication tokens are not relied upon for exactness
-- here). heartbeat holds (interval_s,
-- state) of the latest explicit heartbeat (resource_type 'runner'); rows that are not
-- one carry the smallest Int64 as their time, so they never win it.
CREATE TABLE IF NOT EXISTS millrace.resource_runners
(
    runner      String,
    last_us     SimpleAggregateFunction(max, Int64),
    first_us    SimpleAggregateFunction(min, Int64),
    heartbeat   AggregateFunction(argMax, Tuple(Float64, String), Int64),
    service_ids SimpleAggregateFunction(groupUniqArrayArray, Array(String))
)
ENGINE = AggregatingMergeTree
ORDER BY runner
SETTINGS non_replicated_deduplication_window = 10000;
