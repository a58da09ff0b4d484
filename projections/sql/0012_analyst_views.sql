-- Views for analyst SQL (projections.sandbox): the tables that hold secrets are not on
-- the sandbox's allow-list; analysts read these instead. Columns are listed one by one
-- (never SELECT *, which a view expands when queried: a secret column added to the
-- table later would appear here by itself).
--
-- identities without credential_hash, current state (the greatest version per identity;
-- deleted identities keep their tombstone row, present = 0).
CREATE VIEW IF NOT EXISTS millrace.identities_public AS
SELECT identity, version, present, created_us, updated_us, status, locked_from, auth_type,
       credential_expires_us, provision_until_us, provisioned_us, lastip, connected,
       connected_us, disconnected_us, inactivity_timeout_s, attributes, tags, set_values,
       set_ts, set_by, acked_ts, timed_out_ts, stale_ts
FROM millrace.identities FINAL;

-- dead letters without the payloads of the topics that carry credential hashes or the
-- audit trail (a rejected identity event's payload holds its credential_hash).
CREATE VIEW IF NOT EXISTS millrace.deadletter_public AS
SELECT ts, source_topic, source_partition, source_offset, dedup_key, stage, error_type,
       reason, key,
       if(source_topic IN ('identity', 'audit', 'access'), '', payload) AS payload,
       dl_partition, dl_offset
FROM millrace.deadletter FINAL;
