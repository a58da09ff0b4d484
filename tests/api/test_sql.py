"""POST /sql: read-only SQL for analysts.

Every test gets its own chDB read session (see conftest), and checks that nothing was
written through the writer's session, which the API never uses.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.context import ApiSettings
from projections.store.chdb import ChdbStore
from tests.api.conftest import NOW_US, Api, MakeApi, assert_bad_field, error_of, uid

TABLES = ("readings", "agg_1m", "agg_5m", "agg_1h", "latest", "progress", "deadletter")


@pytest.fixture
async def sql_api(make_api: MakeApi) -> Api:
    return await make_api(settings=ApiSettings(sql_max_rows=50, sql_timeout_s=2.0))


@pytest.fixture
def victim(writer_store: ChdbStore) -> Iterator[str]:
    """A throw-away table with one row, for statements that try to destroy things."""
    name = f"default.victim_{uuid.uuid4().hex[:10]}"
    writer_store.execute(f"CREATE TABLE {name} (x Int32) ENGINE = MergeTree ORDER BY x")
    writer_store.execute(f"INSERT INTO {name} VALUES (42)")
    yield name
    writer_store.execute(f"DROP TABLE IF EXISTS {name} SYNC")


def table_rows(store: ChdbStore, table: str) -> int | None:
    """Rows in ``table`` seen through the writer's session, None if it is gone."""
    if not store.execute(f"EXISTS TABLE {table}").rows[0][0]:
        return None
    return int(store.execute(f"SELECT count() FROM {table}").rows[0][0])


def assert_projections_intact(store: ChdbStore) -> None:
    for table in TABLES:
        assert store.execute(f"EXISTS TABLE millrace.{table}").rows == [[1]], table


async def test_select_returns_columns_and_rows(sql_api: Api) -> None:
    identity = uid()
    body = [
        {"timestamp": NOW_US - 3, "values": {"a": 1.5, "b": 10}},
        {"timestamp": NOW_US - 2, "values": {"a": 2.5}},
    ]
    assert (await sql_api.ingest(identity, body)).status_code == 202
    await sql_api.sync()
    r = await sql_api.sql(
        "SELECT signal, count() AS n, sum(value) AS total FROM millrace.readings "
        f"WHERE identity = '{identity}' GROUP BY signal ORDER BY signal"
    )
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["columns"] == [
        {"name": "signal", "type": "LowCardinality(String)"},
        {"name": "n", "type": "UInt64"},
        {"name": "total", "type": "Float64"},
    ]
    assert result["rows"] == [["a", 2, 4.0], ["b", 1, 10.0]]
    assert result["meta"]["rows"] == 2
    assert result["meta"]["rows_read"] >= 3
    assert result["meta"]["elapsed_ms"] >= 0


@pytest.mark.parametrize(
    "query,rows",
    [
        ("SELECT 1 AS one", [[1]]),
        ("SELECT 1 AS one;", [[1]]),
        ("SELECT 1 AS one ;  \n", [[1]]),
        ("SELECT ';' AS semi", [[";"]]),
        ("SELECT 'it''s; fine' AS s", [["it's; fine"]]),
        ("SELECT 'a\\'; b' AS s", [["a'; b"]]),
        ("SELECT 1 AS one -- trailing; comment", [[1]]),
        ("SELECT /* ; */ 2 AS two", [[2]]),
        ("WITH 3 AS x SELECT x", [[3]]),
        ("SELECT number FROM numbers(3) ORDER BY number DESC", [[2], [1], [0]]),
        ("SELECT number FROM numbers(50)", [[i] for i in range(50)]),
        ("SELECT 1 SETTINGS max_threads = 1", [[1]]),
    ],
)
async def test_read_queries(sql_api: Api, query: str, rows: list[list[object]]) -> None:
    r = await sql_api.sql(query)
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == rows


async def test_show_tables_and_describe(sql_api: Api) -> None:
    r = await sql_api.sql("SHOW TABLES FROM millrace")
    assert r.status_code == 200, r.text
    names = {row[0] for row in r.json()["rows"]}
    assert set(TABLES) <= names
    r = await sql_api.sql("DESCRIBE millrace.readings")
    assert r.status_code == 200, r.text
    columns = r.json()["columns"]
    assert columns[0]["name"] == "name"
    described = {row[0]: row[1] for row in r.json()["rows"]}
    assert described["ts"] == "DateTime64(6, 'UTC')"
    assert list(described) == ["identity", "signal", "ts", "value", "text", "kind", "quality"]


@pytest.mark.parametrize(
    "query",
    [
        "SHOW DATABASES",
        "SHOW CREATE TABLE millrace.readings",
        "EXISTS TABLE millrace.readings",
        "DESC millrace.latest",
        "SELECT name FROM system.tables WHERE database = 'millrace'",
    ],
)
async def test_other_read_statements(sql_api: Api, query: str) -> None:
    r = await sql_api.sql(query)
    assert r.status_code == 200, r.text
    assert r.json()["rows"]


WRITES = [
    "INSERT INTO millrace.readings (identity, signal, ts) VALUES ('x', 'y', now64())",
    "INSERT INTO millrace.readings SELECT * FROM millrace.readings",
    "INSERT INTO FUNCTION file('/tmp/millrace-sql-test.csv', 'CSV') SELECT 1",
    "DROP TABLE millrace.readings",
    "DROP TABLE IF EXISTS millrace.readings SYNC",
    "DROP DATABASE millrace",
    "ALTER TABLE millrace.readings DELETE WHERE 1",
    "ALTER TABLE millrace.readings ADD COLUMN z Int8",
    "ALTER TABLE millrace.readings DROP PARTITION 202506",
    "DELETE FROM millrace.readings WHERE 1",
    "CREATE TABLE default.sql_test (x Int8) ENGINE = Memory",
    "CREATE DATABASE sql_test",
    "CREATE VIEW default.sql_test AS SELECT 1",
    "CREATE USER sql_test",
    "OPTIMIZE TABLE millrace.readings FINAL",
    "SET readonly = 0",
    "TRUNCATE TABLE millrace.readings",
    "RENAME TABLE millrace.readings TO millrace.gone",
    "EXCHANGE TABLES millrace.readings AND millrace.latest",
    "DETACH TABLE millrace.readings",
    "ATTACH TABLE millrace.readings",
    "SYSTEM STOP MERGES",
    "SYSTEM DROP MARK CACHE",
    "KILL QUERY WHERE 1",
    "GRANT ALL ON *.* TO default",
    "USE system",
]


@pytest.mark.parametrize("query", WRITES)
async def test_statements_that_write_are_403(
    sql_api: Api, writer_store: ChdbStore, query: str
) -> None:
    before = table_rows(writer_store, "millrace.readings")
    r = await sql_api.sql(query)
    assert r.status_code == 403, r.text
    err = error_of(r)
    assert err["code"] == "read_only"
    assert err["details"][0]["field"] == "query"
    assert "query" in err["message"]
    assert_projections_intact(writer_store)
    assert table_rows(writer_store, "millrace.readings") == before
    assert not Path("/tmp/millrace-sql-test.csv").exists()


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "SELECT * FROM file('/etc/hostname', 'LineAsString') SETTINGS readonly = 0",
        "SELECT * FROM (SELECT * FROM file('/etc/passwd', 'LineAsString'))",
        "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
    ],
)
async def test_file_and_url_table_functions_are_403(sql_api: Api, query: str) -> None:
    r = await sql_api.sql(query)
    assert r.status_code == 403, r.text
    assert error_of(r)["code"] == "read_only"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1; DROP TABLE {victim}",
        "SELECT 1;DROP TABLE {victim};",
        "SELECT ';'; DROP TABLE {victim}",
        "SELECT 1 -- c\n; DROP TABLE {victim}",
        "SELECT 1 /* ; */; DROP TABLE {victim}",
        "SELECT 1;\n\nDROP TABLE {victim}",
        "SELECT 1; SELECT 2",
    ],
)
async def test_several_statements_are_400_and_nothing_runs(
    sql_api: Api, writer_store: ChdbStore, victim: str, query: str
) -> None:
    r = await sql_api.sql(query.format(victim=victim))
    assert_bad_field(r, "query")
    assert table_rows(writer_store, victim) == 1


async def test_select_then_drop_readings_leaves_readings(
    sql_api: Api, writer_store: ChdbStore
) -> None:
    r = await sql_api.sql("SELECT 1; DROP TABLE millrace.readings")
    assert_bad_field(r, "query")
    assert "one statement" in error_of(r)["message"]
    assert_projections_intact(writer_store)
    r = await sql_api.sql("EXISTS TABLE millrace.readings")
    assert r.json()["rows"] == [[1]]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1 # '\n; DROP TABLE {victim} --'",
        "SELECT 1 #! '\n; DROP TABLE {victim} --'",
        "SELECT $$ ' $$; DROP TABLE {victim}; -- '",
    ],
    ids=["hash comment", "shebang comment", "heredoc"],
)
async def test_hidden_second_statement_does_not_run(
    sql_api: Api, writer_store: ChdbStore, victim: str, query: str
) -> None:
    r = await sql_api.sql(query.format(victim=victim), key="viewer")
    assert r.status_code in (400, 403), r.text
    assert table_rows(writer_store, victim) == 1


@pytest.mark.parametrize(
    "statement",
    ["SHOW TABLES FROM millrace", "DESCRIBE millrace.readings", "EXISTS TABLE millrace.latest"],
)
async def test_into_outfile_writes_no_file(sql_api: Api, tmp_path: Path, statement: str) -> None:
    target = tmp_path / "written-by-sql.txt"
    r = await sql_api.sql(f"{statement} INTO OUTFILE '{target}'")
    assert not target.exists(), f"the SQL endpoint wrote {target}"
    assert r.status_code in (400, 403), r.text


@pytest.mark.parametrize(
    "query",
    [
        "SELECT number FROM numbers(51)",
        "SELECT number FROM system.numbers",
        "SELECT * FROM (SELECT number FROM numbers(1000)) ORDER BY number",
    ],
)
async def test_more_rows_than_the_limit_is_4xx(sql_api: Api, query: str) -> None:
    r = await sql_api.sql(query)
    assert 400 <= r.status_code < 500, r.text
    assert error_of(r)["details"][0]["field"] == "query"


async def test_max_rows_in_the_request_lowers_the_limit(sql_api: Api) -> None:
    r = await sql_api.sql("SELECT number FROM numbers(5)", max_rows=5)
    assert r.status_code == 200, r.text
    assert len(r.json()["rows"]) == 5


async def test_max_rows_in_the_request_below_the_result_is_4xx(sql_api: Api) -> None:
    r = await sql_api.sql("SELECT number FROM numbers(6)", max_rows=5)
    assert 400 <= r.status_code < 500, r.text


async def test_max_rows_cannot_raise_the_server_cap(sql_api: Api) -> None:
    r = await sql_api.sql("SELECT number FROM numbers(51)", max_rows=1000)
    assert 400 <= r.status_code < 500, r.text


async def test_a_slow_query_is_stopped(make_api: MakeApi) -> None:
    api = await make_api(settings=ApiSettings(sql_timeout_s=0.5))
    started = time.monotonic()
    r = await api.sql("SELECT count() FROM numbers(1000000000000)")
    assert time.monotonic() - started < 10
    assert 400 <= r.status_code < 500, r.text
    assert "query" in error_of(r)["message"]


@pytest.mark.parametrize(
    "query",
    ["SELEC 1", "SELECT FROM", "SELECT 'unterminated", "SELECT (1", "   ", ";", "-- only"],
)
async def test_syntax_errors_are_400_naming_query(sql_api: Api, query: str) -> None:
    assert_bad_field(await sql_api.sql(query), "query")


@pytest.mark.parametrize(
    "body,field_name",
    [
        ({}, "body.query"),
        ({"query": ""}, "body.query"),
        ({"query": 1}, "body.query"),
        ({"query": "SELECT 1", "database": "system"}, "body.database"),
        ({"query": "SELECT 1", "max_rows": 0}, "body.max_rows"),
    ],
)
async def test_bad_sql_request_bodies(
    sql_api: Api, body: dict[str, object], field_name: str
) -> None:
    r = await sql_api.client.post("/api/v1/sql", json=body, headers=sql_api.auth(sql_api.viewer))
    assert_bad_field(r, field_name)


async def test_explain_is_allowed(sql_api: Api) -> None:
    r = await sql_api.sql("EXPLAIN SELECT 1")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "failing",
    ["SELECT number FROM numbers(51)", "SELECT throwIf(number = 3) FROM numbers(10)"],
)
async def test_a_failed_query_does_not_break_the_next_one(sql_api: Api, failing: str) -> None:
    r = await sql_api.sql(failing)
    assert r.status_code == 400, r.text
    r = await sql_api.sql("SELECT 1 AS one")
    assert r.status_code == 200, r.text
    r = await sql_api.get(f"/identities/{uid()}/signals/x")
    assert r.status_code == 200, r.text


async def test_wide_integers_are_rendered(sql_api: Api) -> None:
    r = await sql_api.sql("SELECT toUInt128('340282366920938463463374607431768211455') AS x")
    assert r.status_code == 200, r.text


async def test_a_syntax_error_at_the_end_is_400_not_403(sql_api: Api) -> None:
    assert_bad_field(await sql_api.sql("SELECT 1 FORMAT CSV"), "query")


async def test_format_clause_on_describe_is_not_500(sql_api: Api) -> None:
    r = await sql_api.sql("DESCRIBE millrace.readings FORMAT CSV")
    assert r.status_code < 500, r.text
