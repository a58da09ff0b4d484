"""The FastAPI application: ``create_app(ctx)``."""

from __future__ import annotations

from fastapi import FastAPI

from api import errors
from api.context import AppContext
from api.middleware import AuthenticationMiddleware
from api.routers import (
    config,
    connectors,
    deadletters,
    identities,
    ingest,
    metrics,
    provision,
    resources,
    signals,
    sql,
    system,
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
    for module in (
        ingest,
        identities,
        resources,
        provision,
        metrics,
        signals,
        sql,
        system,
        deadletters,
        config,
        connectors,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    app.add_middleware(
        AuthenticationMiddleware, keys=ctx.keys, cn_header=ctx.registry.provisioning.cn_header
    )
    return app
