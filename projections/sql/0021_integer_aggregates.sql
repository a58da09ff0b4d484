-- Integers have a kind of their own from TelemetryBatch v5 on (kind 3 = INT, see
-- pipeline/values.py): the aggregates keep how many good INT readings a bucket has and
-- their exact minimum and maximum as Int64 (min/max stay the Float64 of every number).
-- The defaults are the neutral elements of min and max, so a bucket's partials written
-- before this migration merge with later ones unchanged. Columns go last: the inserts
-- (projections/tables.py) select them by position.
ALTER TABLE millrace.agg_1m
    ADD COLUMN IF NOT EXISTS int_count SimpleAggregateFunction(sum, UInt64) DEFAULT 0,
    ADD COLUMN IF NOT EXISTS imin SimpleAggregateFunction(min, Int64) DEFAULT 9223372036854775807,
    ADD COLUMN IF NOT EXISTS imax SimpleAggregateFunction(max, Int64) DEFAULT -9223372036854775808;

ALTER TABLE millrace.agg_5m
    ADD COLUMN IF NOT EXISTS int_count SimpleAggregateFunction(sum, UInt64) DEFAULT 0,
    ADD COLUMN IF NOT EXISTS imin SimpleAggregateFunction(min, Int64) DEFAULT 9223372036854775807,
    ADD COLUMN IF NOT EXISTS imax SimpleAggregateFunction(max, Int64) DEFAULT -9223372036854775808;

ALTER TABLE millrace.agg_1h
    ADD COLUMN IF NOT EXISTS int_count SimpleAggregateFunction(sum, UInt64) DEFAULT 0,
    ADD COLUMN IF NOT EXISTS imin SimpleAggregateFunction(min, Int64) DEFAULT 9223372036854775807,
    ADD COLUMN IF NOT EXISTS imax SimpleAggregateFunction(max, Int64) DEFAULT -9223372036854775808;
