"""Read-only SQL for analysts, on the same ClickHouse the pipeline writes."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api import models
from api.auth import Principal
from api.context import AppContext, context, viewer
from api.errors import ApiError
from api.responses import JsonResponse
from api.routing import StrictRoute
from pipeline.errors import StoreError
from projections import queries

router = APIRouter(tags=["sql"], route_class=StrictRoute)


class SqlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=100_000, description="one ClickHouse SQL statement")
    max_rows: int | None = Field(
        None, ge=1, le=1_000_000, description="result row limit (server caps it)"
    )


def _rejected(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, code, f"query: {message}", [{"field": "query", "message": message}])


def _run(ctx: AppContext, req: SqlRequest) -> dict[str, Any]:
    max_rows = min(req.max_rows or ctx.settings.sql_max_rows, ctx.settings.sql_max_rows)
    try:
        res = queries.readonly_query(ctx.store, req.query, max_rows, ctx.settings.sql_timeout_s)
    except queries.QueryRejected as exc:
        code = "read_only" if exc.status == 403 else "invalid_query"
        raise _rejected(exc.status, code, str(exc)) from None
    except StoreError as exc:
        text = str(exc)
        if "(READONLY)" in text:
            raise _rejected(
                403, "read_only", "not allowed: the SQL endpoint is read-only"
            ) from None
        if "(TOO_MANY_ROWS_OR_BYTES)" in text:
            raise _rejected(400, "too_many_rows", f"the result exceeds {max_rows} rows") from None
        if "(TIMEOUT_EXCEEDED)" in text:
            raise _rejected(
                400, "timeout", f"the query ran longer than {ctx.settings.sql_timeout_s} s"
            ) from None
        raise _rejected(400, "query_failed", text.strip().splitlines()[0]) from None
    return {
        "columns": [{"name": n, "type": t} for n, t in zip(res.columns, res.types, strict=True)],
        "rows": res.rows,
        "meta": {
            "rows": len(res.rows),
            "rows_read": res.rows_read,
            "elapsed_ms": round(res.elapsed_s * 1000, 3),
        },
    }


@router.post("/sql", summary="Run read-only SQL", response_model=models.SqlResult)
async def run_sql(
    req: SqlRequest, ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    """One statement (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN) under ClickHouse's
    ``readonly = 1`` with a time limit and a row limit. Statements that write — or
    read files and URLs — answer 403."""
    return JsonResponse(await asyncio.to_thread(_run, ctx, req))
