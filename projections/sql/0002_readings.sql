-- Raw readings: one row per reading in the log (a batch sent twice is two batches:
-- the log is the truth; idempotent ingest keys are future work).
-- Codecs chosen for telemetry: timestamps of a series are near-regular (DoubleDelta),
-- quantized sensor values change by small steps (Delta on the float bits, then ZSTD);
-- text/kind/quality are mostly constant per series and compress to almost nothing.
-- kind: 0 number, 1 boolean (value 0/1), 2 string (in text).
-- quality: 0 good, otherwise the source's status code; bad readings are kept here and
-- excluded from aggregates.
CREATE TABLE IF NOT EXISTS millrace.readings
(
    identity LowCardinality(String),
    signal   LowCardinality(String),
    ts       DateTime64(6, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    value    Float64 CODEC(Delta, ZSTD(3)),
    text     String DEFAULT '' CODEC(ZSTD(3)),
    kind     UInt8 DEFAULT 0 CODEC(ZSTD(1)),
    quality  Int32 DEFAULT 0 CODEC(ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (identity, signal, ts)
SETTINGS non_replicated_deduplication_window = 10000;
