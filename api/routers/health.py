"""Probes and scraping outside ``/api/v1``: ``/health/live`` and ``/health/ready``
answer without a key (orchestrators and the Docker health checks call them; they name
checks, never data), and ``/metrics`` in Prometheus format, which needs a viewer's key
unless ``api.metrics_open`` is set."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from millrace.api.context import AppContext, authorize, context
from millrace.api.errors import ApiError
from millrace.api.middleware import bearer_token
from millrace.api.prom import CONTENT_TYPE
from millrace.api.responses import JsonResponse
from millrace.api.routers.operations import ops_of
from millrace.api.routing import StrictRoute

# probes and scraping are not API operations: outside the OpenAPI document
router = APIRouter(tags=["health"], include_in_schema=False, route_class=StrictRoute)


@router.get("/health/live", summary="The process answers (no key)")
async def live() -> JsonResponse:
    return JsonResponse({"status": "ok"})


@router.get("/health/ready", summary="Log writable, store answers, lag bounded (no key)")
async def ready(ctx: AppContext = Depends(context)) -> JsonResponse:
    """200 when every check passes, else 503; the body names each check."""
    checks = await ops_of(ctx).readiness(ctx.store)
    ok = all(c["ok"] for c in checks.values())
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request, ctx: AppContext = Depends(context)) -> Response:
    ops = ops_of(ctx)
    if not ops.metrics_open:
        token = bearer_token(request.scope.get("headers", []))
        assert ctx.access is not None
        principal = ctx.access.authenticate(token) if token else None
        if principal is None:
            raise ApiError(
                401,
                "unauthorized",
                "invalid API key"
                if token
                else "missing API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        authorize(principal, "system:read", "viewer")
    await ops.refresh()
    return Response(ops.metrics.exposition(), media_type=CONTENT_TYPE)
