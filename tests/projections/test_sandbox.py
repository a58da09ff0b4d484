"""The analyst SQL sandbox on a real chDB: generated queries with table functions and
forbidden tables nested at random depths are always refused; generated queries over
allowed tables always run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace.projections import sandbox
from millrace.projections.cluster import cluster_statements
from millrace.projections.sandbox import (
    ANALYST_TABLES,
    AUDIT_TABLES,
    Catalog,
    QueryRejectedError,
    SqlLimits,
    check_tree,
    readonly_query,
)
from millrace.projections.store.chdb import ChdbStore

LIMITS = SqlLimits(max_execution_time=5.0, max_memory_usage=200 << 20, max_result_rows=1000)
SECRET = "default.sandbox_secret"
REFUSED = {"table_function_not_allowed", "forbidden_table", "function_not_allowed"}


@pytest.fixture(scope="module")
def db(chdb_store: ChdbStore) -> Iterator[ChdbStore]:
    chdb_store.execute(f"CREATE TABLE IF NOT EXISTS {SECRET} (n UInt64) ENGINE = Memory")
    chdb_store.execute(f"INSERT INTO {SECRET} VALUES (7)")
    yield chdb_store
    chdb_store.execute(f"DROP TABLE IF EXISTS {SECRET} SYNC")


@pytest.fixture(scope="module")
def table_functions(db: ChdbStore) -> list[str]:
    """Every table function of the engine, as the engine lists them."""
    return sorted(r[0] for r in db.execute("SELECT name FROM system.table_functions").rows)


def refused(
    db: ChdbStore, sql: str, allowed: frozenset[str] = ANALYST_TABLES
) -> QueryRejectedError:
    with pytest.raises(QueryRejectedError) as info:
        readonly_query(db, sql, LIMITS, allowed)
    return info.value


# -- generated queries ---------------------------------------------------------------------
#
# Every generated query returns one column ``n`` (UInt64), so any part can be combined
# with any other by UNION ALL, JOIN, IN and scalar subqueries.

ALLOWED_LEAVES = [f"SELECT toUInt64(count()) AS n FROM {t}" for t in sorted(ANALYST_TABLES)]
FORBIDDEN_TABLES = [
    "millrace.identities",
    "millrace.deadletter",
    "millrace.checkpoints",
    "millrace.audits",
    "system.tables",
    "system.numbers",
    SECRET,
    SECRET.split(".")[1],  # unqualified: the current database's table
]


def _wrap(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """One level of nesting around ``inner`` (itself nested to random depth)."""
    a = st.sampled_from(ALLOWED_LEAVES)
    return st.one_of(
        inner.map(lambda q: f"SELECT n FROM ({q})"),
        inner.map(lambda q: f"WITH c AS ({q}) SELECT n FROM c"),
        st.tuples(a, inner).map(lambda t: f"SELECT n FROM ({t[0]} UNION ALL {t[1]})"),
        st.tuples(inner, a).map(lambda t: f"SELECT n FROM ({t[0]}) UNION ALL {t[1]}"),
        st.tuples(a, inner).map(
            lambda t: f"SELECT x.n AS n FROM ({t[0]}) AS x JOIN ({t[1]}) AS y ON x.n = y.n"
        ),
        st.tuples(a, inner).map(
            lambda t: f"SELECT n FROM ({t[0]}) WHERE n NOT IN (SELECT n FROM ({t[1]}))"
        ),
        inner.map(lambda q: f"SELECT toUInt64((SELECT max(n) FROM ({q}))) AS n"),
        st.tuples(a, inner).map(
            lambda t: f"SELECT n FROM ({t[0]}) WHERE exists(SELECT n FROM ({t[1]}))"
        ),
    )


def nested(leaves: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.recursive(leaves, _wrap, max_leaves=6)


VIEW_ARGS = {
    "view": "SELECT 1",
    "viewifpermitted": "SELECT 1 ELSE null('x UInt8')",
}


@st.composite
def forbidden_leaf(draw: st.DrawFn, table_functions: list[str]) -> str:
    kind = draw(st.sampled_from(["table_function", "table", "in_table", "function"]))
    if kind == "table_function":
        name = draw(st.sampled_from(table_functions))
        case = draw(st.sampled_from(["as is", "upper", "lower"]))
        name = {"upper": name.upper(), "lower": name.lower()}.get(case, name)
        # the view family takes a query, not values: ('x', 'y') would be a syntax error
        args = VIEW_ARGS.get(name.lower(), "'x', 'y'")
        return f"SELECT toUInt64(count()) AS n FROM {name}({args})"
    table = draw(st.sampled_from(FORBIDDEN_TABLES))
    if kind == "table":
        return f"SELECT toUInt64(count()) AS n FROM {table}"
    if kind == "in_table":
        return f"SELECT toUInt64(1) AS n WHERE 'x' IN {table}"
    call = draw(
        st.sampled_from(
            [
                "dictGet('d', 'a', 1)",
                "joinGet('millrace.identities', 'credential_hash', 'x')",
                "file('/etc/passwd')",
                "getSetting('readonly')",
                "sleep(1)",
            ]
        )
    )
    return f"SELECT toUInt64(length(toString({call}))) AS n"


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_generated_forbidden_queries_are_always_refused(
    db: ChdbStore, table_functions: list[str], data: st.DataObject
) -> None:
    bad = data.draw(forbidden_leaf(table_functions)) + " /* forbidden */"
    # the forbidden leaf somewhere (once or more) among allowed ones, at any depth
    leaves = st.one_of(st.just(bad), st.sampled_from(ALLOWED_LEAVES))
    sql = data.draw(nested(leaves).filter(lambda q: bad in q))
    exc = refused(db, sql)
    assert exc.status == 403, (sql, exc)
    assert exc.code in REFUSED, (sql, exc)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sql=nested(st.sampled_from(ALLOWED_LEAVES)))
def test_generated_allowed_queries_run(db: ChdbStore, sql: str) -> None:
    res = readonly_query(db, sql, LIMITS, ANALYST_TABLES)
    assert res.columns == ["n"]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sql=nested(st.just("SELECT toUInt64(count()) AS n FROM millrace.audits")))
def test_audits_nested_anywhere_need_the_audit_list(db: ChdbStore, sql: str) -> None:
    exc = refused(db, sql)
    assert exc.code == "forbidden_table" and "millrace.audits" in str(exc)
    res = readonly_query(db, sql, LIMITS, ANALYST_TABLES | AUDIT_TABLES)
    assert res.columns == ["n"]


# -- the tree check, on forged trees ---------------------------------------------------------

CATALOG = Catalog(
    database="default",
    local_tables=frozenset({"secret"}),
    databases=frozenset({"default", "system", "millrace"}),
    table_functions=frozenset({"file", "numbers", "format"}),
    also_functions=frozenset({"format", "file"}),
)


def _select_from(line: str) -> list[str]:
    return [
        "SelectWithUnionQuery (children 1)",
        " ExpressionList (children 1)",
        "  SelectQuery (children 2)",
        "   ExpressionList (children 1)",
        "    Asterisk",
        "   TablesInSelectQuery (children 1)",
        "    TablesInSelectQueryElement (children 1)",
        "     TableExpression (children 1)",
        f"      {line}",
    ]


@pytest.mark.parametrize(
    "line,code",
    [
        ("TableIdentifier millrace.identities", "forbidden_table"),
        ("TableIdentifier millrace.readings_x", "forbidden_table"),
        ("TableIdentifier system.tables (alias t)", "forbidden_table"),
        ("TableIdentifier secret", "forbidden_table"),
        ("TableIdentifier secret (alias millrace.readings)", "forbidden_table"),
        ("Function whatever (children 1)", "table_function_not_allowed"),
        ("Function format (children 1)", "table_function_not_allowed"),
    ],
)
def test_tree_refusals(line: str, code: str) -> None:
    with pytest.raises(QueryRejectedError) as info:
        check_tree(_select_from(line), CATALOG, ANALYST_TABLES)
    assert info.value.code == code


@pytest.mark.parametrize(
    "line",
    [
        "TableIdentifier millrace.readings",
        "TableIdentifier millrace.readings (alias r)",
        "TableIdentifier a_cte",
        "Subquery (children 0)",
    ],
)
def test_tree_passes(line: str) -> None:
    assert check_tree(_select_from(line), CATALOG, ANALYST_TABLES) == "select"


def test_forged_lines_only_add_refusals() -> None:
    # an alias with a line break can add lines, never hide one: a second root or a
    # jump in depth is refused, and a forged node is checked like a real one
    lines = _select_from("TableIdentifier millrace.readings (alias a")
    with pytest.raises(QueryRejectedError, match="line breaks"):
        check_tree([*lines, "TableIdentifier x)"], CATALOG, ANALYST_TABLES)
    with pytest.raises(QueryRejectedError, match="line breaks"):
        check_tree([*lines, "           Literal 1)"], CATALOG, ANALYST_TABLES)
    # a forged sibling that looks harmless does not hide the real lines after it
    real = [
        "    TablesInSelectQueryElement (children 1)",
        "     TableExpression (children 1)",
        "      TableIdentifier millrace.identities",
    ]
    lines = [*lines[:5], "   TablesInSelectQuery (children 2)", *lines[6:]]
    with pytest.raises(QueryRejectedError) as info:
        check_tree([*lines, "      Literal 1)", *real], CATALOG, ANALYST_TABLES)
    assert info.value.code == "forbidden_table"


def test_explain_options_are_allowed_query_settings_are_not() -> None:
    inner = ["  " + ln for ln in _select_from("TableIdentifier millrace.readings")]
    explain = ["Explain EXPLAIN (children 2)", " Set", *[ln[1:] for ln in inner]]
    assert check_tree(explain, CATALOG, ANALYST_TABLES) == "explain"
    with pytest.raises(QueryRejectedError) as info:
        check_tree([*explain, "    Set"], CATALOG, ANALYST_TABLES)
    assert info.value.code == "clause_not_allowed"


def test_allowed_tables() -> None:
    assert sandbox.allowed_tables(False) == ANALYST_TABLES
    assert sandbox.allowed_tables(True) == ANALYST_TABLES | AUDIT_TABLES
    assert "millrace.identities" not in ANALYST_TABLES | AUDIT_TABLES
    assert "millrace.deadletter" not in ANALYST_TABLES | AUDIT_TABLES
    assert all(t.startswith("millrace.") for t in ANALYST_TABLES | AUDIT_TABLES)


def test_every_allowed_table_exists(db: ChdbStore) -> None:
    for table in sorted(ANALYST_TABLES | AUDIT_TABLES):
        assert db.execute(f"EXISTS TABLE {table}").rows == [[1]], table


def test_the_public_views_have_no_secret_column(db: ChdbStore) -> None:
    res = db.execute(
        "SELECT table, name FROM system.columns WHERE database = 'millrace' "
        "AND table IN ('identities_public', 'deadletter_public')"
    )
    columns = {(t, c) for t, c in res.rows}
    assert ("identities_public", "identity") in columns
    assert not any(c == "credential_hash" or "hash" in c for _, c in columns)
    assert ("deadletter_public", "payload") in columns


def test_the_views_are_created_on_a_cluster_too() -> None:
    stmts = [s for v, _, ss in cluster_statements("c") if v == 12 for s in ss]
    assert [s.split(" AS ", 1)[0] for s in stmts] == [
        "CREATE VIEW IF NOT EXISTS millrace.identities_public ON CLUSTER 'c'",
        "CREATE VIEW IF NOT EXISTS millrace.deadletter_public ON CLUSTER 'c'",
    ]
    assert all("FROM millrace.identities FINAL" in s or "deadletter FINAL" in s for s in stmts)


def test_a_failed_check_leaves_the_session_usable(db: ChdbStore) -> None:
    refused(db, "SELECT * FROM file('/etc/passwd')")
    refused(db, "SELECT length(groupArray(x)) FROM (SELECT arrayJoin(range(100000000)) AS x)")
    assert readonly_query(db, "SELECT 1 AS one", LIMITS).rows == [[1]]


@pytest.mark.parametrize("call", ["view(SELECT 1)", "VIEW(SELECT 1)"])
def test_the_view_table_functions_are_refused(db: ChdbStore, call: str) -> None:
    """``view`` takes a query, so it can hide any table behind an allowed-looking
    statement; it is a table function like the others."""
    for sql in (
        f"SELECT count() FROM {call}",
        f"SELECT * FROM millrace.readings WHERE identity IN (SELECT 'x' FROM {call})",
        "SELECT count() FROM viewIfPermitted(SELECT 1 ELSE null('x UInt8'))",
    ):
        exc = refused(db, sql)
        assert exc.status == 403 and exc.code in REFUSED, (sql, exc)
