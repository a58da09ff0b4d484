"""Read-only SQL for analysts, on the same ClickHouse the pipeline writes."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal
from api.context import AppContext, context, viewer
from api.errors import ApiError
from api.responses import JsonResponse
from pipeline.errors import StoreError
from projections import queries

router = APIRouter(tags=["sql"])


class SqlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=100_000, description="one ClickHouse SQL statement")
    max_rows: int | None = Field(
        None, ge=1, le=1_000_000, description="result row limit (server caps it)"
    )


def _run(ctx: AppContext, req: SqlRequest) -> dict[str, Any]:
    try:
        stmt = queries.single_statement(req.query)
    except ValueError as exc:
        raise ApiError(
            400, "invalid_query", f"query: {exc}", [{"field": "query", "message": str(exc)}]
        ) from None
    try:
        kind = queries.classify(ctx.store, stmt)
    except StoreError as exc:
        raise ApiError(
            400, "invalid_query", f"query: {exc}", [{"field": "query", "message": str(exc)}]
        ) from None
    if not queries.is_read_only(kind):
        raise ApiError(
            403,
            "read_only",
            f"query: {kind or 'this statement'} is not allowed; the SQL endpoint is read-only",
            [{"field": "query", "message": "only SELECT, SHOW, DESCRIBE, EXISTS and EXPLAIN"}],
        )
    max_rows = min(req.max_rows or ctx.settings.sql_max_rows, ctx.settings.sql_max_rows)
    try:
        res = queries.readonly_query(ctx.store, stmt, kind, max_rows, ctx.settings.sql_timeout_s)
    except StoreError as exc:
        text = str(exc)
        if "READONLY" in text or "readonly" in text:
            raise ApiError(
                403, "read_only", f"query: {text}", [{"field": "query", "message": text}]
            ) from None
        raise ApiError(
            400, "query_failed", f"query: {text}", [{"field": "query", "message": text}]
        ) from None
    return {
        "columns": [{"name": n, "type": t} for n, t in zip(res.columns, res.types, strict=True)],
        "rows": res.rows,
        "meta": {
            "rows": len(res.rows),
            "rows_read": res.rows_read,
            "elapsed_ms": round(res.elapsed_s * 1000, 3),
        },
    }


@router.post("/sql", summary="Run read-only SQL")
async def run_sql(
    req: SqlRequest, ctx: AppContext = Depends(context), _: Principal = Depends(viewer)
) -> JsonResponse:
    """One statement (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN) under ClickHouse's
    ``readonly = 1`` with a time limit and a row limit. Statements that write — or
    read files and URLs — answer 403."""
    return JsonResponse(await asyncio.to_thread(_run, ctx, req))
