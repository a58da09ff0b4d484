-- The millrace database and the migration ledger.
CREATE DATABASE IF NOT EXISTS millrace;

CREATE TABLE IF NOT EXISTS millrace.schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
ORDER BY version;
