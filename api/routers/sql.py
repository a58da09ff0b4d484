"""Read-only SQL for analysts, in the sandbox of ``projections.sandbox``."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, viewer
from millrace.api.errors import ApiError
from millrace.api.responses import JsonResponse, render_json
from millrace.api.routing import StrictRoute
from millrace.projections import sandbox
from millrace.projections.store.base import ProjectionStore, QueryResult

router = APIRouter(tags=["sql"], route_class=StrictRoute)


class SqlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=100_000, description="one ClickHouse SQL statement")
    max_rows: int | None = Field(
        None, ge=1, le=1_000_000, description="result row limit (server caps it)"
    )


def _rejected(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, code, f"query: {message}", [{"field": "query", "message": message}])


def _limits(ctx: AppContext, req: SqlRequest) -> sandbox.SqlLimits:
    s = ctx.settings
    return sandbox.SqlLimits(
        max_execution_time=s.sql_timeout_s,
        max_memory_usage=s.sql_max_memory_bytes,
        max_rows_to_read=s.sql_max_rows_to_read,
        max_bytes_to_read=s.sql_max_bytes_to_read,
        max_result_rows=min(req.max_rows or s.sql_max_rows, s.sql_max_rows),
        max_result_bytes=s.sql_max_result_bytes,
        max_threads=s.sql_max_threads,
    )


def _run(
    store: ProjectionStore, query: str, limits: sandbox.SqlLimits, allowed: frozenset[str]
) -> orjson.Fragment:
    """The query and its JSON, on the analyst thread (up to ``sql_max_result_bytes`` of
    rows would otherwise be serialized on the loop that serves every other request)."""
    res = sandbox.readonly_query(store, query, limits, allowed)
    return orjson.Fragment(render_json(_body(res)))


def _body(res: QueryResult) -> dict[str, Any]:
    return {
        "columns": [{"name": n, "type": t} for n, t in zip(res.columns, res.types, strict=True)],
        "rows": res.rows,
        "meta": {
            "rows": len(res.rows),
            "rows_read": res.rows_read,
            "elapsed_ms": round(res.elapsed_s * 1000, 3),
        },
    }


def _tables(names: frozenset[str]) -> str:
    return ", ".join(f"`{t}`" for t in sorted(names))


DESCRIPTION = f"""One statement — `SELECT` (with `WITH`, `UNION`, subqueries, joins),
`DESCRIBE` or `EXPLAIN` of a `SELECT` — checked on ClickHouse's own parse tree before
it runs (`projections.sandbox`).

**Tables** (always `millrace.<table>`): {_tables(sandbox.ANALYST_TABLES)}; roles that may
read audits (operator, admin) also {_tables(sandbox.AUDIT_TABLES)}. Any other table
(`millrace.identities`, `millrace.deadletter`, `system.*`, …) answers 403
`forbidden_table`.

**Refused with 403**: table functions of any kind (`file`, `url`, `s3`, `numbers`,
`remote`, …: `table_function_not_allowed`); dictionary, `joinGet`, `file`, settings,
filesystem and `sleep` functions (`function_not_allowed`); `SETTINGS`, `FORMAT`,
`INTO OUTFILE` (`clause_not_allowed`); `SHOW`, `EXISTS` (`statement_not_allowed`);
writes, `SET`, `USE` (`read_only`).

**Limits** (server configuration, `api.sql_*`): run time, memory, rows and bytes read,
result rows (`max_rows` may lower it) and bytes, threads. A query over a limit answers
400 `limit_exceeded` (memory, rows or bytes read), `result_too_large` or `timeout`,
naming the limit. More than `sql_max_concurrent_per_principal` queries of one API key,
or `sql_max_concurrent` in all, running at once: 429 `too_many_queries` with
`Retry-After`. Every error names the field `query`."""


@router.post(
    "/sql",
    summary="Run read-only SQL",
    response_model=models.SqlResult,
    description=DESCRIPTION,
)
async def run_sql(
    req: SqlRequest, ctx: AppContext = Depends(context), principal: Principal = Depends(viewer)
) -> JsonResponse:
    """Analyst SQL in the sandbox; see ``DESCRIPTION`` (the OpenAPI text)."""
    key = principal.key_id
    slots = ctx.sql_slots
    if not slots.try_acquire(key):
        raise ApiError(
            429,
            "too_many_queries",
            "query: too many analyst queries running; retry later",
            [{"field": "query", "message": "too many analyst queries running"}],
            headers={"Retry-After": "1"},
        )
    store = getattr(ctx, "analyst_store", None) or ctx.store
    allowed = sandbox.allowed_tables(read_audits=principal.can("audits:read"))
    try:
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(
            getattr(ctx, "sql_executor", None), _run, store, req.query, _limits(ctx, req), allowed
        )
    except BaseException:
        slots.release(key)
        raise

    def finished(f: asyncio.Future[orjson.Fragment]) -> None:
        # the slot is free when the query is, not when the request is (a client that
        # went away leaves its query running on the thread until a limit stops it)
        slots.release(key)
        if not f.cancelled():
            f.exception()

    done.add_done_callback(finished)
    try:
        body = await asyncio.shield(done)
    except sandbox.QueryRejectedError as exc:
        raise _rejected(exc.status, exc.code, str(exc)) from None
    return JsonResponse(body)
