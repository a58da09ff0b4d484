"""Read models over the projections: the SQL behind the query API.

Values come back typed by ``kind`` (number, boolean, string). All user input is bound
as ClickHouse query parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from millrace.pipeline.identities.resources import REGISTRY_KEY
from millrace.pipeline.topics import COMMANDS, IDENTITY, TELEMETRY
from millrace.pipeline.values import KIND_NUMBER, NUMERIC_KINDS, typed_value
from millrace.projections.identity_filter import within_sql
from millrace.projections.store.base import ProjectionStore

AGG_FIELDS = ("count", "min", "max", "sum", "avg", "first", "last")
BUCKET_TABLES = {"1m": "agg_1m", "5m": "agg_5m", "1h": "agg_1h"}


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


def raw_readings_table(
    store: ProjectionStore,
    identity: str,
    signals: Sequence[str],
    tr: TimeRange,
    limit: int,
    offset: int,
    order: Literal["asc", "desc"],
) -> pa.Table:
    """Readings (columns ``signal, ts_us, value, text, kind, quality``), ``limit`` per
    signal after skipping ``offset``, each signal's in time order ``order``."""
    params: dict[str, Any] = {"identity": identity, "signals": list(signals)}
    direction = "ASC" if order == "asc" else "DESC"
    # signal and ts in the same direction: ClickHouse reads the sorting key in order (or
    # backwards) and stops at the limit; mixed directions read every row of the signal
    sql = (
        "SELECT signal, toUnixTimestamp64Micro(ts) AS ts_us, value, text, kind, quality "
        "FROM millrace.readings "
        "WHERE identity = {identity:String} AND signal IN {signals:Array(String)}"
        + _time_where("ts", tr, params, micro=True)
        + f" ORDER BY signal {direction}, ts {direction} LIMIT {int(offset)}, {int(limit)}"
        + (" BY signal" if len(signals) > 1 else "")
    )
    return store.query_arrow(sql, params)


def reading_rows(table: pa.Table, signals: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """:func:`raw_readings_table` as dicts per signal (``ts_us``, typed ``value``,
    ``quality``); the API builds its JSON from the columns instead."""
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in signals}
    for r in table.to_pylist():
        out[r["signal"]].append(
            {
                "ts_us": int(r["ts_us"]),
                "value": typed_value(r["kind"], _json_number(r["value"]), r["text"]),
                "quality": r["quality"],
            }
        )
    return out


def _json_number(value: float | None) -> float | None:
    """A Float64 as ClickHouse's JSON carries it: NaN and infinities are null, -0 is 0."""
    return value + 0.0 if value is not None and math.isfinite(value) else None


#: how bucket starts are rendered, by output time format
_BUCKET_TIME = {
    "iso": "formatDateTime(bucket_start, '%Y-%m-%dT%H:%i:%SZ', 'UTC')",
    "s": "toInt64(toUnixTimestamp(bucket_start))",
    "ms": "toInt64(toUnixTimestamp(bucket_start)) * 1000",
    "us": "toInt64(toUnixTimestamp(bucket_start)) * 1000000",
}


def aggregates_table(
    store: ProjectionStore,
    identity: str,
    signals: Sequence[str],
    bucket: str,
    tr: TimeRange,
    limit: int,
    offset: int,
    order: Literal["asc", "desc"],
    time_format: Literal["iso", "s", "ms", "us"] = "us",
) -> pa.Table:
    """Merged aggregates per signal and bucket start (rendered as ``time_format`` in
    ``timestamp``), ``limit`` buckets per signal; numbers are finished in SQL.
    :func:`aggregate_points` reads it."""
    table = BUCKET_TABLES[bucket]
    params: dict[str, Any] = {"identity": identity, "signals": list(signals)}
    direction = "ASC" if order == "asc" else "DESC"
    limit_by = f"LIMIT {int(offset)}, {int(limit)}" + (" BY signal" if len(signals) > 1 else "")
    # numbers, and integers (KIND_INT sorts last: a bucket of ints has k = 3)
    numeric = f"k IN {NUMERIC_KINDS} AND nc > 0"
    sql = (
        f"SELECT signal, {_BUCKET_TIME[time_format]} AS timestamp, k AS kind, c AS count, "
        f"if({numeric}, lo, NULL) AS min, if({numeric}, hi, NULL) AS max, "
        f"if({numeric}, total, NULL) AS sum, if({numeric}, total / nc, NULL) AS avg, "
        "f.2 AS first_value, f.3 AS first_text, l.2 AS last_value, l.3 AS last_text, "
        f"{numeric} AND ic = nc AS ints_only, ilo AS imin, ihi AS imax FROM ("
        "SELECT signal, bucket AS bucket_start, max(kind) AS k, sum(count) AS c, "
        "sum(num_count) AS nc, sum(sum) AS total, min(min) AS lo, max(max) AS hi, "
        "sum(int_count) AS ic, min(imin) AS ilo, max(imax) AS ihi, "
        f"min(first) AS f, max(last) AS l FROM millrace.{table} "
        "WHERE identity = {identity:String} AND signal IN {signals:Array(String)}"
        + _time_where("bucket", tr, params, micro=False)
        + f" GROUP BY signal, bucket ORDER BY signal, bucket {direction} {limit_by})"
    )
    return store.query_arrow(sql, params)


def numbers_only(result: pa.Table) -> bool:
    """Every bucket of :func:`aggregates_table` holds plain numbers (kind NUMBER):
    first/last are the float columns and min/max need no exact ints."""
    return result.num_rows > 0 and bool(pc.all(pc.equal(result["kind"], KIND_NUMBER)).as_py())


def aggregate_points(
    result: pa.Table, signals: Sequence[str], fields: Sequence[str] = AGG_FIELDS
) -> dict[str, list[dict[str, Any]]]:
    """Points (``timestamp`` and ``fields``) per signal of an :func:`aggregates_table`."""
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in signals}
    if result.num_rows == 0:
        return out
    if numbers_only(result):
        # the common case: first/last are the float columns, Arrow builds the dicts
        renamed = result.rename_columns(
            [{"first_value": "first", "last_value": "last"}.get(c, c) for c in result.column_names]
        )
        keep = ["timestamp", *fields]
        if len(signals) == 1:
            out[signals[0]] = renamed.select(keep).to_pylist()
            return out
        for signal in signals:
            part = renamed.filter(pc.equal(renamed["signal"], signal))
            out[signal] = part.select(keep).to_pylist()
        return out
    cols = result.to_pydict()
    plain = [f for f in fields if f not in ("first", "last")]
    want_first, want_last = "first" in fields, "last" in fields
    series = [cols[f] for f in plain]
    kinds, timestamps = cols["kind"], cols["timestamp"]
    fv, ft, lv, lt = cols["first_value"], cols["first_text"], cols["last_value"], cols["last_text"]
    ints_only, imin, imax = cols["ints_only"], cols["imin"], cols["imax"]
    for i, signal in enumerate(cols["signal"]):
        point: dict[str, Any] = {"timestamp": timestamps[i]}
        for name, values in zip(plain, series, strict=True):
            point[name] = values[i]
        kind = kinds[i]
        if ints_only[i]:  # every number of the bucket an int: min and max exactly
            if "min" in point:
                point["min"] = imin[i]
            if "max" in point:
                point["max"] = imax[i]
        if want_first:
            point["first"] = typed_value(kind, fv[i], ft[i])
        if want_last:
            point["last"] = typed_value(kind, lv[i], lt[i])
        out[signal].append(point)
    return out


def latest_table(
    store: ProjectionStore,
    identities: Sequence[str] | None,
    signals: Sequence[str] | None,
    sort_key: Literal["identity", "signal"],
    reverse: bool,
    limit: int,
    offset: int,
    within: str | None = None,
) -> tuple[pa.Table, int]:
    """Latest value per (identity, signal) (columns ``identity, signal, ts_us, value,
    text, kind, quality, received_us``) and the total matching; ``within``: an RE2
    expression the identity must match too (a scoped caller's scope)."""
    params: dict[str, Any] = {}
    where = ["1"]
    if identities:
        params["ids"] = list(identities)
        where.append("identity IN {ids:Array(String)}")
    if within is not None:
        where.append(within_sql("identity", within, params))
    if signals:
        params["sigs"] = list(signals)
        where.append("signal IN {sigs:Array(String)}")
    direction = "DESC" if reverse else "ASC"
    keys = ["identity", "signal"] if sort_key == "identity" else ["signal", "identity"]
    order_by = ", ".join(f"{k} {direction}" for k in keys)
    sql = (
        "SELECT identity, signal, toUnixTimestamp64Micro(ts) AS ts_us, value, text, kind, "
        "quality, toUnixTimestamp64Micro(received) AS received_us, count() OVER () AS total "
        "FROM millrace.latest FINAL WHERE "
        + " AND ".join(where)
        + f" ORDER BY {order_by} LIMIT {int(offset)}, {int(limit)}"
    )
    table = store.query_arrow(sql, params)
    if table.num_rows:
        total = int(table["total"][0].as_py())
    else:
        total = _count_latest(store, where, params)
    return table.drop_columns(["total"]), total


def latest_rows(table: pa.Table) -> list[dict[str, Any]]:
    """:func:`latest_table` as dicts (the API builds its JSON from the columns)."""
    return [
        {
            "identity": r["identity"],
            "signal": r["signal"],
            "ts_us": int(r["ts_us"]),
            "value": typed_value(r["kind"], _json_number(r["value"]), r["text"]),
            "quality": r["quality"],
            "received_us": int(r["received_us"]),
        }
        for r in table.to_pylist()
    ]


def _count_latest(store: ProjectionStore, where: list[str], params: dict[str, Any]) -> int:
    res = store.execute(
        "SELECT count() FROM millrace.latest FINAL WHERE " + " AND ".join(where), params
    )
    return int(res.rows[0][0]) if res.rows else 0


#: the topics whose records are keyed by the identity they are about
IDENTITY_KEYED = (TELEMETRY, IDENTITY, COMMANDS)


def dead_letters(
    store: ProjectionStore,
    source_topic: str | None,
    stage: str | None,
    tr: TimeRange,
    limit: int,
    offset: int,
    within: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Dead letters, newest first, and the total matching. Read through the
    ``deadletter_public`` view, the one rule for every reader: the payloads of topics
    that carry credential hashes or the audit trail are blanked (a rejected identity
    event's payload holds its ``credential_hash``). ``within`` (a scoped caller): only
    the dead letters that name an identity inside it, i.e. of a topic keyed by identity
    (:data:`IDENTITY_KEYED`) whose key is inside; the rest are not about one identity."""
    params: dict[str, Any] = {}
    where = "1"
    if within is not None:
        params["keyed"] = list(IDENTITY_KEYED)
        params["registry"] = REGISTRY_KEY
        where += " AND source_topic IN {keyed:Array(String)} AND key != {registry:String}"
        where += " AND " + within_sql("key", within, params)
    if source_topic:
        params["topic"] = source_topic
        where += " AND source_topic = {topic:String}"
    if stage:
        params["stage"] = stage
        where += " AND stage = {stage:String}"
    where += _time_where("ts", tr, params, micro=True)
    res = store.execute(
        "SELECT toUnixTimestamp64Micro(ts), source_topic, source_partition, source_offset, "
        "stage, error_type, reason, key, substringUTF8(payload, 1, 4096), count() OVER () "
        f"FROM millrace.deadletter_public WHERE {where} "
        f"ORDER BY ts DESC, source_offset DESC LIMIT {int(offset)}, {int(limit)}",
        params,
    )
    rows = [
        {
            "ts_us": int(r[0]),
            "source_topic": r[1],
            "source_partition": None if r[2] < 0 else r[2],
            "source_offset": None if r[3] < 0 else r[3],
            "stage": r[4],
            "error_type": r[5],
            "reason": r[6],
            "key": r[7],
            "payload": r[8],
        }
        for r in res.rows
    ]
    total = int(res.rows[0][9]) if res.rows else 0
    return rows, total
