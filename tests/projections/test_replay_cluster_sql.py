"""The statements of a replay on a ClickHouse cluster (``projections.replay_cluster_sql``),
compared with the exact SQL expected; each also parses on chDB's ClickHouse parser."""

from __future__ import annotations

import pytest

from millrace.projections.cluster import ClusterSqlError, cluster_statements
from millrace.projections.replay_cluster import server_nodes
from millrace.projections.replay_cluster_sql import (
    ClusterSwapError,
    Node,
    comment_sql,
    create_sql,
    drop_sql,
    exchange_sql,
    shadow_front_engine,
    shadow_local_engine,
    zk_path,
)
from millrace.projections.store.chdb import ChdbStore

C = "millrace_cluster"
ON = f"ON CLUSTER '{C}'"
LATEST_LOCAL = (
    "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/millrace/latest', "
    "'{replica}', ts) ORDER BY (identity, signal) SETTINGS index_granularity = 8192"
)
LATEST_FRONT = "Distributed('millrace_cluster', 'millrace', 'latest_local', cityHash64(identity))"


def test_the_shadow_local_gets_its_own_keeper_path_and_keeps_the_rest() -> None:
    got = shadow_local_engine(LATEST_LOCAL, "latest", "task-1.ab12")
    assert got == (
        "ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/millrace/latest__replay_task-1_ab12', '{replica}', ts) "
        "ORDER BY (identity, signal) SETTINGS index_granularity = 8192"
    )
    # after a swap the live table has a shadow's path: the next shadow gets a fresh one
    again = shadow_local_engine(got, "latest", "task-2.cd34")
    assert "'/clickhouse/tables/{shard}/millrace/latest__replay_task-2_cd34'" in again
    # an expanded replica name is put back to the macro (every node has its own)
    expanded = LATEST_LOCAL.replace("'{replica}'", "'node-3'")
    assert "'{replica}', ts)" in shadow_local_engine(expanded, "latest", "t")
    # not replicated, or the server's default path: kept as is
    plain = "MergeTree ORDER BY a TTL toDateTime(ts) + toIntervalDay(1)"
    assert shadow_local_engine(plain, "readings", "t") == plain
    assert shadow_local_engine("ReplicatedMergeTree ORDER BY a", "x", "t") == (
        "ReplicatedMergeTree ORDER BY a"
    )


def test_keeper_paths_are_siblings_never_children() -> None:
    path = zk_path("readings", "r/../x y")
    assert path == "/clickhouse/tables/{shard}/millrace/readings__replay_r____x_y"
    assert not path.startswith("/clickhouse/tables/{shard}/millrace/readings/")


def test_the_shadow_front_points_at_the_shadow_local_with_the_same_key() -> None:
    assert shadow_front_engine(LATEST_FRONT, "latest") == (
        "Distributed('millrace_cluster', 'millrace', 'latest__shadow_local', cityHash64(identity))"
    )
    with pytest.raises(ClusterSwapError, match="not a Distributed table"):
        shadow_front_engine("MergeTree ORDER BY a", "latest")


def test_create_statements() -> None:
    assert create_sql("latest", "r1.ab", C, LATEST_LOCAL, LATEST_FRONT) == [
        f"DROP TABLE IF EXISTS millrace.latest__shadow {ON} SYNC",
        f"DROP TABLE IF EXISTS millrace.latest__shadow_local {ON} SYNC",
        f"CREATE TABLE millrace.latest__shadow_local {ON} AS millrace.latest_local "
        "ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/millrace/latest__replay_r1_ab', '{replica}', ts) "
        "ORDER BY (identity, signal) SETTINGS index_granularity = 8192 COMMENT 'build:r1.ab'",
        f"CREATE TABLE millrace.latest__shadow {ON} AS millrace.latest__shadow_local "
        "ENGINE = Distributed('millrace_cluster', 'millrace', 'latest__shadow_local', "
        "cityHash64(identity))",
    ]


def test_exchange_comment_and_drop_statements() -> None:
    assert exchange_sql(["readings", "latest"], C) == (
        "EXCHANGE TABLES millrace.readings_local AND millrace.readings__shadow_local, "
        f"millrace.latest_local AND millrace.latest__shadow_local {ON}"
    )
    # on one node (a rollback): no ON CLUSTER
    assert exchange_sql(["latest"], None) == (
        "EXCHANGE TABLES millrace.latest_local AND millrace.latest__shadow_local"
    )
    assert comment_sql("latest_local", "swap:it's", C) == (
        f"ALTER TABLE millrace.latest_local {ON} MODIFY COMMENT 'swap:it\\'s'"
    )
    assert drop_sql("latest", C) == [
        f"DROP TABLE IF EXISTS millrace.latest__shadow {ON} SYNC",
        f"DROP TABLE IF EXISTS millrace.latest__shadow_local {ON} SYNC",
    ]
    with pytest.raises(ClusterSqlError):
        exchange_sql(["latest"], "c' OR '1")


def test_every_statement_parses(chdb_store: ChdbStore) -> None:
    stmts = [
        *create_sql("latest", "r1.ab", C, LATEST_LOCAL, LATEST_FRONT),
        exchange_sql(["readings", "latest"], C),
        comment_sql("latest_local", "", C),
        *drop_sql("latest", C),
    ]
    for stmt in stmts:
        res = chdb_store.execute("SELECT formatQuerySingleLine({q:String})", {"q": stmt})
        assert f"ON CLUSTER {C}" in res.rows[0][0]


def test_engines_of_the_generated_cluster_tables_are_understood() -> None:
    """Every table the cluster migrations create: its _local engine (as the generator
    writes it; the server shows the same text in engine_full) gets a shadow path."""
    for _, _, stmts in cluster_statements(C):
        for stmt in stmts:
            head, _, rest = stmt.partition("\nENGINE = ")
            if not rest or "_local" not in head.split()[5]:
                continue
            table = head.split()[5].removeprefix("millrace.").removesuffix("_local")
            got = shadow_local_engine(rest, table, "t")
            assert f"'/clickhouse/tables/{{shard}}/millrace/{table}__replay_t', '{{replica}}'" in (
                got
            ), stmt


def test_node_connections_keep_credentials_and_settings() -> None:
    pytest.importorskip("clickhouse_driver")
    connect = server_nodes("clickhouse://u:p%40ss@lb.example:9000/default?secure=false")
    store = connect(Node("ch-2.internal", 9440))
    assert store.host == "ch-2.internal"  # type: ignore[attr-defined]
    assert store.client_kwargs["port"] == 9440  # type: ignore[attr-defined]
    assert store.client_kwargs["user"] == "u"  # type: ignore[attr-defined]
    assert store.client_kwargs["password"] == "p@ss"  # type: ignore[attr-defined]
