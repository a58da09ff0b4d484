"""The statements of a replay on a ClickHouse cluster (``projections.replay_cluster``):
shadow ``_local`` tables and their Distributed fronts, comments, the exchange, the drop;
and the per-node answer of a distributed DDL.

Pure text builders, tested against the exact SQL expected; the engines come from the
live tables' ``system.tables.engine_full``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from millrace.pipeline.errors import MillraceError
from millrace.projections.cluster import ZK_PATH, _balanced, _split_top, on_cluster
from millrace.projections.shadow import BUILD, shadow_name

DB = "millrace"
#: a node as ``clusterAllReplicas`` names it (host and native port of that server)
NODE_EXPR = "concat(hostName(), ':', toString(tcpPort()))"
_REPLICATED = re.compile(r"^(Replicated\w*MergeTree)\s*\(")
_DISTRIBUTED = re.compile(r"^Distributed\s*\(")
#: how the shadow of a local table ends
SHADOW_LOCAL = "__shadow_local"


class ClusterSwapError(MillraceError):
    """A cluster swap did not happen on every node (the message names nodes, tables)."""


def local(table: str) -> str:
    return f"{table}_local"


def shadow_local(table: str) -> str:
    return f"{shadow_name(table)}_local"


def quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def zk_path(table: str, tag: str) -> str:
    """The shadow's own Keeper path (a sibling of the live one, never below it: the
    last replica's DROP removes its table's whole path)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", tag)
    return ZK_PATH.format(db=DB, table=table) + f"__replay_{safe}"


def shadow_local_engine(engine_full: str, table: str, tag: str) -> str:
    """The live local table's engine with the shadow's Keeper path and ``{replica}``
    (an engine that is not replicated, or names no path, is kept as it is)."""
    m = _REPLICATED.match(engine_full)
    if m is None:
        return engine_full
    end = _balanced(engine_full, m.end() - 1)
    args = _split_top(engine_full[m.end() : end - 1])
    if len(args) < 2:
        return engine_full  # the server's default path: {uuid} makes it unique
    args = [quote(zk_path(table, tag)), "'{replica}'", *args[2:]]
    return f"{m.group(1)}({', '.join(args)}){engine_full[end:]}"


def shadow_front_engine(engine_full: str, table: str) -> str:
    """The live Distributed front's engine over the shadow's local table (same
    cluster, database, sharding key: a row lands on the shard it would live on)."""
    m = _DISTRIBUTED.match(engine_full)
    if m is None:
        raise ClusterSwapError(f"{DB}.{table} is not a Distributed table: {engine_full[:60]!r}")
    end = _balanced(engine_full, m.end() - 1)
    args = _split_top(engine_full[m.end() : end - 1])
    if len(args) < 3:
        raise ClusterSwapError(f"{DB}.{table}: cannot read {engine_full[:80]!r}")
    args[2] = quote(shadow_local(table))
    return f"Distributed({', '.join(args)}){engine_full[end:]}"


def create_sql(
    table: str, tag: str, cluster: str, local_engine: str, front_engine: str
) -> list[str]:
    """Statements that create ``table``'s shadow (old ones dropped) on every node."""
    on = on_cluster(cluster)
    sl, front = shadow_local(table), shadow_name(table)
    return [
        f"DROP TABLE IF EXISTS {DB}.{front} {on} SYNC",
        f"DROP TABLE IF EXISTS {DB}.{sl} {on} SYNC",
        f"CREATE TABLE {DB}.{sl} {on} AS {DB}.{local(table)} "
        f"ENGINE = {shadow_local_engine(local_engine, table, tag)} COMMENT {quote(BUILD + tag)}",
        f"CREATE TABLE {DB}.{front} {on} AS {DB}.{sl} "
        f"ENGINE = {shadow_front_engine(front_engine, table)}",
    ]


def comment_sql(name: str, comment: str, cluster: str | None) -> str:
    on = f" {on_cluster(cluster)}" if cluster else ""
    return f"ALTER TABLE {DB}.{name}{on} MODIFY COMMENT {quote(comment)}"


def exchange_sql(tables: Sequence[str], cluster: str | None) -> str:
    """One ``EXCHANGE TABLES`` of every pair of local tables (ON CLUSTER when given)."""
    pairs = ", ".join(f"{DB}.{local(t)} AND {DB}.{shadow_local(t)}" for t in tables)
    on = f" {on_cluster(cluster)}" if cluster else ""
    return f"EXCHANGE TABLES {pairs}{on}"


def drop_sql(table: str, cluster: str) -> list[str]:
    on = on_cluster(cluster)
    return [
        f"DROP TABLE IF EXISTS {DB}.{shadow_name(table)} {on} SYNC",
        f"DROP TABLE IF EXISTS {DB}.{shadow_local(table)} {on} SYNC",
    ]


@dataclass(frozen=True, order=True)
class Node:
    """One server of the cluster, as ``system.clusters`` lists it."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class NodeStatus:
    """One node's answer to a distributed DDL (status None: not finished in time)."""

    node: Node
    status: int | None
    error: str


def statuses_of(columns: list[str], rows: list[list[object]]) -> list[NodeStatus]:
    """A distributed DDL's answer: a row per node (host, port, status, error, …)."""
    at = {name: i for i, name in enumerate(columns)}
    if not {"host", "port", "status"} <= at.keys():
        raise ClusterSwapError(f"unexpected answer to a distributed DDL: columns {columns}")
    out = []
    for row in rows:
        status = row[at["status"]]
        out.append(
            NodeStatus(
                Node(str(row[at["host"]]), int(str(row[at["port"]]))),
                None if status is None else int(str(status)),
                str(row[at["error"]] or "") if "error" in at else "",
            )
        )
    return out
