"""The cluster variant of the migrations, generated from the same ``projections/sql``.

Every ``CREATE TABLE db.t (...) ENGINE = <X>MergeTree[(args)] ...`` becomes

* ``db.t_local ON CLUSTER '<c>'`` with ``Replicated<X>MergeTree('/clickhouse/tables/
  {shard}/db/t', '{replica}'[, args])``, holding each shard's rows, replicated; and
* ``db.t ON CLUSTER '<c>' AS db.t_local ENGINE = Distributed('<c>', db, t_local, key)``,
  the table that the writer and the queries name, as on a single server.

``CREATE VIEW IF NOT EXISTS db.v AS SELECT ...`` becomes the same view ``ON CLUSTER``
(over the Distributed tables, which keep the names the view's query uses).

``ALTER TABLE db.t ADD COLUMN IF NOT EXISTS ...`` (a column added later) becomes the same
change ``ON CLUSTER`` of ``db.t_local`` and of ``db.t``.

``non_replicated_deduplication_window`` becomes ``replicated_deduplication_window``, so a
retried insert with the same ``insert_deduplication_token`` is still dropped.

Sharding key: ``cityHash64(identity)`` when the table has an ``identity`` column, so a
device's rows live on one shard. Tables without one are sharded by a hash of their
ORDER BY key when their engine collapses rows by that key (Replacing/Aggregating/...:
``FINAL`` only merges rows that share a shard), else by ``rand()``.

The parser knows the statement shapes used in ``projections/sql`` and raises
``ClusterSqlError`` on anything else, rather than emit DDL that is wrong on a cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from millrace.pipeline.errors import StoreError
from millrace.projections.migrations import SQL_DIR, load_migrations

MERGE_TREES = (
    "MergeTree",
    "ReplacingMergeTree",
    "AggregatingMergeTree",
    "SummingMergeTree",
    "CollapsingMergeTree",
    "VersionedCollapsingMergeTree",
)
ZK_PATH = "/clickhouse/tables/{{shard}}/{db}/{table}"

_IDENT = r"(?:`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)"
_CREATE_DB = re.compile(rf"^CREATE\s+DATABASE\s+IF\s+NOT\s+EXISTS\s+({_IDENT})$", re.I)
_CREATE_TABLE = re.compile(
    rf"^CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+({_IDENT})\.({_IDENT})\s*", re.I
)
_CREATE_VIEW = re.compile(
    rf"^CREATE\s+VIEW\s+IF\s+NOT\s+EXISTS\s+({_IDENT})\.({_IDENT})\s+AS\s+(SELECT\s.*)$",
    re.I | re.S,
)
_ADD_COLUMNS = re.compile(
    rf"^ALTER\s+TABLE\s+({_IDENT})\.({_IDENT})\s+(ADD\s+COLUMN\s+IF\s+NOT\s+EXISTS\s.*)$",
    re.I | re.S,
)
_AS_TABLE = re.compile(rf"^AS\s+({_IDENT})\.({_IDENT})\s*", re.I)
_ENGINE = re.compile(r"^ENGINE\s*=\s*([A-Za-z]+)\s*", re.I)
_ORDER_BY = re.compile(r"\bORDER\s+BY\s+", re.I)
_DEDUP_WINDOW = re.compile(r"\bnon_replicated_deduplication_window\b")
_NOT_COLUMNS = ("INDEX", "PROJECTION", "CONSTRAINT", "PRIMARY")


class ClusterSqlError(StoreError):
    """A migration statement whose shape the cluster generator does not know."""


@dataclass(frozen=True)
class _Table:
    db: str
    name: str
    columns: tuple[str, ...]
    body: str | None  # the column list as written, with its parentheses
    engine: str
    engine_args: str  # inside the parentheses, '' when none
    tail: str  # PARTITION BY / ORDER BY / SETTINGS ...
    source: tuple[str, str] | None  # (db, table) of CREATE TABLE ... AS


def _unquote(ident: str) -> str:
    return ident[1:-1] if ident.startswith("`") else ident


def _balanced(text: str, start: int) -> int:
    """Index just past the parenthesis closing the one at ``text[start]``."""
    depth, i, quote = 0, start, ""
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'`\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ClusterSqlError(f"unbalanced parentheses in: {text[:80]!r}")


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses and quotes."""
    parts, depth, quote, cur = [], 0, "", []
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                cur.append(c)
                i += 1
                c = text[i]
            elif c == quote:
                quote = ""
        elif c in "'`\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _column_names(body: str) -> tuple[str, ...]:
    names = []
    for part in _split_top(body):
        m = re.match(_IDENT, part)
        if m is None:
            raise ClusterSqlError(f"cannot read column definition {part!r}")
        if m.group(0).upper() not in _NOT_COLUMNS:
            names.append(_unquote(m.group(0)))
    return tuple(names)


def _order_by(tail: str) -> str | None:
    m = _ORDER_BY.search(tail)
    if m is None:
        return None
    rest = tail[m.end() :]
    if rest.startswith("("):
        return rest[1 : _balanced(rest, 0) - 1].strip()
    word = re.match(r"[^\s]+", rest)
    return word.group(0) if word else None


def parse_create_table(stmt: str, known: dict[str, _Table]) -> _Table:
    """Read one ``CREATE TABLE IF NOT EXISTS db.t (...)|AS db.s ENGINE = ...``."""
    m = _CREATE_TABLE.match(stmt)
    if m is None:
        raise ClusterSqlError(f"unknown statement shape: {stmt[:80]!r}")
    db, name = _unquote(m.group(1)), _unquote(m.group(2))
    rest = stmt[m.end() :]
    source, body = None, None
    if rest.startswith("("):
        end = _balanced(rest, 0)
        body = rest[:end]
        columns = _column_names(rest[1 : end - 1])
        rest = rest[end:].lstrip()
    elif (a := _AS_TABLE.match(rest)) is not None:
        source = (_unquote(a.group(1)), _unquote(a.group(2)))
        if f"{source[0]}.{source[1]}" not in known:
            raise ClusterSqlError(f"{db}.{name} is created AS unknown table {source}")
        columns = known[f"{source[0]}.{source[1]}"].columns
        rest = rest[a.end() :]
    else:
        raise ClusterSqlError(f"{db}.{name}: expected a column list or AS: {rest[:40]!r}")
    e = _ENGINE.match(rest)
    if e is None or e.group(1) not in MERGE_TREES:
        found = e.group(1) if e else rest[:40]
        raise ClusterSqlError(f"{db}.{name}: engine {found!r} is not a plain MergeTree engine")
    rest = rest[e.end() :]
    args = ""
    if rest.startswith("("):
        end = _balanced(rest, 0)
        args, rest = rest[1 : end - 1].strip(), rest[end:].lstrip()
    if re.search(r"\bON\s+CLUSTER\b", stmt, re.I):
        raise ClusterSqlError(f"{db}.{name} already names a cluster")
    return _Table(db, name, columns, body, e.group(1), args, rest.strip(), source)


def sharding_key(table: _Table) -> str:
    if "identity" in table.columns:
        return "cityHash64(identity)"
    key = _order_by(table.tail) if table.engine != "MergeTree" else None
    if key and key != "tuple()":
        return f"cityHash64({key})"
    return "rand()"


def _cluster_literal(cluster: str) -> str:
    if not cluster or re.search(r"['\\\s]", cluster):
        raise ClusterSqlError(f"bad cluster name {cluster!r}")
    return f"'{cluster}'"


def on_cluster(cluster: str) -> str:
    """``ON CLUSTER '<cluster>'`` (the name checked: no quotes, backslashes or blanks)."""
    return f"ON CLUSTER {_cluster_literal(cluster)}"


def cluster_create_table(table: _Table, cluster: str) -> list[str]:
    """The ``_local`` replicated table and the Distributed table over it."""
    on = on_cluster(cluster)
    local = f"{table.name}_local"
    zk = ZK_PATH.format(db=table.db, table=table.name)
    engine_args = ", ".join(a for a in (f"'{zk}'", "'{replica}'", table.engine_args) if a)
    if table.source is not None:
        shape = f"AS {table.source[0]}.{table.source[1]}_local"
    else:
        shape = table.body or ""
    tail = _DEDUP_WINDOW.sub("replicated_deduplication_window", table.tail)
    local_stmt = (
        f"CREATE TABLE IF NOT EXISTS {table.db}.{local} {on}\n{shape}\n"
        f"ENGINE = Replicated{table.engine}({engine_args})\n{tail}"
    ).rstrip()
    dist_stmt = (
        f"CREATE TABLE IF NOT EXISTS {table.db}.{table.name} {on} AS {table.db}.{local}\n"
        f"ENGINE = Distributed({_cluster_literal(cluster)}, {table.db}, {local}, "
        f"{sharding_key(table)})"
    )
    return [local_stmt, dist_stmt]


def cluster_statement(stmt: str, cluster: str, known: dict[str, _Table]) -> list[str]:
    """One migration statement as the statements that do its work on ``cluster``."""
    text = stmt.strip().rstrip(";").strip()
    if (m := _CREATE_DB.match(text)) is not None:
        return [f"CREATE DATABASE IF NOT EXISTS {m.group(1)} {on_cluster(cluster)}"]
    if (v := _CREATE_VIEW.match(text)) is not None:
        if re.search(r"\bON\s+CLUSTER\b", text, re.I):
            raise ClusterSqlError(f"{v.group(1)}.{v.group(2)} already names a cluster")
        name = f"{v.group(1)}.{v.group(2)}"
        return [f"CREATE VIEW IF NOT EXISTS {name} {on_cluster(cluster)} AS {v.group(3)}"]
    if (a := _ADD_COLUMNS.match(text)) is not None:
        name = f"{a.group(1)}.{a.group(2)}"
        if name not in known:
            raise ClusterSqlError(f"{name}: ALTER of a table no migration created")
        on = on_cluster(cluster)
        return [
            f"ALTER TABLE {a.group(1)}.{a.group(2)}_local {on} {a.group(3)}",
            f"ALTER TABLE {name} {on} {a.group(3)}",
        ]
    table = parse_create_table(text, known)
    known[f"{table.db}.{table.name}"] = table
    return cluster_create_table(table, cluster)


def cluster_statements(cluster: str, sql_dir: Path = SQL_DIR) -> list[tuple[int, str, list[str]]]:
    """``(version, name, statements)`` of every migration, for ``cluster``."""
    known: dict[str, _Table] = {}
    out = []
    for mig in load_migrations(sql_dir):
        stmts = [s for stmt in mig.statements for s in cluster_statement(stmt, cluster, known)]
        out.append((mig.version, mig.name, stmts))
    return out


def render_cluster_sql(cluster: str, sql_dir: Path = SQL_DIR) -> str:
    """The cluster DDL as one script, e.g. for ``clickhouse-client --multiquery``."""
    chunks = [f"-- millrace projections on cluster {cluster!r}, generated from {sql_dir.name}/"]
    for version, name, stmts in cluster_statements(cluster, sql_dir):
        chunks.append(f"\n-- {version:04d}_{name}")
        chunks.extend(f"{s};" for s in stmts)
    return "\n".join(chunks) + "\n"
