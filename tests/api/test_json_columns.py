"""JSON built from Arrow columns (api.json_columns, api.signal_json) is byte for byte
what orjson writes for the same rows as Python dicts, built here the row-by-row way
(``format_time``, ``typed_value`` over ClickHouse's JSON values)."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from millrace.api import json_columns as jc
from millrace.api import signal_json
from millrace.api.timeparams import Epoch, format_time
from millrace.pipeline.timestamps import MAX_QUERY_US, MIN_QUERY_US
from millrace.pipeline.values import KIND_BOOL, KIND_INT, KIND_NUMBER, KIND_STRING, typed_value
from millrace.projections import queries
from millrace.projections.queries import TimeRange
from millrace.projections.store.chdb import ChdbStore

EPOCHS = [None, Epoch.s, Epoch.ms, Epoch.us]


def encoded(fields: list[tuple[str, Any]], n: int) -> bytes:
    return orjson.dumps({"data": jc.rows(fields, n)})


def reference(rows: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"data": rows})


def json_number(v: float | None) -> float | None:
    """What ClickHouse's JSON gave the row path: non-finite numbers as null, -0 as 0."""
    return v + 0.0 if v is not None and math.isfinite(v) else None


doubles = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1.0, 0.1, 1e16, 1e-7, 2.0**53, 2.0**63, -(2.0**63), 1e20, 5e-324]
)
times = st.integers(MIN_QUERY_US, MAX_QUERY_US - 1) | st.sampled_from(
    [0, 1, -1, 999_999, 2**53 + 1, MAX_QUERY_US - 1, MIN_QUERY_US, 1_700_000_000_000_000]
)
texts = st.text(max_size=8) | st.sampled_from(["", '"', "\\", "\n\x00\x1f", "é\u2028", "a,b"])


@given(st.lists(st.one_of(st.none(), doubles), max_size=40))
def test_floats(values: list[float | None]) -> None:
    got = encoded([("v", jc.floats(pa.array(values, pa.float64())))], len(values))
    assert got == reference([{"v": v} for v in values])


@given(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=40))
def test_ints(values: list[int | None]) -> None:
    got = encoded([("n", jc.ints(pa.array(values, pa.int64())))], len(values))
    assert got == reference([{"n": v} for v in values])


@given(st.lists(st.one_of(st.none(), texts), max_size=40))
def test_strings(values: list[str | None]) -> None:
    got = encoded([("s", jc.strings(pa.array(values, pa.string())))], len(values))
    assert got == reference([{"s": v} for v in values])


@pytest.mark.parametrize("epoch", EPOCHS)
@given(values=st.lists(times, max_size=40))
def test_times(epoch: Epoch | None, values: list[int]) -> None:
    got = encoded([("t", signal_json.time_texts(pa.array(values, pa.int64()), epoch))], len(values))
    assert got == reference([{"t": format_time(v, epoch)} for v in values])


readings = st.tuples(
    st.sampled_from([KIND_NUMBER, KIND_BOOL, KIND_STRING, KIND_INT, 9]),
    st.one_of(st.none(), doubles, st.integers(-(2**53), 2**53).map(float)),
    texts | st.integers(-(2**63), 2**63 - 1).map(str),
)


@given(st.lists(readings, max_size=40))
def test_typed_values(rows: list[tuple[int, float | None, str]]) -> None:
    kinds, values, text = zip(*rows, strict=True) if rows else ((), (), ())
    column = jc.typed_values(
        pa.array(kinds, pa.uint8()), pa.array(values, pa.float64()), pa.array(text, pa.string())
    )
    want = []
    for k, v, t in rows:
        typed = typed_value(k, json_number(v), t)
        if isinstance(typed, int) and not isinstance(typed, bool) and abs(typed) >= 2**63:
            return  # beyond orjson: no INT is stored so (kind_of makes it a NUMBER)
        want.append({"v": typed})
    assert encoded([("v", column)], len(rows)) == reference(want)


def test_empty_columns() -> None:
    empty = pa.array([], pa.int64())
    fields = [("t", signal_json.time_texts(empty, None)), ("n", jc.ints(empty))]
    assert encoded(fields, 0) == reference([])


# -- the endpoints' documents on chDB: the columns' JSON and the row path's ---------------

IDENTITY = "dev-1"
BASE_US = 1_767_225_600_000_000  # 2026-01-01


def _seed(store: ChdbStore) -> None:
    rows = []
    values: list[tuple[str, int, float, str]] = [
        ("num", KIND_NUMBER, 1.5, ""),
        ("num", KIND_NUMBER, float("nan"), ""),
        ("num", KIND_NUMBER, float("inf"), ""),
        ("num", KIND_NUMBER, -0.1, ""),
        ("num", KIND_NUMBER, -0.0, ""),
        ("num", KIND_NUMBER, 1e20, ""),
        ("flag", KIND_BOOL, 1.0, ""),
        ("flag", KIND_BOOL, 0.0, ""),
        ("word", KIND_STRING, 0.0, 'say "hi"\n'),
        ("word", KIND_STRING, 0.0, "é,x"),
        ("count", KIND_INT, 7.0, ""),
        ("count", KIND_INT, float(2**53), str(2**53 + 1)),
        ("count", KIND_INT, -3.0, ""),
    ]
    for i, (signal, kind, value, text) in enumerate(values):
        ts = BASE_US + i * 1_500_001 + (0 if i % 3 else 1_000_000)
        rows.append((signal, ts, value, text, kind, i % 2))
    for signal, ts, value, text, kind, quality in rows:
        params = {"s": signal, "ts": ts, "v": repr(value), "t": text, "k": kind, "q": quality}
        for table, extra in (("readings", ""), ("latest", ", {ts:Int64}")):
            received = ", fromUnixTimestamp64Micro({ts:Int64} + 17, 'UTC')" if extra else ""
            store.execute(
                f"INSERT INTO millrace.{table} SELECT 'dev-1', {{s:String}}, "
                "fromUnixTimestamp64Micro({ts:Int64}, 'UTC'), toFloat64({v:String}), {t:String}, "
                f"{{k:UInt8}}, {{q:Int32}}{received}",
                params,
            )


@pytest.mark.parametrize("epoch", EPOCHS)
def test_raw_points_as_the_row_path(store: ChdbStore, epoch: Epoch | None) -> None:
    _seed(store)
    names = ["num", "flag", "word", "count", "absent"]
    for order in ("asc", "desc"):
        table = queries.raw_readings_table(store, IDENTITY, names, TimeRange(), 100, 0, order)
        got = signal_json.points_by_signal(table, names, epoch)
        rows = queries.reading_rows(table, names)
        assert sum(len(r) for r in rows.values()) == 13
        for name in names:
            want = [
                {
                    "timestamp": format_time(r["ts_us"], epoch),
                    "value": r["value"],
                    "quality": r["quality"],
                }
                for r in rows[name]
            ]
            assert orjson.dumps({"data": got[name][0]}) == reference(want)
            assert got[name][1] == len(want)
    table = queries.raw_readings_table(store, IDENTITY, ["count"], TimeRange(), 100, 0, "asc")
    exact = queries.reading_rows(table, ["count"])
    assert [r["value"] for r in exact["count"]] == [7, 2**53 + 1, -3]


def test_row_path_values_as_clickhouse_json_gave_them(store: ChdbStore) -> None:
    """The row path (now read from Arrow) types values as it did from JSONCompact."""
    _seed(store)
    old = store.execute(
        "SELECT signal, toUnixTimestamp64Micro(ts), value, text, kind, quality "
        "FROM millrace.readings ORDER BY signal, ts"
    ).rows
    names = sorted({r[0] for r in old})
    table = queries.raw_readings_table(store, IDENTITY, names, TimeRange(), 100, 0, "asc")
    new = queries.reading_rows(table, names)
    want = [(s, int(ts), typed_value(k, v, t), q) for s, ts, v, t, k, q in old]
    got = [(s, r["ts_us"], r["value"], r["quality"]) for s in names for r in new[s]]
    assert orjson.dumps(got) == orjson.dumps(want)


@pytest.mark.parametrize("epoch", EPOCHS)
def test_latest_as_the_row_path(store: ChdbStore, epoch: Epoch | None) -> None:
    _seed(store)
    table, total = queries.latest_table(store, None, None, "signal", True, 100, 0)
    rows = queries.latest_rows(table)
    assert total == len(rows) == 4
    want = [
        {
            "identity": r["identity"],
            "signal": r["signal"],
            "timestamp": format_time(r["ts_us"], epoch),
            "value": r["value"],
            "quality": r["quality"],
            "received": format_time(r["received_us"], epoch),
        }
        for r in rows
    ]
    data, count = signal_json.latest(table, epoch)
    assert orjson.dumps({"data": data}) == reference(want) and count == 4


@pytest.mark.parametrize("time_format", ["iso", "s", "ms", "us"])
def test_numeric_aggregates_as_the_row_path(store: ChdbStore, time_format: Any) -> None:
    values = [1.25, -3.0, 1e20, 0.1, 7.5, 2.0]
    for i, v in enumerate(values):
        store.execute(
            "INSERT INTO millrace.agg_1h (identity, signal, bucket, kind, count, num_count, "
            "sum, min, max, first, last) SELECT 'dev-1', 'num', "
            "toDateTime({b:Int64}, 'UTC'), 0, 1, 1, {v:Float64}, {v:Float64}, {v:Float64}, "
            "({t:Int64}, {v:Float64}, ''), ({t:Int64}, {v:Float64}, '')",
            {"b": 1_767_225_600 + (i // 2) * 3600, "v": v, "t": BASE_US + i},
        )
    table = queries.aggregates_table(
        store, IDENTITY, ["num"], "1h", TimeRange(), 100, 0, "asc", time_format
    )
    assert queries.numbers_only(table)
    for fields in (list(queries.AGG_FIELDS), ["last", "count"], ["avg"]):
        want = queries.aggregate_points(table, ["num"], fields)["num"]
        assert len(want) == 3
        got, count = signal_json.aggregate_points(table, fields)
        assert orjson.dumps({"data": got}) == reference(want) and count == 3
