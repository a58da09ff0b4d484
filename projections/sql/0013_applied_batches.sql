-- Batch ids the telemetry fold applied (pipeline/batches.py): a batch resent to the log
-- (HTTP retry with an Idempotency-Key, MQTT QoS 1 redelivery, store-and-forward resend,
-- a restore of what the projections hold) is dropped when its id was applied at another
-- origin (log position) that has not expired. Each row carries its own expiry (log time
-- + the idempotency window when it was applied), so a changed window needs no ALTER.
-- Ids are mostly random (about 16 bytes of entropy each); rows live one window.
CREATE TABLE IF NOT EXISTS millrace.applied_batches
(
    partition  UInt32,
    batch_key  String CODEC(ZSTD(3)),
    origin     String CODEC(ZSTD(3)),
    identity   LowCardinality(String),
    applied_us Int64 CODEC(ZSTD(3)),
    expires_us Int64 CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
ORDER BY (partition, batch_key)
TTL toDateTime(intDiv(expires_us, 1000000))
SETTINGS non_replicated_deduplication_window = 1000;
