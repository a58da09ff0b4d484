-- Projection of the deadletter topic: events that could not be decoded or applied,
-- with the reason. A failure found while processing a batch carries its source
-- position; if that batch is retried after a crash the same failure is appended
-- again, so rows are keyed by the source position (dedup_key = '') and collapse under
-- FINAL. Failures without a source position (a connector's undecodable payload) are
-- keyed by their own place in the deadletter topic.
CREATE TABLE IF NOT EXISTS millrace.deadletter
(
    ts               DateTime64(6, 'UTC'),
    source_topic     LowCardinality(String),
    source_partition Int32,
    source_offset    Int64,
    dedup_key        String,
    stage            LowCardinality(String),
    error_type       LowCardinality(String),
    reason           String,
    key              String,
    payload          String CODEC(ZSTD(3)),
    dl_partition     Int32,
    dl_offset        Int64
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, source_offset, dedup_key);
