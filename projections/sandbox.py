"""Analyst SQL in a sandbox: what a query may touch is read from ClickHouse's own parse
tree, and every query runs under limits.

How a statement is checked (nothing of the user's text is ever spliced unchecked):

1. ``SELECT formatQuerySingleLine({q:String})`` — the text bound as a parameter —
   parses it: exactly one statement, comments gone, on one line, re-rendered by
   ClickHouse (an unparsable text or a second statement is refused here).
2. ``EXPLAIN AST <normalized>`` prints that statement's parse tree; it only parses
   (no table, file or URL is opened; ``INTO OUTFILE`` writes nothing).
3. The tree is checked (:func:`check_tree`) against the catalog of the session
   (:class:`Catalog`) and the caller's allow-list:

   * statements: ``SELECT`` (``WITH``, ``UNION``, ``INTERSECT``/``EXCEPT``,
     subqueries, joins), ``DESCRIBE`` and ``EXPLAIN`` of such a ``SELECT``. Anything
     else (writes, ``SET``, ``USE``, ``SHOW``, ``EXISTS``, ``SYSTEM`` …) is refused:
     ``SHOW``/``EXISTS`` are answered from ``system`` tables outside the allow-list
     and ``DESCRIBE`` covers what an analyst needs of them.
   * no table function anywhere: a function in the table position of a ``FROM``,
     ``JOIN`` or ``DESCRIBE``, whatever its name, and any call named like one of
     the engine's own table functions (``system.table_functions``: file, url, s3,
     remote, numbers, merge, view, input, executable, Python, …) elsewhere too (the
     right side of ``IN``). Names that are also ordinary functions (``format``)
     stay usable as ordinary functions.
   * tables: only the allow-list (:data:`ANALYST_TABLES`, plus :data:`AUDIT_TABLES`
     for roles that may read audits), always named ``millrace.<table>``. An
     unqualified name resolves in the session's current database (``default``,
     which millrace leaves empty): it may name a CTE or an alias, never a table
     there. Any identifier that starts with a database name (``system.``,
     ``default.``, ``millrace.<other>``) and is not an allowed table is refused,
     which also covers ``x IN db.table``.
   * functions that reach outside the data or into the server: dictionaries
     (``dict*``), ``joinGet``, ``file``, ``getSetting``/``getServerSetting``/
     ``getMacro``, ``hasColumnInTable`` (can connect to a host), model evaluation,
     ``sleep``, filesystem and introspection functions, and any user-defined
     function (origin other than ``System``).
   * ``SETTINGS`` anywhere, ``FORMAT`` and ``INTO OUTFILE``: the server sets the
     limits and the output. (``EXPLAIN``'s own options, ``EXPLAIN indexes = 1``,
     are allowed.)

   Identifiers and aliases are printed raw in the tree (a line break in a quoted
   alias adds lines of its own), so every decision that matters is made on names
   that cannot be forged — the statement's first line, the line right after a
   ``TableExpression`` — or from the catalog's side (does any identifier start with
   a database name, or with the name of a table of the current database); a
   forged line can only add refusals.
4. It runs as ``SELECT * FROM (<normalized>) SETTINGS <limits>`` (``DESCRIBE`` and
   ``EXPLAIN``: ``<normalized> SETTINGS <limits>``, which ClickHouse applies to the
   explained query too): ``readonly = 1`` (no writes; a setting change that
   slipped through fails ``READONLY``), ``max_execution_time``,
   ``max_memory_usage``, ``max_rows_to_read``, ``max_bytes_to_read``,
   ``max_result_rows``, ``max_result_bytes`` (all ``throw``) and ``max_threads``
   (:class:`SqlLimits`). Failures map to :class:`QueryRejectedError` by ClickHouse's
   error code, never by message text (:func:`rejection`).

ClickHouse users, grants and settings profiles as a second wall: chDB 4.4
(ClickHouse 26.9) runs every query as user ``default`` of the read-only
``users_xml`` directory; ``CREATE USER``/``ROLE``/``SETTINGS PROFILE`` fail with
ACCESS_DENIED (no access management, no writable access storage) and
``EXECUTE AS`` fails with SUPPORT_IS_DISABLED (``allow_impersonate_user`` is
server configuration). So there is no per-user wall in embedded mode. What chDB does
honour is a session-level ``SET readonly = 2``: it persists on the session, refuses
every write and still lets the per-query ``SETTINGS`` set the limits — the analyst
sessions should be opened with it. On a ClickHouse server, give the analyst store a
user with ``readonly = 2`` and ``SELECT`` on the allowed tables only.

The allow-lists, the catalog, the limits and the error live in
``projections.sandbox_catalog`` (re-exported here); this module parses and checks.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

from millrace.pipeline.errors import StoreError
from millrace.projections.sandbox_catalog import (
    ANALYST_TABLES,
    AUDIT_TABLES,
    DENIED_FUNCTIONS,
    DENIED_PREFIXES,
    Catalog,
    QueryRejectedError,
    SqlLimits,
    allowed_tables,
    load_catalog,
)
from millrace.projections.store.base import ProjectionStore, QueryResult

Kind = Literal["select", "describe", "explain"]

__all__ = [
    "ANALYST_TABLES",
    "AUDIT_TABLES",
    "DENIED_FUNCTIONS",
    "Catalog",
    "QueryRejectedError",
    "SqlLimits",
    "allowed_tables",
    "check_tree",
    "explain_ast",
    "load_catalog",
    "normalize",
    "readonly_query",
    "rejection",
]


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "invalid query"


def normalize(store: ProjectionStore, sql: str) -> str:
    """ClickHouse's own parser, given the text as a bound parameter (never spliced):
    one statement, comments dropped, keywords upper-cased, on one line."""
    try:
        res = store.execute("SELECT formatQuerySingleLine({q:String})", {"q": sql})
    except StoreError as exc:
        raise QueryRejectedError(400, "invalid_query", _first_line(str(exc))) from None
    return str(res.rows[0][0]) if res.rows else ""


def explain_ast(store: ProjectionStore, stmt: str) -> list[str]:
    """The parse tree of a statement :func:`normalize` returned, one node a line."""
    try:
        res = store.execute(f"EXPLAIN AST {stmt}")
    except StoreError as exc:
        raise rejection(exc, SqlLimits()) from None
    return [str(r[0]) for r in res.rows]


_LINE = re.compile(r"^( *)(\S+)(?: (.*))?$")
_CHILDREN = re.compile(r"\(children (\d+)\)$")


@dataclass
class _Node:
    depth: int
    kind: str
    rest: str
    declared: int
    children: list[_Node] = field(default_factory=list)


def _parse(lines: list[str]) -> list[_Node]:
    nodes: list[_Node] = []
    stack: list[_Node] = []
    for line in lines:
        m = _LINE.match(line)
        depth = len(m.group(1)) if m else -1
        if m is None or (nodes and not 0 < depth <= stack[-1].depth + 1) or (not nodes and depth):
            # only a line break inside an identifier or alias prints such a line
            raise QueryRejectedError(400, "invalid_query", "line breaks in names are not allowed")
        rest = m.group(3) or ""
        declared = _CHILDREN.search(rest)
        node = _Node(depth, m.group(2), rest, int(declared.group(1)) if declared else 0)
        while stack and stack[-1].depth >= depth:
            stack.pop()
        if stack:
            stack[-1].children.append(node)
        stack.append(node)
        nodes.append(node)
    if not nodes:
        raise QueryRejectedError(400, "invalid_query", "empty query")
    return nodes


def _refuse_clauses(select: _Node) -> None:
    """A ``SelectWithUnionQuery``'s children past its list of selects are its
    ``INTO OUTFILE`` (a literal), ``FORMAT`` (an identifier) and ``SETTINGS``."""
    for extra in select.children[1:]:
        clause = {"Literal": "INTO OUTFILE", "Identifier": "FORMAT"}.get(extra.kind, "SETTINGS")
        raise QueryRejectedError(
            403, "clause_not_allowed", f"{clause} is not allowed: the server sets output and limits"
        )


def _statement(root: _Node) -> Kind:
    if root.kind == "SelectWithUnionQuery":
        _refuse_clauses(root)
        return "select"
    if root.kind == "DescribeQuery" and root.declared == 1:
        return "describe"
    if root.kind == "Explain":
        selects = [c for c in root.children if c.kind == "SelectWithUnionQuery"]
        others = [c for c in root.children if c.kind not in ("SelectWithUnionQuery", "Set")]
        if len(selects) == 1 and not others:
            _refuse_clauses(selects[0])
            return "explain"
    if root.kind == "DescribeQuery":
        raise QueryRejectedError(403, "clause_not_allowed", "SETTINGS is not allowed on DESCRIBE")
    what = root.kind.removesuffix("Query") or "this statement"
    if root.kind.startswith(("Show", "Exists", "Explain", "Describe")):
        raise QueryRejectedError(
            403,
            "statement_not_allowed",
            f"{what} is not allowed: only SELECT, DESCRIBE and EXPLAIN of a SELECT run here",
        )
    raise QueryRejectedError(
        403, "read_only", f"{what} is not allowed: the SQL endpoint is read-only"
    )


def _name(rest: str) -> str:
    return rest.split(" ", 1)[0]


def _is_allowed(rest: str, allowed: Collection[str], column: bool) -> bool:
    for table in allowed:
        if rest == table or rest.startswith(table + " (alias "):
            return True
        if column and rest.startswith(table + "."):
            return True
    return False


def _check_name(node: _Node, catalog: Catalog, allowed: Collection[str]) -> None:
    """A table or identifier: an allowed table, or nothing that could name a table."""
    rest = node.rest
    if _is_allowed(rest, allowed, column=node.kind == "Identifier"):
        return
    for db in catalog.databases:
        if rest.startswith(db + "."):
            raise _forbidden(".".join(_name(rest).split(".")[:2]), allowed)
    for table in catalog.local_tables:
        if rest == table or rest.startswith((table + " ", table + ".")):
            raise _forbidden(f"{catalog.database}.{table}", allowed)


def _forbidden(table: str, allowed: Collection[str]) -> QueryRejectedError:
    return QueryRejectedError(
        403,
        "forbidden_table",
        f"table {table} is not allowed; allowed: {', '.join(sorted(allowed))}",
    )


def _check_function(node: _Node, catalog: Catalog, table_position: bool) -> None:
    name = _name(node.rest)
    low = name.lower()
    if table_position or (low in catalog.table_functions and low not in catalog.also_functions):
        raise QueryRejectedError(
            403, "table_function_not_allowed", f"table function {name} is not allowed"
        )
    udf = any(node.rest == f or node.rest.startswith(f + " ") for f in catalog.udfs)
    if low in DENIED_FUNCTIONS or low.startswith(DENIED_PREFIXES) or udf:
        raise QueryRejectedError(403, "function_not_allowed", f"function {name} is not allowed")


def check_tree(lines: list[str], catalog: Catalog, allowed: Collection[str]) -> Kind:
    """The kind of statement ``lines`` (``EXPLAIN AST`` output) is, if the sandbox may
    run it with ``allowed`` tables; :class:`QueryRejectedError` naming the offender if
    not."""
    nodes = _parse(lines)
    kind = _statement(nodes[0])
    after_table_expression = False
    for node in nodes[1:]:
        if node.kind == "Set" and not (kind == "explain" and node.depth == 1):
            raise QueryRejectedError(
                403, "clause_not_allowed", "SETTINGS is not allowed: the server sets the limits"
            )
        if node.kind in ("TableIdentifier", "Identifier"):
            _check_name(node, catalog, allowed)
        elif node.kind == "Function":
            _check_function(node, catalog, after_table_expression)
        after_table_expression = node.kind == "TableExpression"
    return kind


def readonly_query(
    store: ProjectionStore,
    sql: str,
    limits: SqlLimits,
    allowed: Collection[str] = ANALYST_TABLES,
) -> QueryResult:
    """Run one analyst statement in the sandbox: parsed, checked against the
    allow-list, run under ``limits``. Raises :class:`QueryRejectedError`."""
    stmt = normalize(store, sql)
    kind = check_tree(explain_ast(store, stmt), load_catalog(store), allowed)
    text = f"SELECT * FROM ({stmt})" if kind == "select" else stmt
    try:
        return store.execute(text, settings=limits.settings())
    except StoreError as exc:
        raise rejection(exc, limits) from None


#: ClickHouse error codes (ErrorCodes.cpp) the sandbox answers specially
SYNTAX_ERROR, TOO_MANY_ROWS, TIMEOUT_EXCEEDED, TOO_SLOW = 62, 158, 159, 160
READONLY, MEMORY_LIMIT_EXCEEDED, TOO_MANY_BYTES, TOO_MANY_ROWS_OR_BYTES = 164, 241, 307, 396
UNKNOWN_QUERY_PARAMETER, ACCESS_DENIED = 456, 497


def rejection(exc: StoreError, limits: SqlLimits) -> QueryRejectedError:
    """What a failed analyst query answers, decided by ClickHouse's error code."""
    first = _first_line(str(exc))
    limit_messages: Mapping[int, tuple[str, str]] = {
        MEMORY_LIMIT_EXCEEDED: (
            "limit_exceeded",
            f"the query needs more memory than max_memory_usage = {limits.max_memory_usage} bytes",
        ),
        TOO_MANY_ROWS: (
            "limit_exceeded",
            f"the query reads more than max_rows_to_read = {limits.max_rows_to_read} rows",
        ),
        TOO_MANY_BYTES: (
            "limit_exceeded",
            f"the query reads more than max_bytes_to_read = {limits.max_bytes_to_read} bytes",
        ),
        TOO_MANY_ROWS_OR_BYTES: (
            "result_too_large",
            f"the result exceeds max_result_rows = {limits.max_result_rows} rows or "
            f"max_result_bytes = {limits.max_result_bytes} bytes",
        ),
        TIMEOUT_EXCEEDED: (
            "timeout",
            f"the query ran longer than max_execution_time = {limits.max_execution_time} s",
        ),
        TOO_SLOW: ("timeout", "the query would run longer than max_execution_time"),
    }
    limit = limit_messages.get(exc.code) if exc.code is not None else None
    if limit is not None:
        return QueryRejectedError(400, *limit)
    if exc.code in (READONLY, ACCESS_DENIED):
        return QueryRejectedError(
            403, "read_only", f"not allowed: the SQL endpoint is read-only ({first})"
        )
    if exc.code == UNKNOWN_QUERY_PARAMETER:
        return QueryRejectedError(
            400, "invalid_query", "query parameters ({name:Type}) are not supported"
        )
    if exc.code == SYNTAX_ERROR:
        return QueryRejectedError(400, "invalid_query", first)
    return QueryRejectedError(400, "query_failed", first)
