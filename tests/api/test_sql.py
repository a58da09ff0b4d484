"""POST /sql: analyst SQL in the sandbox (projections.sandbox).

Every test gets its own chDB read session (see conftest), and checks that nothing was
written through the writer's session, which the API never uses. The holes of issue 12
are reproduced here: files and URLs through table functions (also under DESCRIBE),
credential hashes and the audit trail through plain SELECTs, no memory limit, no
concurrency limit.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from millrace.api.context import ApiSettings
from millrace.projections.store.base import ProjectionStore, QueryResult
from millrace.projections.store.chdb import ChdbStore
from tests.api.conftest import NOW_US, Api, MakeApi, assert_bad_field, error_of, uid

TABLES = ("readings", "agg_1m", "agg_5m", "agg_1h", "latest", "progress", "deadletter")
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0c2FsdA$sandboxtesthashdonotleak"
ROWS_51 = "SELECT x FROM (SELECT arrayJoin(range(51)) AS x)"
#: a query that runs for minutes and needs almost no memory
SLOW = (
    "SELECT sum(cityHash64(x, y)) FROM (SELECT arrayJoin(range(100000)) AS x) AS a "
    "CROSS JOIN (SELECT arrayJoin(range(100000)) AS y) AS b"
)


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


@pytest.fixture
def secret_identity(writer_store: ChdbStore) -> str:
    """An identity whose row holds a credential hash, and a dead letter of an identity
    event carrying the same hash (as a rejected identity event's payload does)."""
    identity = uid("secret")
    writer_store.execute(
        "INSERT INTO millrace.identities (identity, version, present, status, auth_type, "
        "credential_hash) VALUES ({i:String}, 1, 1, 'provisioned', 'password', {h:String})",
        {"i": identity, "h": HASH},
    )
    for topic, offset in (("identity", 1), ("telemetry", 2)):
        writer_store.execute(
            "INSERT INTO millrace.deadletter (ts, source_topic, source_partition, "
            "source_offset, stage, error_type, reason, key, payload) VALUES (now64(6), "
            "{t:String}, 0, {o:Int64}, 'apply', 'IdentityRejected', 'no', {i:String}, "
            "{p:String})",
            {"t": topic, "o": 10**12 + offset, "i": identity, "p": f"{{'hash': '{HASH}'}}"},
        )
    return identity


def table_rows(store: ChdbStore, table: str) -> int | None:
    """Rows in ``table`` seen through the writer's session, None if it is gone."""
    if not store.execute(f"EXISTS TABLE {table}").rows[0][0]:
        return None
    return int(store.execute(f"SELECT count() FROM {table}").rows[0][0])


def assert_projections_intact(store: ChdbStore) -> None:
    for table in TABLES:
        assert store.execute(f"EXISTS TABLE millrace.{table}").rows == [[1]], table


def assert_refused(r: Any, code: str | tuple[str, ...], status: int = 403) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = error_of(r)
    assert err["code"] in ((code,) if isinstance(code, str) else code), err
    assert err["details"][0]["field"] == "query"
    assert err["message"].startswith("query: ")
    return err


# -- what runs ------------------------------------------------------------------------------


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
        ("SELECT x FROM (SELECT arrayJoin(range(3)) AS x) ORDER BY x DESC", [[2], [1], [0]]),
        ("SELECT arrayJoin(range(50)) AS x", [[i] for i in range(50)]),
        ("WITH c AS (SELECT 1 AS x) SELECT x FROM c", [[1]]),
        ("SELECT * FROM (SELECT 1 AS x UNION ALL SELECT 2 AS x) ORDER BY x", [[1], [2]]),
        ("SELECT 1 INTERSECT SELECT 1", [[1]]),
        ("SELECT format('{} {}', 'a', 'b') AS s", [["a b"]]),
        (
            "SELECT 'file(x)' AS s, 'SETTINGS readonly = 0' AS t",
            [["file(x)", "SETTINGS readonly = 0"]],
        ),
    ],
)
async def test_read_queries(sql_api: Api, query: str, rows: list[list[object]]) -> None:
    r = await sql_api.sql(query)
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == rows


@pytest.mark.parametrize(
    "query",
    [
        "SELECT count() FROM millrace.latest FINAL",
        "SELECT r.signal, l.value FROM millrace.readings AS r "
        "JOIN millrace.latest AS l ON r.identity = l.identity AND r.signal = l.signal LIMIT 1",
        "SELECT count() FROM millrace.agg_1m WHERE identity IN "
        "(SELECT identity FROM millrace.identities_public)",
        "SELECT (SELECT count() FROM millrace.alarms) AS n",
        "SELECT * FROM millrace.deadletter_public LIMIT 1",
        "SELECT count() FROM millrace.readings WHERE (identity, signal) IN "
        "(SELECT identity, signal FROM millrace.latest)",
        "SELECT identity FROM millrace.identity_seen UNION ALL "
        "SELECT name FROM millrace.resource_defs LIMIT 1",
        "EXPLAIN SELECT * FROM millrace.latest",
        "EXPLAIN indexes = 1 SELECT * FROM millrace.latest WHERE identity = 'x'",
        "EXPLAIN SYNTAX SELECT 1",
        "EXPLAIN AST SELECT * FROM millrace.readings",
        "DESCRIBE millrace.identities_public",
        "DESC (SELECT 1 AS x)",
    ],
)
async def test_allowed_tables_and_statements_run(sql_api: Api, query: str) -> None:
    r = await sql_api.sql(query)
    assert r.status_code == 200, r.text


async def test_describe(sql_api: Api) -> None:
    r = await sql_api.sql("DESCRIBE millrace.readings")
    assert r.status_code == 200, r.text
    assert r.json()["columns"][0]["name"] == "name"
    described = {row[0]: row[1] for row in r.json()["rows"]}
    assert described["ts"] == "DateTime64(6, 'UTC')"
    assert list(described) == ["identity", "signal", "ts", "value", "text", "kind", "quality"]


# -- files, URLs and other table functions --------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "DESCRIBE TABLE file('/etc/passwd', 'TSVWithNames')",
        "DESC file('/etc/passwd')",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM file('/etc/hostname', 'LineAsString') SETTINGS readonly = 0",
        "SELECT * FROM (SELECT * FROM file('/etc/passwd', 'LineAsString'))",
        "WITH f AS (SELECT * FROM file('/etc/passwd', 'LineAsString')) SELECT * FROM f",
        "SELECT 1 FROM millrace.latest JOIN file('/etc/passwd', 'LineAsString') ON 1",
        "SELECT 1 UNION ALL SELECT count() FROM file('/etc/passwd', 'LineAsString')",
        "SELECT 1 WHERE 'root' IN (SELECT * FROM file('/etc/passwd', 'LineAsString'))",
        "SELECT (SELECT any(line) FROM file('/etc/passwd', 'LineAsString')) AS x",
        "SELECT * FROM FILE('/etc/passwd', 'LineAsString')",
        "EXPLAIN SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "DESC (SELECT * FROM file('/etc/passwd', 'LineAsString'))",
    ],
)
async def test_files_are_refused(sql_api: Api, query: str) -> None:
    r = await sql_api.sql(query)
    err = assert_refused(r, "table_function_not_allowed")
    assert "file" in err["message"].lower()
    assert "root:" not in r.text


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    return sock


@pytest.mark.parametrize(
    "template",
    [
        "SELECT * FROM url('http://127.0.0.1:{port}/', 'LineAsString')",
        "DESCRIBE TABLE url('http://127.0.0.1:{port}/', 'LineAsString')",
        "DESCRIBE TABLE s3('http://127.0.0.1:{port}/bucket/key.csv', 'CSV')",
        "SELECT * FROM remote('127.0.0.1:{port}', system.one)",
        "SELECT * FROM remoteSecure('127.0.0.1:{port}', system.one)",
        "SELECT * FROM mysql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
        "SELECT * FROM postgresql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
        "SELECT 1 WHERE 1 IN (SELECT 1 FROM url('http://127.0.0.1:{port}/', 'LineAsString'))",
        "SELECT hasColumnInTable('127.0.0.1:{port}', 'system', 'one', 'dummy')",
    ],
)
async def test_network_is_not_reached(sql_api: Api, template: str) -> None:
    sock = _listener()
    try:
        port = sock.getsockname()[1]
        r = await sql_api.sql(template.format(port=port))
        assert_refused(r, ("table_function_not_allowed", "function_not_allowed"))
        with pytest.raises(BlockingIOError):
            sock.accept()  # nobody connected
    finally:
        sock.close()


@pytest.mark.parametrize(
    "query,offender",
    [
        ("SELECT length(groupArray(number)) FROM numbers(300000000)", "numbers"),
        ("SELECT * FROM zeros(10)", "zeros"),
        ("SELECT * FROM generateRandom('a Int8') LIMIT 1", "generateRandom"),
        ("SELECT * FROM executable('x.sh', 'TSV', 'a String')", "executable"),
        ("SELECT * FROM input('a String')", "input"),
        ("SELECT * FROM merge('millrace', '^identities$')", "merge"),
        ("SELECT * FROM view(SELECT 1)", "view"),
        ("SELECT * FROM cluster('default', system.one)", "cluster"),
        ("SELECT * FROM format(CSV, '1')", "format"),
        ("SELECT * FROM Python(x)", "Python"),
        ("SELECT 1 WHERE 1 IN numbers(3)", "numbers"),
        ("SELECT * FROM jdbc('x', 'y')", "jdbc"),
        ("SELECT * FROM odbc('x', 'y', 'z')", "odbc"),
        ("SELECT * FROM hdfs('hdfs://x/y', 'CSV')", "hdfs"),
    ],
)
async def test_every_table_function_is_refused(sql_api: Api, query: str, offender: str) -> None:
    err = assert_refused(await sql_api.sql(query), "table_function_not_allowed")
    assert offender in err["message"]


@pytest.mark.parametrize(
    "query,offender",
    [
        ("SELECT file('/etc/passwd')", "file"),
        ("SELECT dictGet('d', 'a', 1)", "dictGet"),
        ("SELECT dictGetOrDefault('d', 'a', 1, 'x')", "dictGetOrDefault"),
        ("SELECT joinGet('millrace.identities', 'credential_hash', 'x')", "joinGet"),
        ("SELECT getSetting('max_memory_usage')", "getSetting"),
        ("SELECT getServerSetting('user_files_path')", "getServerSetting"),
        ("SELECT sleep(1)", "sleep"),
        ("SELECT filesystemAvailable()", "filesystemAvailable"),
    ],
)
async def test_functions_that_reach_outside_are_refused(
    sql_api: Api, query: str, offender: str
) -> None:
    err = assert_refused(await sql_api.sql(query), "function_not_allowed")
    assert offender in err["message"]


# -- secrets ---------------------------------------------------------------------------------

LEAKS = [
    "SELECT credential_hash FROM millrace.identities",
    "SELECT * FROM millrace.identities",
    "SELECT * FROM millrace.`identities`",
    "SELECT * FROM `millrace`.`identities` AS i",
    "SELECT * FROM millrace.identities FINAL WHERE identity = '{identity}'",
    "DESCRIBE millrace.identities",
    "EXPLAIN SYNTAX SELECT * FROM millrace.identities",
    "SELECT 1 WHERE '{hash}' IN millrace.identities",
    "SELECT count() FROM millrace.latest WHERE identity IN "
    "(SELECT identity FROM millrace.identities WHERE credential_hash != '')",
    "WITH s AS (SELECT credential_hash FROM millrace.identities) SELECT * FROM s",
    "SELECT p.identity, i.credential_hash FROM millrace.identities_public AS p "
    "JOIN millrace.identities AS i USING identity",
    "SELECT identity FROM millrace.identities_public UNION ALL "
    "SELECT credential_hash FROM millrace.identities",
    "SELECT (SELECT any(credential_hash) FROM millrace.identities) AS h",
    "SELECT toUInt8((SELECT any(credential_hash) FROM millrace.identities))",
    "SELECT credential_hash FROM millrace.identities_public",
    "SELECT payload FROM millrace.deadletter",
    "SELECT * FROM merge('millrace', '^identities$')",
    "SELECT * FROM system.tables WHERE database = 'millrace'",
    "SELECT * FROM system.query_log",
    "SHOW CREATE TABLE millrace.identities",
    "SELECT joinGet('millrace.identities', 'credential_hash', '{identity}')",
    "SELECT millrace.identities.credential_hash FROM millrace.identities_public",
]


@pytest.mark.parametrize("query", LEAKS)
async def test_credential_hashes_are_unreachable(
    sql_api: Api, secret_identity: str, query: str
) -> None:
    for key in ("viewer", "operator", "admin"):
        r = await sql_api.sql(query.format(identity=secret_identity, hash=HASH), key=key)
        assert r.status_code in (400, 403), r.text
        assert HASH not in r.text
        assert "argon2" not in r.text


async def test_analysts_read_identities_without_hashes(sql_api: Api, secret_identity: str) -> None:
    r = await sql_api.sql(
        f"SELECT * FROM millrace.identities_public WHERE identity = '{secret_identity}'"
    )
    assert r.status_code == 200, r.text
    columns = [c["name"] for c in r.json()["columns"]]
    assert "credential_hash" not in columns
    assert {"identity", "status", "auth_type", "attributes", "tags"} <= set(columns)
    assert len(r.json()["rows"]) == 1
    assert HASH not in r.text
    r = await sql_api.sql(
        "SELECT source_topic, payload FROM millrace.deadletter_public "
        f"WHERE key = '{secret_identity}' ORDER BY source_topic"
    )
    assert r.status_code == 200, r.text
    # the identity event's payload is blanked, other topics' payloads are kept
    assert r.json()["rows"] == [["identity", ""], ["telemetry", f"{{'hash': '{HASH}'}}"]]


async def test_viewers_cannot_read_audits_operators_can(sql_api: Api) -> None:
    for query in (
        "SELECT count() FROM millrace.audits",
        "SELECT 1 WHERE 'x' IN (SELECT actor FROM millrace.audits)",
        "DESCRIBE millrace.audits",
    ):
        err = assert_refused(await sql_api.sql(query, key="viewer"), "forbidden_table")
        assert "millrace.audits" in err["message"]
        for key in ("operator", "admin"):
            r = await sql_api.sql(query, key=key)
            assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "query,offender",
    [
        ("SELECT * FROM system.numbers LIMIT 1", "system.numbers"),
        ("SELECT * FROM system.one", "system.one"),
        ("SELECT system.one.dummy", "system.one"),
        ("SELECT * FROM millrace.checkpoints", "millrace.checkpoints"),
        ("SELECT * FROM millrace.schema_migrations", "millrace.schema_migrations"),
        ("SELECT * FROM INFORMATION_SCHEMA.TABLES", "INFORMATION_SCHEMA.TABLES"),
    ],
)
async def test_tables_off_the_list_are_refused(sql_api: Api, query: str, offender: str) -> None:
    err = assert_refused(await sql_api.sql(query), "forbidden_table")
    assert offender in err["message"]
    assert "millrace.readings" in err["message"]  # the allowed tables are listed


async def test_unqualified_names_never_reach_the_current_database(
    sql_api: Api, victim: str
) -> None:
    name = victim.split(".")[1]
    for query in (
        f"SELECT * FROM {name}",
        f"SELECT 1 WHERE 42 IN {name}",
        f"WITH {name} AS (SELECT 1) SELECT * FROM {name}",
    ):
        err = assert_refused(await sql_api.sql(query), "forbidden_table")
        assert victim in err["message"]
    r = await sql_api.sql("SELECT * FROM readings")
    assert r.status_code == 400, r.text  # no such table here: analysts write millrace.
    assert "readings" in error_of(r)["message"]


async def test_a_line_break_in_an_alias_cannot_forge_the_tree(sql_api: Api) -> None:
    r = await sql_api.sql("SELECT 1 AS `a\nTableIdentifier millrace.readings`")
    assert_bad_field(r, "query")


# -- statements and clauses ------------------------------------------------------------------

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
    assert_refused(await sql_api.sql(query), "read_only")
    assert_projections_intact(writer_store)
    assert table_rows(writer_store, "millrace.readings") == before
    assert not Path("/tmp/millrace-sql-test.csv").exists()


@pytest.mark.parametrize(
    "query",
    [
        "SHOW TABLES FROM millrace",
        "SHOW DATABASES",
        "SHOW CREATE TABLE millrace.readings",
        "SHOW PROCESSLIST",
        "EXISTS TABLE millrace.readings",
    ],
)
async def test_show_and_exists_are_403(sql_api: Api, query: str) -> None:
    assert_refused(await sql_api.sql(query), "statement_not_allowed")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1 SETTINGS max_threads = 1",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT * FROM (SELECT 1 SETTINGS max_memory_usage = 0)",
        "EXPLAIN SELECT 1 SETTINGS max_threads = 64",
        "DESCRIBE millrace.readings SETTINGS max_threads = 1",
        "SELECT 1 FORMAT CSV",
        "DESCRIBE millrace.readings FORMAT CSV",
        "SELECT 1 INTO OUTFILE '/tmp/millrace-sql-outfile.txt'",
    ],
)
async def test_settings_format_and_outfile_are_403(sql_api: Api, query: str) -> None:
    assert_refused(await sql_api.sql(query), "clause_not_allowed")
    assert not Path("/tmp/millrace-sql-outfile.txt").exists()


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
    assert "Multi-statements" in error_of(r)["message"]
    assert_projections_intact(writer_store)


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
    ["SELEC 1", "SELECT FROM", "SELECT 'unterminated", "SELECT (1", "   ", ";", "-- only"],
)
async def test_syntax_errors_are_400_naming_query(sql_api: Api, query: str) -> None:
    assert_bad_field(await sql_api.sql(query), "query")


async def test_query_parameters_are_400(sql_api: Api) -> None:
    r = await sql_api.sql("SELECT {identity:String}")
    assert_bad_field(r, "query")


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


async def test_wide_integers_are_rendered(sql_api: Api) -> None:
    r = await sql_api.sql("SELECT toUInt128('340282366920938463463374607431768211455') AS x")
    assert r.status_code == 200, r.text


# -- limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        ROWS_51,
        "SELECT * FROM (SELECT arrayJoin(range(1000)) AS x) ORDER BY x",
        "SELECT 1 AS x UNION ALL " + ROWS_51,
    ],
)
async def test_more_rows_than_the_limit_is_400(sql_api: Api, query: str) -> None:
    err = assert_refused(await sql_api.sql(query), "result_too_large", 400)
    assert "max_result_rows = 50" in err["message"]


async def test_max_rows_in_the_request_lowers_the_limit(sql_api: Api) -> None:
    r = await sql_api.sql("SELECT arrayJoin(range(5))", max_rows=5)
    assert r.status_code == 200, r.text
    assert len(r.json()["rows"]) == 5
    r = await sql_api.sql("SELECT arrayJoin(range(6))", max_rows=5)
    assert_refused(r, "result_too_large", 400)


async def test_max_rows_cannot_raise_the_server_cap(sql_api: Api) -> None:
    assert_refused(await sql_api.sql(ROWS_51, max_rows=1000), "result_too_large", 400)


async def test_result_bytes_are_limited(make_api: MakeApi) -> None:
    api = await make_api(settings=ApiSettings(sql_max_result_bytes=1000))
    r = await api.sql("SELECT toString(x) FROM (SELECT arrayJoin(range(1000)) AS x)")
    err = assert_refused(r, "result_too_large", 400)
    assert "max_result_bytes = 1000" in err["message"]


async def test_the_memory_blow_up_is_stopped_by_the_memory_limit(make_api: MakeApi) -> None:
    api = await make_api(settings=ApiSettings(sql_max_memory_bytes=20 * 2**20))
    # issue 12's query: numbers() is a table function, refused before anything runs
    r = await api.sql("SELECT length(groupArray(number)) FROM numbers(300000000)")
    assert_refused(r, "table_function_not_allowed")
    # the same without a table function: 3M UInt64 are ~24 MB > 20 MiB
    r = await api.sql("SELECT length(groupArray(x)) FROM (SELECT arrayJoin(range(3000000)) AS x)")
    err = assert_refused(r, "limit_exceeded", 400)
    assert f"max_memory_usage = {20 * 2**20}" in err["message"]
    r = await api.sql("SELECT length(groupArray(x)) FROM (SELECT arrayJoin(range(30000)) AS x)")
    assert r.status_code == 200, r.text


async def test_rows_and_bytes_read_are_limited(make_api: MakeApi) -> None:
    api = await make_api(settings=ApiSettings(sql_max_rows_to_read=1))
    identity = uid()
    body = [{"timestamp": NOW_US - i, "values": {"a": float(i)}} for i in range(3)]
    assert (await api.ingest(identity, body)).status_code == 202
    await api.sync()
    r = await api.sql("SELECT sum(value) FROM millrace.readings")
    err = assert_refused(r, "limit_exceeded", 400)
    assert "max_rows_to_read = 1" in err["message"]
    api = await make_api(settings=ApiSettings(sql_max_bytes_to_read=1))
    r = await api.sql("SELECT sum(value) FROM millrace.readings")
    err = assert_refused(r, "limit_exceeded", 400)
    assert "max_bytes_to_read = 1" in err["message"]


async def test_a_slow_query_is_stopped(make_api: MakeApi) -> None:
    api = await make_api(settings=ApiSettings(sql_timeout_s=0.5))
    r = await api.sql(SLOW)
    err = assert_refused(r, "timeout", 400)
    assert "max_execution_time = 0.5" in err["message"]


@pytest.mark.parametrize(
    "failing",
    [
        ROWS_51,
        "SELECT throwIf(x = 3) FROM (SELECT arrayJoin(range(10)) AS x)",
        "SELECT length(groupArray(x)) FROM (SELECT arrayJoin(range(300000000)) AS x)",
    ],
)
async def test_a_failed_query_does_not_break_the_next_one(sql_api: Api, failing: str) -> None:
    r = await sql_api.sql(failing)
    assert r.status_code == 400, r.text
    r = await sql_api.sql("SELECT 1 AS one")
    assert r.status_code == 200, r.text
    r = await sql_api.get(f"/identities/{uid()}/signals/x")
    assert r.status_code == 200, r.text


# -- concurrency -------------------------------------------------------------------------------


def _key_id(api: Api, role: str) -> str:
    principal = api.keys.authenticate(getattr(api, role))
    assert principal is not None
    return principal.key_id


async def test_too_many_queries_of_one_key_is_429(make_api: MakeApi) -> None:
    api = await make_api(
        settings=ApiSettings(sql_max_concurrent=4, sql_max_concurrent_per_principal=2)
    )
    slots = api.ctx.sql_slots
    viewer = _key_id(api, "viewer")
    assert slots.try_acquire(viewer) and slots.try_acquire(viewer)
    r = await api.sql("SELECT 1", key="viewer")
    err = assert_refused(r, "too_many_queries", 429)
    assert r.headers["retry-after"] == "1"
    assert err["details"][0]["field"] == "query"
    # another key still runs
    assert (await api.sql("SELECT 1", key="operator")).status_code == 200
    slots.release(viewer)
    assert (await api.sql("SELECT 1", key="viewer")).status_code == 200
    assert slots.held(viewer) == 1  # the finished query gave its slot back


async def test_too_many_queries_in_all_is_429(make_api: MakeApi) -> None:
    api = await make_api(settings=ApiSettings(sql_max_concurrent=4))
    slots = api.ctx.sql_slots
    for i in range(4):
        assert slots.try_acquire(f"other-{i}")
    for key in ("viewer", "operator", "admin"):
        assert_refused(await api.sql("SELECT 1", key=key), "too_many_queries", 429)
    slots.release("other-0")
    assert (await api.sql("SELECT 1", key="admin")).status_code == 200
    assert slots.in_use == 3


class _SpyStore(ProjectionStore):
    """A store that records which thread ran each query, then delegates."""

    def __init__(self, inner: ProjectionStore, gate: threading.Event | None = None) -> None:
        self.inner = inner
        self.threads: list[str] = []
        self.gate = gate

    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        self.threads.append(threading.current_thread().name)
        if self.gate is not None and settings:
            assert self.gate.wait(30)
        return self.inner.execute(sql, params, settings)

    def query_arrow(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        return self.inner.query_arrow(sql, params, settings)

    def insert_arrow(
        self, sql: str, table: pa.Table, settings: Mapping[str, Any] | None = None
    ) -> None:
        self.inner.insert_arrow(sql, table, settings)


async def test_queries_run_on_the_analyst_store_and_executor(
    make_api: MakeApi, read_store: ChdbStore
) -> None:
    api = await make_api()
    spy = _SpyStore(read_store)
    api.ctx.analyst_store = spy
    with ThreadPoolExecutor(1, thread_name_prefix="analyst-test") as pool:
        api.ctx.sql_executor = pool
        r = await api.sql("SELECT 1 AS one")
    assert r.status_code == 200, r.text
    assert spy.threads and all(t.startswith("analyst-test") for t in spy.threads)


async def test_a_running_query_holds_its_slot_until_it_ends(
    make_api: MakeApi, read_store: ChdbStore
) -> None:
    api = await make_api(settings=ApiSettings(sql_max_concurrent_per_principal=1))
    gate = threading.Event()
    api.ctx.analyst_store = _SpyStore(read_store, gate)
    first = asyncio.create_task(api.sql("SELECT 1", key="viewer"))
    viewer = _key_id(api, "viewer")
    for _ in range(500):
        if api.ctx.sql_slots.held(viewer):
            break
        await asyncio.sleep(0.01)
    assert_refused(await api.sql("SELECT 1", key="viewer"), "too_many_queries", 429)
    first.cancel()  # the client goes away; its query still runs on the thread
    await asyncio.sleep(0.05)
    assert api.ctx.sql_slots.held(viewer) == 1
    gate.set()
    for _ in range(500):
        if not api.ctx.sql_slots.held(viewer):
            break
        await asyncio.sleep(0.01)
    assert api.ctx.sql_slots.held(viewer) == 0
    r = await api.sql("SELECT 1", key="viewer")
    assert r.status_code == 200, r.text
