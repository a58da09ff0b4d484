"""Every table declaration (projections.tables, pipeline.tables) against a migrated chDB:
the stored columns and their types as DESCRIBE TABLE reports them, the sorting key,
the version column; every table the migrations create is declared; each insert takes
the rows the pipeline declares for it."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from millrace.projections.store.chdb import ChdbStore
from millrace.projections.tables import TABLES

#: created by the migrations but not written by the pipeline
UNDECLARED = {"schema_migrations"}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_declared_columns_match_describe(chdb_store: ChdbStore, name: str) -> None:
    rows = chdb_store.execute(f"DESCRIBE TABLE millrace.{name}").rows
    assert tuple((str(r[0]), str(r[1])) for r in rows) == TABLES[name].columns


@pytest.mark.parametrize("name", sorted(TABLES))
def test_declared_key_and_version_match_the_engine(chdb_store: ChdbStore, name: str) -> None:
    [(sorting_key, engine_full)] = chdb_store.execute(
        "SELECT sorting_key, engine_full FROM system.tables "
        "WHERE database = 'millrace' AND name = {n:String}",
        {"n": name},
    ).rows
    spec = TABLES[name].rows
    assert tuple(k.strip() for k in str(sorting_key).split(",")) == spec.key
    m = re.match(r"ReplacingMergeTree\((\w+)\)", str(engine_full))
    assert (m.group(1) if m else None) == spec.version


def test_every_table_is_declared(chdb_store: ChdbStore) -> None:
    rows = chdb_store.execute(
        "SELECT name FROM system.tables WHERE database = 'millrace' AND engine != 'View'"
    ).rows
    assert {str(r[0]) for r in rows} - UNDECLARED == set(TABLES)


def test_rows_schemas_cover_what_the_inserts_select() -> None:
    for name, table in TABLES.items():
        assert table.insert.startswith(f"INSERT INTO millrace.{name}")
        assert "{input}" in table.insert
        fields = set(table.rows.schema.names)
        # a by-name insert selects exactly the rows' columns, all of them stored
        stored = {c for c, _ in table.columns}
        if "(" + ", ".join(table.rows.schema.names) + ")" in table.insert:
            assert fields <= stored, name


def _sample(t: pa.DataType) -> object:
    if pa.types.is_string(t):
        return "x"
    if pa.types.is_floating(t):
        return 1.5
    if pa.types.is_integer(t):
        return 1
    if pa.types.is_map(t) or pa.types.is_list(t):
        return []
    raise AssertionError(f"no sample for {t}")


@pytest.mark.parametrize("name", sorted(TABLES))
def test_insert_takes_a_row_of_the_declared_rows(store: ChdbStore, name: str) -> None:
    schema = TABLES[name].rows.schema
    store.execute(f"TRUNCATE TABLE millrace.{name}")  # checkpoints outlive drop_projections
    row = pa.Table.from_pylist([{f.name: _sample(f.type) for f in schema}], schema=schema)
    store.insert_arrow(TABLES[name].insert, row)
    assert store.execute(f"SELECT count() FROM millrace.{name}").rows[0][0] == 1
