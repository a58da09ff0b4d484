"""Read models over the projections: the SQL behind the query API.

Values come back typed by ``kind`` (number, boolean, string). All user input is bound
as ClickHouse query parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from projections.store.base import ProjectionStore, QueryResult

KIND_NUMBER, KIND_BOOL, KIND_STRING = 0, 1, 2
AGG_FIELDS = ("count", "min", "max", "sum", "avg", "first", "last")
BUCKET_TABLES = {"1m": "agg_1m", "5m": "agg_5m", "1h": "agg_1h"}


def typed_value(kind: int, value: float | None, text: str) -> Any:
    if kind == KIND_BOOL:
        return bool(value)
    if kind == KIND_STRING:
        return text
    return value


@dataclass(frozen=True)
class TimeRange:
    start_us: int | None = None
    end_us: int | None = None  # exclusive


def _time_where(column: str, tr: TimeRange, params: dict[str, Any], micro: bool) -> str:
    conds = []
    conv = (
        "fromUnixTimestamp64Micro({p:Int64}, 'UTC')"
        if micro
        else "toDateTime(intDiv({p:Int64}, 1000000), 'UTC')"
    )
    if tr.start_us is not None:
        params["start"] = tr.start_us if micro else -(-tr.start_us // 1_000_000) * 1_000_000
        conds.append(f"{column} >= " + conv.replace("{p:", "{start:"))
    if tr.end_us is not None:
        params["end"] = tr.end_us if micro else -(-tr.end_us // 1_000_000) * 1_000_000
        conds.append(f"{column} < " + conv.replace("{p:", "{end:"))
    return "".join(f" AND {c}" for c in conds)


def raw_readings(
    store: ProjectionStore,
    identity: str,
    signals: Sequence[str],
    tr: TimeRange,
    limit: int,
    offset: int,
    order: Literal["asc", "desc"],
) -> dict[str, list[dict[str, Any]]]:
    """Readings per signal, ``limit`` per signal after skipping ``offset``."""
    params: dict[str, Any] = {"identity": identity, "signals": list(signals)}
    direction = "ASC" if order == "asc" else "DESC"
    sql = (
        "SELECT signal, toUnixTimestamp64Micro(ts), value, text, kind, quality "
        "FROM millrace.readings "
        "WHERE identity = {identity:String} AND signal IN {signals:Array(String)}"
        + _time_where("ts", tr, params, micro=True)
        + f" ORDER BY signal, ts {direction} LIMIT {int(offset)}, {int(limit)} BY signal"
    )
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in signals}
    for signal, ts, value, text, kind, quality in store.execute(sql, params).rows:
        out[signal].append(
            {"ts_us": int(ts), "value": typed_value(kind, value, text), "quality": quality}
        )
    return out


def aggregates(
    store: ProjectionStore,
    identity: str,
    signals: Sequence[str],
    bucket: str,
    tr: TimeRange,
    limit: int,
    offset: int,
    order: Literal["asc", "desc"],
) -> dict[str, list[dict[str, Any]]]:
    """Merged aggregates per signal and bucket start; ``limit`` buckets per signal."""
    table = BUCKET_TABLES[bucket]
    params: dict[str, Any] = {"identity": identity, "signals": list(signals)}
    direction = "ASC" if order == "asc" else "DESC"
    sql = (
        "SELECT signal, toUnixTimestamp(bucket) AS b, max(kind), sum(count), "
        "sum(num_count) AS nc, sum(sum), min(min), max(max), min(first), max(last) "
        f"FROM millrace.{table} "
        "WHERE identity = {identity:String} AND signal IN {signals:Array(String)}"
        + _time_where("bucket", tr, params, micro=False)
        + f" GROUP BY signal, b ORDER BY signal, b {direction} "
        f"LIMIT {int(offset)}, {int(limit)} BY signal"
    )
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in signals}
    for signal, b, kind, count, nc, total, low, high, first, last in store.execute(
        sql, params
    ).rows:
        numeric = kind == KIND_NUMBER and nc > 0
        out[signal].append(
            {
                "ts_us": int(b) * 1_000_000,
                "count": int(count),
                "min": low if numeric else None,
                "max": high if numeric else None,
                "sum": total if numeric else None,
                "avg": total / nc if numeric else None,
                "first": typed_value(kind, first[1], first[2]),
                "last": typed_value(kind, last[1], last[2]),
                "first_ts_us": int(first[0]),
                "last_ts_us": int(last[0]),
            }
        )
    return out


def latest(
    store: ProjectionStore,
    identities: Sequence[str] | None,
    signals: Sequence[str] | None,
    sort_key: Literal["identity", "signal"],
    reverse: bool,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Latest value per (identity, signal) and the total matching."""
    params: dict[str, Any] = {}
    where = ["1"]
    if identities:
        params["ids"] = list(identities)
        where.append("identity IN {ids:Array(String)}")
    if signals:
        params["sigs"] = list(signals)
        where.append("signal IN {sigs:Array(String)}")
    direction = "DESC" if reverse else "ASC"
    keys = ["identity", "signal"] if sort_key == "identity" else ["signal", "identity"]
    order_by = ", ".join(f"{k} {direction}" for k in keys)
    sql = (
        "SELECT identity, signal, toUnixTimestamp64Micro(ts), value, text, kind, quality, "
        "toUnixTimestamp64Micro(received), count() OVER () "
        "FROM millrace.latest FINAL WHERE "
        + " AND ".join(where)
        + f" ORDER BY {order_by} LIMIT {int(offset)}, {int(limit)}"
    )
    res = store.execute(sql, params)
    total = int(res.rows[0][8]) if res.rows else _count_latest(store, where, params)
    rows = [
        {
            "identity": identity,
            "signal": signal,
            "ts_us": int(ts),
            "value": typed_value(kind, value, text),
            "quality": quality,
            "received_us": int(received),
        }
        for identity, signal, ts, value, text, kind, quality, received, _ in res.rows
    ]
    return rows, total


def _count_latest(store: ProjectionStore, where: list[str], params: dict[str, Any]) -> int:
    res = store.execute(
        "SELECT count() FROM millrace.latest FINAL WHERE " + " AND ".join(where), params
    )
    return int(res.rows[0][0]) if res.rows else 0


READONLY_KINDS = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectQuery",
        "ShowTables",
        "ShowColumns",
        "ShowDatabases",
        "DescribeQuery",
        "ExistsTableQuery",
        "ShowCreateTableQuery",
        "ExplainQuery",
    }
)
_SELECT_KINDS = frozenset({"SelectWithUnionQuery", "SelectQuery"})


def single_statement(sql: str) -> str:
    """``sql`` without a trailing ``;``; ValueError if it holds more than one
    statement. chDB runs every statement of a multi-statement text, so this check
    comes before anything else sees the text."""
    i, n = 0, len(sql)
    end = n
    while i < n:
        c = sql[i]
        if c in "'\"`":
            i += 1
            while i < n and sql[i] != c:
                i += 2 if sql[i] == "\\" else 1
            if i >= n:
                raise ValueError("unterminated quoted string or identifier")
        elif sql.startswith("--", i):
            nl = sql.find("\n", i)
            i = n if nl < 0 else nl
            continue
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            if close < 0:
                raise ValueError("unterminated comment")
            i = close + 1
        elif c == ";":
            end = i
            rest = sql[i + 1 :]
            if single_statement_rest_is_empty(rest):
                break
            raise ValueError("one statement per request")
        i += 1
    stmt = sql[:end].strip()
    if not stmt:
        raise ValueError("empty statement")
    return stmt


def single_statement_rest_is_empty(rest: str) -> bool:
    try:
        single_statement(rest)
    except ValueError as exc:
        return str(exc) == "empty statement"
    return False


def classify(store: ProjectionStore, stmt: str) -> str:
    """The root AST node of one statement as ClickHouse parses it."""
    res = store.execute("EXPLAIN AST " + stmt)
    if not res.rows:
        return ""
    return str(res.rows[0][0]).split(" ")[0].strip()


def is_read_only(kind: str) -> bool:
    return kind in READONLY_KINDS


def readonly_query(
    store: ProjectionStore, stmt: str, kind: str, max_rows: int, timeout_s: float
) -> QueryResult:
    """Run one read-only statement (see :func:`single_statement`, :func:`classify`)
    with ClickHouse's own ``readonly = 1`` (no writes, no file/url table functions),
    a time limit and a result-row limit."""
    settings = {
        "readonly": 1,
        "max_execution_time": timeout_s,
        "max_result_rows": max_rows,
        "result_overflow_mode": "throw",
    }
    if kind in _SELECT_KINDS:
        return store.execute(f"SELECT * FROM (\n{stmt}\n)", settings=settings)
    return store.execute(stmt, settings=settings)
