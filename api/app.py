"""The FastAPI application: ``create_app(ctx)``."""

from __future__ import annotations

from fastapi import FastAPI

from millrace.api import errors, openapi
from millrace.api.audit import AuditMiddleware
from millrace.api.context import AppContext
from millrace.api.limits import BodyLimitMiddleware
from millrace.api.middleware import AuthenticationMiddleware
from millrace.api.prom import RequestTimer
from millrace.api.routers import (
    alarms,
    archive,
    audits,
    config,
    connectors,
    deadletters,
    health,
    identities,
    ingest,
    login,
    metrics,
    operations,
    provision,
    replay,
    resource_states,
    resources,
    restore,
    roles,
    services,
    signals,
    sql,
    stream,
    system,
    users,
)

API_PREFIX = "/api/v1"


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(
        title="millrace",
        version="0.1.0",
        description=(
            "Event-sourced telemetry pipeline. Every endpoint needs an API key: "
            "`Authorization: Bearer <key>`. Roles: viewer < operator < admin."
        ),
    )
    app.state.ctx = ctx
    errors.install(app)
    openapi.install(app)
    for module in (
        ingest,
        identities,
        resource_states,  # before resources: /resources/{name} would take "states"
        resources,
        provision,
        metrics,
        signals,
        sql,
        system,
        deadletters,
        config,
        connectors,
        services,
        audits,
        stream,
        alarms,
        replay,
        restore,
        archive,
        login,
        users,
        roles,
        operations,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(health.router)  # /health/live, /health/ready, /metrics
    # innermost: bodies are bounded where routes read them, and the audit sees the 413
    app.add_middleware(BodyLimitMiddleware, limits=ctx.settings.limits)
    # inside authentication (added first = innermost): it sees the caller
    app.add_middleware(AuditMiddleware, publisher=ctx.publisher, clock=ctx.clock)
    assert ctx.access is not None  # AppContext builds one when none is given
    app.add_middleware(
        AuthenticationMiddleware, keys=ctx.access, cn_header=ctx.registry.provisioning.cn_header
    )
    if ctx.ops is not None:  # outermost: every request's duration, refused ones too
        app.add_middleware(RequestTimer, metrics=ctx.ops.metrics)
    return app
