-- Latest value per (identity, signal): the row with the greatest ts wins (ties: the
-- one written last, i.e. the higher log offset). Read with FINAL.
CREATE TABLE IF NOT EXISTS millrace.latest
(
    identity LowCardinality(String),
    signal   LowCardinality(String),
    ts       DateTime64(6, 'UTC'),
    value    Float64,
    text     String,
    kind     UInt8,
    quality  Int32,
    received DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY (identity, signal);
