"""The cluster DDL generated from projections/sql (projections.cluster)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from millrace.projections.cluster import (
    ClusterSqlError,
    cluster_statement,
    cluster_statements,
    render_cluster_sql,
)
from millrace.projections.migrations import (
    PROJECTION_TABLES,
    SQL_DIR,
    drop_projections,
    load_migrations,
    migrate,
)
from millrace.projections.store.base import ProjectionStore, QueryResult
from millrace.projections.store.chdb import ChdbStore

CLUSTER = "millrace_cluster"
ON = f"ON CLUSTER '{CLUSTER}'"


def _all() -> list[str]:
    return [s for _, _, stmts in cluster_statements(CLUSTER) for s in stmts]


def _source_tables() -> list[str]:
    names = []
    for mig in load_migrations():
        for stmt in mig.statements:
            m = re.match(r"CREATE TABLE IF NOT EXISTS millrace\.(\w+)", stmt)
            if m:
                names.append(m.group(1))
    return names


def _local(name: str) -> str:
    (stmt,) = [
        s for s in _all() if s.startswith(f"CREATE TABLE IF NOT EXISTS millrace.{name}_local ")
    ]
    return stmt


def _distributed(name: str) -> str:
    (stmt,) = [s for s in _all() if s.startswith(f"CREATE TABLE IF NOT EXISTS millrace.{name} ")]
    return stmt


def test_versions_follow_the_migrations() -> None:
    got = [(v, n) for v, n, _ in cluster_statements(CLUSTER)]
    assert got == [(m.version, m.name) for m in load_migrations()]


def test_every_statement_is_on_the_cluster() -> None:
    stmts = _all()
    assert stmts[0] == f"CREATE DATABASE IF NOT EXISTS millrace {ON}"
    assert all(ON in s for s in stmts)


def test_every_table_gets_a_replicated_local_and_a_distributed_table() -> None:
    tables = _source_tables()
    assert {"readings", "agg_1m", "agg_5m", "agg_1h", "latest", "progress"} <= set(tables)
    for name in tables:
        local = _local(name)
        assert f"'/clickhouse/tables/{{shard}}/millrace/{name}', '{{replica}}'" in local
        assert re.search(r"ENGINE = Replicated\w*MergeTree\(", local)
        dist = _distributed(name)
        assert f"AS millrace.{name}_local" in dist
        assert f"ENGINE = Distributed('{CLUSTER}', millrace, {name}_local, " in dist


def test_engine_parameters_are_kept() -> None:
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/millrace/latest', "
        "'{replica}', ts)" in _local("latest")
    )
    assert "'{replica}', version)" in _local("progress")
    assert "ReplicatedAggregatingMergeTree(" in _local("agg_1m")
    assert "ReplicatedMergeTree(" in _local("readings")
    assert "ReplicatedReplacingMergeTree(" in _local("schema_migrations")


def test_table_as_table_points_at_the_local_source() -> None:
    local = _local("agg_5m")
    assert "AS millrace.agg_1m_local" in local
    assert "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/millrace/agg_5m'" in local
    assert "PARTITION BY toYear(bucket)" in _local("agg_1h")


def test_dedup_window_switched_to_replicated() -> None:
    text = render_cluster_sql(CLUSTER)
    assert "non_replicated_deduplication_window" not in text
    for name in ("readings", "agg_1m", "agg_5m", "agg_1h"):
        assert "SETTINGS replicated_deduplication_window = 10000" in _local(name)


def test_sharding_keys() -> None:
    for name in ("readings", "agg_1m", "agg_5m", "agg_1h", "latest"):
        assert _distributed(name).endswith("cityHash64(identity))")
    # rows that FINAL collapses must share a shard
    assert _distributed("progress").endswith("cityHash64(consumer, topic, partition))")
    known: dict = {}
    (_, dist) = cluster_statement(
        "CREATE TABLE IF NOT EXISTS db.t (a String) ENGINE = MergeTree ORDER BY a", "c", known
    )
    assert dist.endswith("rand())")


def test_render_is_one_script() -> None:
    text = render_cluster_sql(CLUSTER)
    assert text.count(";") == len(_all())
    assert "-- 0002_readings" in text


def test_an_added_column_is_added_to_both_tables() -> None:
    known: dict[str, Any] = {}
    create = "CREATE TABLE IF NOT EXISTS db.t (a String) ENGINE = MergeTree ORDER BY a"
    cluster_statement(create, "c", known)
    add = "ADD COLUMN IF NOT EXISTS b Int64 DEFAULT 1"
    assert cluster_statement(f"ALTER TABLE db.t {add}", "c", known) == [
        f"ALTER TABLE db.t_local ON CLUSTER 'c' {add}",
        f"ALTER TABLE db.t ON CLUSTER 'c' {add}",
    ]
    with pytest.raises(ClusterSqlError, match="no migration created"):
        cluster_statement("ALTER TABLE db.u ADD COLUMN IF NOT EXISTS b Int64", "c", known)


@pytest.mark.parametrize(
    "stmt",
    [
        "CREATE TABLE IF NOT EXISTS db.t (a String) ENGINE = Memory",
        "CREATE TABLE IF NOT EXISTS db.t (a String) ENGINE = ReplicatedMergeTree ORDER BY a",
        "CREATE TABLE db.t (a String) ENGINE = MergeTree ORDER BY a",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS db.v TO db.t AS SELECT 1",
        "ALTER TABLE db.t ADD COLUMN b String",
        "INSERT INTO db.t VALUES ('x')",
        "CREATE TABLE IF NOT EXISTS db.t AS db.unknown ENGINE = MergeTree ORDER BY a",
        "CREATE TABLE IF NOT EXISTS db.t ON CLUSTER c (a String) ENGINE = MergeTree ORDER BY a",
        "CREATE DATABASE IF NOT EXISTS db ENGINE = Atomic",
    ],
)
def test_unknown_shapes_raise(stmt: str) -> None:
    with pytest.raises(ClusterSqlError):
        cluster_statement(stmt, "c", {})


def test_bad_cluster_name_raises() -> None:
    with pytest.raises(ClusterSqlError):
        cluster_statements("x' OR '1")


def test_unknown_shape_in_a_migration_file_raises(tmp_path: Path) -> None:
    (tmp_path / "0001_x.sql").write_text("CREATE FUNCTION f AS x -> x;\n")
    with pytest.raises(ClusterSqlError, match="unknown statement shape"):
        cluster_statements("c", tmp_path)


def _unreplicate(stmt: str) -> str:
    """A generated _local statement as a single server would take it."""
    stmt = stmt.replace(f" {ON}", "")
    m = re.search(r"ENGINE = Replicated(\w+)\('[^']*', '\{replica\}'(?:, ([^)]*))?\)", stmt)
    assert m, stmt
    engine = m.group(1) + (f"({m.group(2)})" if m.group(2) else "")
    return stmt[: m.start()] + f"ENGINE = {engine}" + stmt[m.end() :]


def test_every_generated_statement_parses(chdb_store: ChdbStore) -> None:
    for stmt in _all():
        res = chdb_store.execute("SELECT formatQuerySingleLine({q:String})", {"q": stmt})
        assert f"ON CLUSTER {CLUSTER}" in res.rows[0][0]


def test_local_tables_without_replication_are_valid_on_chdb(chdb_store: ChdbStore) -> None:
    local = [
        _unreplicate(s) if s.startswith("CREATE") else s.replace(f" {ON}", "")
        for s in _all()
        if "_local " in s.split("\n")[0]
    ]
    assert local
    for stmt in local:
        res = chdb_store.execute("SELECT formatQuerySingleLine({q:String})", {"q": stmt})
        assert "Replicated" not in res.rows[0][0]
    # and they create working tables, in a scratch database
    scratch = "millrace_cluster_check"
    chdb_store.execute(f"CREATE DATABASE IF NOT EXISTS {scratch}")
    try:
        for stmt in local:
            chdb_store.execute(stmt.replace("millrace.", f"{scratch}."))
        res = chdb_store.execute(
            "SELECT name, engine FROM system.tables WHERE database = {d:String} ORDER BY name",
            {"d": scratch},
        )
        assert [r[0] for r in res.rows] == sorted(f"{t}_local" for t in _source_tables())
    finally:
        chdb_store.execute(f"DROP DATABASE IF EXISTS {scratch} SYNC")


def test_sql_dir_default_is_the_real_one() -> None:
    assert SQL_DIR.name == "sql" and any(SQL_DIR.glob("*.sql"))


class _Ledger(ProjectionStore):
    """Records DDL and keeps the migrations ledger: there is no ClickHouse cluster
    here, so this checks what millrace sends one (tests/projections/test_store_contract
    runs the server store for real when MILLRACE_CLICKHOUSE_URL is set)."""

    def __init__(self) -> None:
        self.sql: list[str] = []
        self.versions: set[int] = set()

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        if sql.startswith("SELECT version FROM millrace.schema_migrations"):
            return QueryResult(["version"], ["UInt32"], [[v] for v in sorted(self.versions)])
        if sql.startswith("INSERT INTO millrace.schema_migrations"):
            assert params is not None
            self.versions.add(int(params["v"]))
        else:
            self.sql.append(sql)
        return QueryResult([], [], [])

    def query_arrow(self, sql: str, params: Any = None, settings: Any = None) -> Any:
        raise NotImplementedError

    def insert_arrow(self, sql: str, table: Any, settings: Any = None) -> None:
        raise NotImplementedError


def test_migrate_on_a_cluster_runs_the_cluster_variant_once() -> None:
    store = _Ledger()
    ran = migrate(store, cluster=CLUSTER)
    assert ran == [m.version for m in load_migrations()]
    assert store.sql == _all()
    # every table of the plain migrations exists as _local and Distributed
    for name in _source_tables():
        assert any(
            s.startswith(f"CREATE TABLE IF NOT EXISTS millrace.{name}_local ") for s in store.sql
        )
    assert migrate(store, cluster=CLUSTER) == [] and len(store.sql) == len(_all())


def test_drop_on_a_cluster_drops_both_tables_on_every_node() -> None:
    store = _Ledger()
    drop_projections(store, cluster=CLUSTER)
    assert f"DROP TABLE IF EXISTS millrace.readings {ON} SYNC" in store.sql
    assert f"DROP TABLE IF EXISTS millrace.readings_local {ON} SYNC" in store.sql
    assert f"DROP TABLE IF EXISTS millrace.schema_migrations_local {ON} SYNC" in store.sql
    assert len(store.sql) == 2 * (len(PROJECTION_TABLES) + 1)
    with pytest.raises(ClusterSqlError):
        drop_projections(_Ledger(), cluster="c' ON CLUSTER x")


def test_server_store_on_a_cluster_inserts_synchronously() -> None:
    pytest.importorskip("clickhouse_driver")
    from millrace.projections.store.clickhouse import ClickHouseServerStore

    on = ClickHouseServerStore("clickhouse://u:p@127.0.0.1:9000/default", cluster=CLUSTER)
    off = ClickHouseServerStore("clickhouse://u:p@127.0.0.1:9000/default")
    assert on.client_kwargs["settings"]["insert_distributed_sync"] == 1
    assert "insert_distributed_sync" not in off.client_kwargs["settings"]
