-- The audit trail (pipeline.processors.audit): every write through the API, who made
-- it (actor, role, source address), what it did to which object, the object before
-- and after (JSON, credentials masked) and the outcome (ok or the error code).
-- Keyed by audit id: an event appended twice collapses under FINAL.
CREATE TABLE IF NOT EXISTS millrace.audits
(
    ts          DateTime64(6, 'UTC'),
    audit_id    String,
    actor       String,
    actor_role  LowCardinality(String),
    action      LowCardinality(String),
    target_type LowCardinality(String),
    target_id   String,
    before      String CODEC(ZSTD(3)),
    after       String CODEC(ZSTD(3)),
    status      LowCardinality(String),
    request_id  String,
    source_ip   String,
    log_offset  Int64
)
ENGINE = ReplacingMergeTree
ORDER BY (toDate(ts), audit_id)
SETTINGS non_replicated_deduplication_window = 10000;
