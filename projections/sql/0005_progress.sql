-- Where each consumer stands in each topic-partition, written by the projection writer
-- in the same store as the rows: an intent row (committed = 0) before a batch's
-- inserts and a commit row after them. A batch left uncommitted by a crash is redone
-- over exactly the same offset ranges, so its inserts carry the same
-- insert_deduplication_token and ClickHouse drops the copies.
CREATE TABLE IF NOT EXISTS millrace.progress
(
    consumer     LowCardinality(String),
    topic        LowCardinality(String),
    partition    UInt32,
    batch_seq    UInt64,
    start_offset Int64,
    end_offset   Int64,
    committed    UInt8,
    version      UInt64,
    written_at   DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (consumer, topic, partition);
