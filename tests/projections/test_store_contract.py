"""The ProjectionStore contract, run by every adapter, and ClickHouseServerStore offline.

The server adapter runs against ``MILLRACE_CLICKHOUSE_URL`` (e.g.
``clickhouse://default:@localhost:9000/default``) and is skipped without it.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator

import pyarrow as pa
import pytest

from millrace.pipeline.errors import StoreError
from millrace.projections.migrations import drop_projections, migrate
from millrace.projections.store.base import ProjectionStore
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.store.clickhouse import (
    ClickHouseServerStore,
    input_structure,
    render_insert,
)

SERVER_URL = os.environ.get("MILLRACE_CLICKHOUSE_URL")
NO_SERVER = "MILLRACE_CLICKHOUSE_URL not set: no ClickHouse server to test against"


@pytest.fixture(
    params=[
        "chdb",
        pytest.param(
            "server",
            marks=[pytest.mark.integration, pytest.mark.skipif(not SERVER_URL, reason=NO_SERVER)],
        ),
    ]
)
def any_store(request: pytest.FixtureRequest) -> Iterator[ProjectionStore]:
    if request.param == "chdb":
        store: ChdbStore = request.getfixturevalue("store")
        yield store
        return
    assert SERVER_URL
    server = ClickHouseServerStore(SERVER_URL)
    drop_projections(server)
    migrate(server)
    try:
        yield server
    finally:
        server.close()


TRICKY = ["plain", "it's", 'dq"', "back\\slash", "new\nline", "tab\tx", "\\'", "{x:String}", "%s"]


@pytest.mark.parametrize("value", TRICKY)
def test_string_params_round_trip(any_store: ProjectionStore, value: str) -> None:
    res = any_store.execute("SELECT {v:String} AS v, length({v:String})", {"v": value})
    assert res.rows == [[value, len(value.encode())]]
    assert res.columns[0] == "v"
    assert res.types == ["String", "UInt64"]


def test_array_and_int_params(any_store: ProjectionStore) -> None:
    res = any_store.execute(
        "SELECT {a:Array(String)}, {n:Int64}, {u:UInt8}, {f:Float64}",
        {"a": TRICKY, "n": -(2**62), "u": True, "f": 1.5},
    )
    assert res.rows == [[TRICKY, -(2**62), 1, 1.5]]


def test_params_select_rows_not_text(any_store: ProjectionStore) -> None:
    res = any_store.execute(
        "SELECT count() FROM numbers(10) WHERE toString(number) IN {s:Array(String)}",
        {"s": ["1", "2", "x') OR 1=1 --"]},
    )
    assert res.rows == [[2]]


def test_settings_apply(any_store: ProjectionStore) -> None:
    with pytest.raises(StoreError):
        any_store.execute(
            "SELECT number FROM numbers(100)",
            settings={"max_result_rows": 5, "result_overflow_mode": "throw"},
        )


def test_query_arrow_types(any_store: ProjectionStore) -> None:
    t = any_store.query_arrow(
        "SELECT toInt64(number) AS i, toUInt8(1) AS u, toFloat64(number) / 2 AS f, "
        "toString(number) AS s FROM numbers(3) WHERE number < {n:UInt32} ORDER BY i",
        {"n": 3},
    )
    assert t.column_names == ["i", "u", "f", "s"]
    assert t.schema.field("i").type == pa.int64()
    assert t.schema.field("u").type == pa.uint8()
    assert t.schema.field("f").type == pa.float64()
    assert pa.types.is_string(t.schema.field("s").type) or pa.types.is_large_string(
        t.schema.field("s").type
    )
    assert t.column("i").to_pylist() == [0, 1, 2]
    assert t.column("s").to_pylist() == ["0", "1", "2"]


def _readings(n: int) -> pa.Table:
    return pa.table(
        {
            "identity": ["dev-1"] * n,
            "signal": ["temp\n'quoted'"] * n,
            "ts": pa.array([1_700_000_000_000_000 + i for i in range(n)], pa.int64()),
            "value": pa.array([float(i) for i in range(n)], pa.float64()),
            "text": [""] * n,
            "kind": pa.array([0] * n, pa.uint8()),
            "quality": pa.array([0] * n, pa.int32()),
        }
    )


READINGS_INSERT = """INSERT INTO millrace.readings
SELECT identity, signal, fromUnixTimestamp64Micro(ts, 'UTC'), value, text, kind, quality
FROM {input}"""


def test_insert_arrow_with_token_twice_is_one_copy(any_store: ProjectionStore) -> None:
    settings = {"insert_deduplicate": 1, "insert_deduplication_token": "batch-1/readings"}
    for _ in range(2):
        any_store.insert_arrow(READINGS_INSERT, _readings(5), settings=settings)
    res = any_store.execute(
        "SELECT count(), sum(value), any(signal) FROM millrace.readings "
        "WHERE identity = {i:String}",
        {"i": "dev-1"},
    )
    assert res.rows == [[5, 10.0, "temp\n'quoted'"]]
    any_store.insert_arrow(
        READINGS_INSERT, _readings(5), settings={**settings, "insert_deduplication_token": "b-2"}
    )
    assert any_store.execute("SELECT count() FROM millrace.readings").rows == [[10]]


def test_errors_are_store_errors(any_store: ProjectionStore) -> None:
    with pytest.raises(StoreError):
        any_store.execute("SELEC 1")
    with pytest.raises(StoreError):
        any_store.query_arrow("SELECT * FROM millrace.no_such_table")
    with pytest.raises(StoreError):
        any_store.insert_arrow(
            "INSERT INTO millrace.no_such_table SELECT * FROM {input}", _readings(1)
        )
    # the store still works after an error
    assert any_store.execute("SELECT 1").rows == [[1]]


# --- ClickHouseServerStore without a server ---------------------------------------------


def test_url_parsing_does_no_io() -> None:
    s = ClickHouseServerStore("clickhouse://user:p%40ss@db.example:9440/metrics?secure=true")
    assert s.host == "db.example"
    kw = s.client_kwargs
    assert (kw["port"], kw["user"], kw["password"], kw["database"]) == (
        9440,
        "user",
        "p@ss",
        "metrics",
    )
    assert kw["secure"] is True
    assert kw["settings"]["server_side_params"] is True
    assert (
        ClickHouseServerStore("clickhouse://h:9000/default?secure=false").client_kwargs["secure"]
        is False
    )


@pytest.mark.parametrize("url", ["http://h:8123/", "clickhouse:///default", "h:9000"])
def test_bad_urls_raise(url: str) -> None:
    with pytest.raises(StoreError):
        ClickHouseServerStore(url)


def test_input_structure_from_arrow() -> None:
    schema = pa.schema(
        [
            ("s", pa.string()),
            ("i64", pa.int64()),
            ("u8", pa.uint8()),
            ("i32", pa.int32()),
            ("f64", pa.float64()),
            ("u64", pa.uint64()),
            ("u32", pa.uint32()),
            ("count", pa.float64()),
            ("tags", pa.list_(pa.string())),
            ("at", pa.timestamp("us", tz="UTC")),
        ]
    )
    assert input_structure(schema, frozenset({"count"})) == (
        "`s` String, `i64` Int64, `u8` UInt8, `i32` Int32, `f64` Float64, `u64` UInt64, "
        "`u32` UInt32, `count` Nullable(Float64), `tags` Array(String), "
        "`at` DateTime64(6, 'UTC')"
    )
    with pytest.raises(StoreError):
        input_structure(pa.schema([("x", pa.struct([("a", pa.int8())]))]))


def test_render_insert_binds_input_and_places_settings() -> None:
    table = pa.table(
        {
            "a": ["x"],
            "b": pa.array([1.0], pa.float64()),
            "c": pa.array([None], pa.string()),
        }
    )
    sql = "INSERT INTO db.t\n(a, b)\nSELECT a, b FROM {input}"
    text = render_insert(
        sql, table, {"insert_deduplication_token": "it's", "insert_deduplicate": 1}
    )
    assert text == (
        "INSERT INTO db.t\n(a, b) SETTINGS insert_deduplication_token = 'it\\'s', "
        "insert_deduplicate = 1\nSELECT a, b FROM "
        "input('`a` String, `b` Float64, `c` Nullable(String)')"
    )
    plain = render_insert("INSERT INTO t SELECT * FROM {input}", table, None)
    assert "SETTINGS" not in plain


def test_render_insert_is_checked() -> None:
    table = pa.table({"a": [1]})
    with pytest.raises(StoreError, match="input"):
        render_insert("INSERT INTO t SELECT 1", table, None)
    with pytest.raises(StoreError, match="INSERT INTO"):
        render_insert("WITH 1 AS x SELECT * FROM {input}", table, {"a": 1})


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_a_store_error_quickly() -> None:
    store = ClickHouseServerStore(
        f"clickhouse://127.0.0.1:{_unused_port()}/default?connect_timeout=2"
    )
    start = time.monotonic()
    try:
        with pytest.raises(StoreError) as info:
            store.execute("SELECT 1")
        assert info.value.__cause__ is not None
        with pytest.raises(StoreError):
            store.insert_arrow("INSERT INTO t SELECT * FROM {input}", pa.table({"a": [1]}))
        with pytest.raises(StoreError):
            store.query_arrow("SELECT 1")
    finally:
        store.close()
    assert time.monotonic() - start < 10
    with pytest.raises(StoreError, match="closed"):
        store.execute("SELECT 1")


def test_missing_driver_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "clickhouse_driver", None)
    monkeypatch.setitem(sys.modules, "clickhouse_driver.util.helpers", None)
    with pytest.raises(StoreError, match=r"pip install 'millrace\[clickhouse\]'"):
        ClickHouseServerStore("clickhouse://localhost:9000/default")
