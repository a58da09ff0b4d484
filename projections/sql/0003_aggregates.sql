-- 1m / 5m / 1h aggregates. Processors write one partial row per (identity, signal,
-- bucket) per batch; ClickHouse merges partials, queries re-aggregate with GROUP BY.
-- first/last are min/max of (ts, value, text) tuples: merge-safe and order-free.
-- min/max/sum cover good-quality numbers only (num_count of them); count covers
-- every good-quality reading, booleans and strings included.
CREATE TABLE IF NOT EXISTS millrace.agg_1m
(
    identity  LowCardinality(String),
    signal    LowCardinality(String),
    bucket    DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    kind      SimpleAggregateFunction(max, UInt8),
    count     SimpleAggregateFunction(sum, UInt64),
    num_count SimpleAggregateFunction(sum, UInt64),
    sum       SimpleAggregateFunction(sum, Float64),
    min       SimpleAggregateFunction(min, Float64),
    max       SimpleAggregateFunction(max, Float64),
    first     SimpleAggregateFunction(min, Tuple(Int64, Float64, String)),
    last      SimpleAggregateFunction(max, Tuple(Int64, Float64, String))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (identity, signal, bucket)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS millrace.agg_5m AS millrace.agg_1m
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (identity, signal, bucket)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS millrace.agg_1h AS millrace.agg_1m
ENGINE = AggregatingMergeTree
PARTITION BY toYear(bucket)
ORDER BY (identity, signal, bucket)
SETTINGS non_replicated_deduplication_window = 10000;
