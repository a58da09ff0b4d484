-- Alarms, folded from the alarms topic by pipeline.processors.alarms. One row per alarm
-- holding its whole state after the event at log offset version - 1 (all events of an
-- alarm share one partition, keyed by alarm id); the row with the greatest version
-- wins (read with FINAL). state: active | cleared; mgmt_status: pending | acknowledged
-- | discarded. trigger_value and clear_value are JSON text (clear_value '' while
-- active); signal '' when the rule watches none; times are epoch microseconds, 0 when
-- not (yet) happened. last_annotation identifies the last annotation applied, so a
-- repeated append of it is not counted twice.
-- The skip indexes cover the list filters on columns an alarm never changes
-- (identity, signal, type, priority, raised time): a granule skipped for them holds no
-- version of a matching alarm, so they stay exact under FINAL.
CREATE TABLE IF NOT EXISTS millrace.alarms
(
    alarm_id         String,
    version          UInt64,
    rule_id          String,
    type             LowCardinality(String),
    identity         String,
    signal           String,
    priority         UInt8,
    message          String,
    trigger_value    String,
    state            LowCardinality(String),
    raised_us        Int64,
    cleared_us       Int64,
    clear_value      String,
    requires_ack     UInt8,
    mgmt_status      LowCardinality(String),
    ack_user         String,
    ack_us           Int64,
    ack_note         String,
    discard_user     String,
    discard_us       Int64,
    discard_note     String,
    annotation_count UInt32,
    last_annotation  String,
    updated_us       Int64,
    INDEX idx_identity identity TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_signal signal TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_type type TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_priority priority TYPE minmax GRANULARITY 4,
    INDEX idx_raised raised_us TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree(version)
ORDER BY alarm_id
SETTINGS non_replicated_deduplication_window = 10000;

-- Annotations of alarms, in order: seq is the log position (offset + 1) of the
-- ANNOTATED event, increasing within an alarm. Rows are written only by the fold, once
-- per accepted annotation; the replacing engine also collapses a row written twice.
CREATE TABLE IF NOT EXISTS millrace.alarm_annotations
(
    alarm_id  String,
    seq       UInt64,
    ts_us     Int64,
    user      String,
    text      String
)
ENGINE = ReplacingMergeTree
ORDER BY (alarm_id, seq)
SETTINGS non_replicated_deduplication_window = 10000;

-- Alarm rules (RULE_DEFINED / RULE_REMOVED events of the alarms topic); the greatest
-- version wins, a removed rule keeps a tombstone (present = 0). definition is the JSON
-- of pipeline.alarms.rules.AlarmRule, validated by the processor.
CREATE TABLE IF NOT EXISTS millrace.alarm_rules
(
    rule_id     String,
    version     UInt64,
    present     UInt8,
    kind        LowCardinality(String),
    type        String,
    priority    UInt8,
    enabled     UInt8,
    definition  String,
    updated_us  Int64,
    updated_by  String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY rule_id
SETTINGS non_replicated_deduplication_window = 10000;
