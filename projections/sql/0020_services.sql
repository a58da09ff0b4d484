-- Services (commissioning files installed at runtime): one row per service, the fold of
-- its ServiceEvents (pipeline.services.state, written by pipeline.processors.services).
-- version = log offset + 1 of the last event folded in: the newest row wins under FINAL.
-- text: the file as given (parameters not substituted, ${ENV} references kept);
-- parameters: name -> value as JSON text; runners: empty = every runner.
CREATE TABLE IF NOT EXISTS millrace.services
(
    service_id   String,
    version      UInt64,
    status       LowCardinality(String),
    enabled      UInt8,
    description  String,
    text         String CODEC(ZSTD(3)),
    parameters   Map(String, String),
    runners      Array(String),
    actor        String,
    revision     UInt32,
    installed_us Int64,
    updated_us   Int64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY service_id
SETTINGS non_replicated_deduplication_window = 10000;
