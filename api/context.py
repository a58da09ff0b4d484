"""What the API needs from the engine, handed in by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import KeyStore, Principal
from api.errors import ApiError
from pipeline.connector import EventPublisher
from projections.store.base import ProjectionStore


def _now_us() -> int:
    import time

    return time.time_ns() // 1000


@dataclass
class ApiSettings:
    max_batch_samples: int = 10_000
    max_future_us: int = 86_400 * 1_000_000
    max_past_us: int = 10 * 365 * 86_400 * 1_000_000 + 3 * 86_400 * 1_000_000
    strict_signals: bool = False
    known_signals: frozenset[str] = frozenset()
    sql_max_rows: int = 100_000
    sql_timeout_s: float = 10.0


@dataclass
class AppContext:
    """The engine as the API sees it."""

    store: ProjectionStore
    publisher: EventPublisher
    keys: KeyStore
    settings: ApiSettings = field(default_factory=ApiSettings)
    clock: Callable[[], int] = _now_us
    status: Callable[[], dict[str, Any]] = dict
    on_ingest: Callable[[], None] = lambda: None
    connectors: Callable[[], list[dict[str, Any]]] = list


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def require(role: str) -> Callable[..., Principal]:
    """Dependency: an authenticated caller with at least ``role``."""

    def dependency(
        request: Request,
        creds: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Principal:
        # authenticated by AuthenticationMiddleware before the body was read
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:
            token = creds.credentials if creds is not None else None
            if not token:
                raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
            principal = context(request).keys.authenticate(token)
            if principal is None:
                raise _unauthorized("invalid API key")
        if not principal.has(role):
            raise ApiError(
                403, "forbidden", f"role '{principal.role}' cannot do this; needs '{role}'"
            )
        return principal

    return dependency


viewer = require("viewer")
operator = require("operator")
admin = require("admin")
