-- Checkpoints of the engine's own stateful stages that are not projections (the alarm
-- runner): the log positions they consumed up to, their state at that point and the
-- events of that step still to be appended (outbox), saved together in one row so a
-- restart resumes exactly there. The highest version wins.
CREATE TABLE IF NOT EXISTS millrace.checkpoints
(
    name       String,
    version    UInt64,
    positions  String,
    state      String CODEC(ZSTD(3)),
    outbox     String CODEC(ZSTD(3)),
    updated_us Int64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY name
SETTINGS non_replicated_deduplication_window = 1000;
