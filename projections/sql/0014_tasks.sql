-- Long-running tasks (restore, replay): one row per task, the fold of its TaskEvents
-- (pipeline.tasks.state, written by pipeline.processors.tasks). version = log offset + 1
-- of the last event folded in: the newest row of a task wins under FINAL.
-- files_done: file -> its counts as JSON text; files_failed: file -> the reason.
CREATE TABLE IF NOT EXISTS millrace.tasks
(
    task_id      String,
    version      UInt64,
    kind         LowCardinality(String),
    status       LowCardinality(String),
    actor        String,
    params       String CODEC(ZSTD(3)),
    created_us   Int64,
    started_us   Int64,
    updated_us   Int64,
    finished_us  Int64,
    attempts     UInt32,
    error        String,
    counts       Map(String, Int64),
    progress     Map(String, Int64),
    files_done   Map(String, String) CODEC(ZSTD(3)),
    files_failed Map(String, String) CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(version)
ORDER BY task_id
SETTINGS non_replicated_deduplication_window = 10000;
