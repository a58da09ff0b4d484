"""tests/projection_reset.py leaves what a drop and migrate leaves: empty projections, a
table a test dropped or altered built again, a deduplication token usable again."""

from __future__ import annotations

from millrace.projections.migrations import PROJECTION_TABLES
from millrace.projections.store.chdb import ChdbStore
from tests.projection_reset import empty_projections, schema_of

READING = (
    "INSERT INTO millrace.readings (identity, signal, ts, value) "
    "SETTINGS insert_deduplication_token = 'reset-test' "
    "SELECT 'reset', 's', toDateTime64(1, 6), 1.5"
)


def count(store: ChdbStore, table: str) -> int:
    return int(store.execute(f"SELECT count() FROM millrace.{table}").rows[0][0])


def test_rows_go_and_a_token_stores_again(store: ChdbStore) -> None:
    store.execute(READING)
    store.execute(READING)  # the same token: dropped as a copy
    assert count(store, "readings") == 1
    empty_projections(store)
    assert all(count(store, t) == 0 for t in PROJECTION_TABLES)
    store.execute(READING)
    assert count(store, "readings") == 1


def test_a_dropped_or_altered_table_is_built_again(store: ChdbStore) -> None:
    migrated = schema_of(store)
    store.execute("DROP TABLE millrace.alarms SYNC")
    store.execute("ALTER TABLE millrace.latest ADD COLUMN stray UInt8")
    assert schema_of(store) != migrated
    empty_projections(store)
    assert schema_of(store) == migrated
    store.execute("TRUNCATE TABLE millrace.schema_migrations")  # migrations forgotten
    empty_projections(store)
    assert schema_of(store) == migrated
