"""What the API needs from the engine, handed in by the composition root."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from millrace.api.auth import KeyStore, Principal
from millrace.api.device_auth import (
    CredentialHasher,
    FailureLimiter,
    VerifiedCache,
    parse_allowlist,
)
from millrace.api.errors import ApiError
from millrace.api.idempotency import IdempotentAnswers
from millrace.api.limits import RequestLimits
from millrace.api.permissions import (
    AUTHENTICATED,
    CATALOG,
    PUBLIC,
    ROUTE_PERMISSIONS,
    SCOPE_AWARE,
    SCOPE_UNFILTERED,
)
from millrace.api.slots import Slots
from millrace.api.users.access import AccessControl
from millrace.api.users.scope import TagScopes, in_scope
from millrace.pipeline.cache import LastGoodCache
from millrace.pipeline.clock import now_us
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.identities.config import RegistryConfig
from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.projections.store.base import ProjectionStore

if TYPE_CHECKING:
    from millrace.api.operations import Operations
    from millrace.api.stream import StreamHub
    from millrace.pipeline.archive.store import ArchiveStore


@dataclass
class ApiSettings:
    max_batch_samples: int = 10_000
    #: readings (signal values) per ingest request, over all its samples
    max_batch_readings: int = 100_000
    #: request body limits per route (``api.limits``)
    limits: RequestLimits = field(default_factory=RequestLimits)
    max_future_us: int = 86_400 * 1_000_000
    max_past_us: int = 10 * 365 * 86_400 * 1_000_000 + 3 * 86_400 * 1_000_000
    strict_signals: bool = False
    known_signals: frozenset[str] = frozenset()
    #: analyst SQL limits (``projections.sandbox.SqlLimits``): result rows, time,
    #: memory, rows and bytes read, result bytes, threads per query
    sql_max_rows: int = 100_000
    sql_timeout_s: float = 10.0
    sql_max_memory_bytes: int = 1 << 30
    sql_max_rows_to_read: int = 1_000_000_000
    sql_max_bytes_to_read: int = 10 << 30
    sql_max_result_bytes: int = 32 << 20
    sql_max_threads: int = 1
    #: analyst queries running at once, in all and per caller (more: 429)
    sql_max_concurrent: int = 2
    sql_max_concurrent_per_principal: int = 1
    #: how long an ingest ``Idempotency-Key`` answers like its first call (``api.idempotency``)
    idempotency_window_s: int = 86_400
    #: URL prefixes a restore by URL may read besides the archive store (``restore:``)
    restore_url_prefixes: tuple[str, ...] = ()


async def _no_wait(topic: str) -> bool:
    return False


@dataclass
class AppContext:
    """The engine as the API sees it."""

    store: ProjectionStore
    publisher: EventPublisher
    keys: KeyStore
    settings: ApiSettings = field(default_factory=ApiSettings)
    clock: Callable[[], int] = now_us
    status: Callable[[], dict[str, Any]] = dict
    on_ingest: Callable[[], None] = lambda: None
    connectors: Callable[[], list[dict[str, Any]]] = list
    #: start|stop|restart one connector of this process (``ConnectorManager.control``):
    #: its snapshot after, None for an unknown name; None: connectors run elsewhere (409)
    connector_control: Callable[[str, str], Awaitable[dict[str, Any] | None]] | None = None
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    #: waits (bounded) until the projections hold everything appended to ``topic`` so
    #: far — read-your-writes for API writes; False when it could not tell
    wait_applied: Callable[[str], Awaitable[bool]] = _no_wait
    hasher: CredentialHasher = field(default_factory=CredentialHasher)
    #: the live stream's hub (``/api/v1/stream``); None: the stream routes answer 503
    stream: StreamHub | None = None
    #: analyst SQL's own store (sessions no API read waits for); None: ``store``
    analyst_store: ProjectionStore | None = None
    #: analyst SQL's own threads (``POST /api/v1/sql``); None: the loop's default pool
    sql_executor: Executor | None = None
    #: the archive store (``GET /api/v1/archive``); None: no archive configured (409)
    archive: ArchiveStore | None = None
    #: users, sessions, tokens and roles (``api.users``); None: in memory, over ``keys``
    access: AccessControl | None = None
    #: system info, health, metrics, logs, pause/resume, running configuration
    #: (``api.operations``); None: those routes answer 503
    ops: Operations | None = None

    def __post_init__(self) -> None:
        from millrace.projections.registry import RegistryQueries

        if self.access is None:
            self.access = AccessControl(self.keys, hasher=self.hasher)
        self.queries = RegistryQueries(self.store, self.registry.inactivity_timeout_s)
        #: roles scoped by tags: the identities their criteria select now
        self.tag_scopes = TagScopes(self.queries, self.clock, TtlCache(1.0, 1000))
        if self.access.resolve_tags is None:
            self.access.resolve_tags = self.tag_scopes
        self.verified = VerifiedCache(self.hasher)
        self.idempotency = IdempotentAnswers(self.clock, self.settings.idempotency_window_s)
        self.failures = FailureLimiter()
        self.allowlist = parse_allowlist(self.registry.provisioning.ip_allowlist)
        self.trusted_proxies = parse_allowlist(self.registry.provisioning.trusted_proxies)
        self._locks: dict[str, asyncio.Lock] = {}
        #: short-lived caches of what every ingest request checks (status, definitions);
        #: writes of this process invalidate them at once, others within ``ttl_s``
        self.status_cache = TtlCache(1.0)
        from millrace.api.ingest_gate import IngestGate
        from millrace.api.registry import identity_status

        #: which identities may post readings (one query a second for all of them)
        self.ingest_gate = IngestGate(
            self.queries,
            self.registry.require_registered,
            lambda identity: identity_status(self, identity),
        )
        self.defs_cache = definitions_cache(self.store)
        #: analyst queries running (``POST /api/v1/sql``), per API key and in all
        self.sql_slots = Slots(
            self.settings.sql_max_concurrent, self.settings.sql_max_concurrent_per_principal
        )

    def lock(self, key: str) -> asyncio.Lock:
        """Serializes check-then-write on one identity (or resource) in this process."""
        lk = self._locks.get(key)
        if lk is None:
            if len(self._locks) > 10_000:
                for k in [k for k, v in self._locks.items() if not v.locked()]:
                    del self._locks[k]
            lk = self._locks[key] = asyncio.Lock()
        return lk


def definitions_cache(store: ProjectionStore) -> LastGoodCache[dict[str, ResourceDefinition]]:
    """The resource definitions, read at most once a second; a failed refresh keeps the
    last ones (``pipeline.cache``)."""
    from millrace.projections.definitions import definition_map

    async def load() -> dict[str, ResourceDefinition]:
        return await asyncio.to_thread(definition_map, store)

    return LastGoodCache(load, 1.0)


class TtlCache:
    """A small time-bounded cache (monotonic clock)."""

    def __init__(self, ttl_s: float, max_entries: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._data: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> tuple[bool, Any]:
        hit = self._data.get(key)
        if hit is None or hit[0] < time.monotonic():
            return False, None
        return True, hit[1]

    def put(self, key: str, value: Any) -> None:
        if len(self._data) >= self.max_entries:
            self._data.clear()
        self._data[key] = (time.monotonic() + self.ttl_s, value)

    def invalidate(self, key: str | None = None) -> None:
        if key is None:
            self._data.clear()
        else:
            self._data.pop(key, None)


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")
bearer_scheme = _bearer


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def _templates(request: Request) -> dict[tuple[str, Any], str]:
    """(method, endpoint) -> the route's full path template, for this app (a route of a
    router included in another router knows only its own part of the path)."""
    found: dict[tuple[str, Any], str] | None = getattr(request.app.state, "route_templates", None)
    if found is None:
        try:
            from fastapi.routing import iter_route_contexts

            routes: list[Any] = list(iter_route_contexts(request.app.routes))
        except ImportError:  # pragma: no cover - older FastAPI: app.routes is flat
            routes = list(request.app.routes)
        found = {}
        for route in routes:
            endpoint, path = getattr(route, "endpoint", None), getattr(route, "path", None)
            for method in getattr(route, "methods", None) or ():
                if endpoint is not None and path:
                    found[(method, endpoint)] = path
        request.app.state.route_templates = found
    return found


def route_key(request: Request) -> tuple[str, str]:
    """(method, full path template) of the route serving ``request``."""
    path = _templates(request).get((request.method, request.scope.get("endpoint")))
    return request.method, str(path)


def route_permission(request: Request) -> str | None:
    """What the route serving ``request`` needs (``api.permissions``); None: not in the
    table."""
    return ROUTE_PERMISSIONS.get(route_key(request))


def authorize(
    principal: Principal,
    permission: str | None,
    role: str,
    path_params: Mapping[str, Any] | None = None,
    scope_aware: bool = False,
) -> None:
    """403 unless ``principal`` holds ``permission`` (None: all of built-in ``role``);
    a scoped principal also only reaches routes about one identity inside its scope."""
    if permission in (PUBLIC, AUTHENTICATED):
        return
    if principal.scope is not None and not scope_aware:
        check_scope(principal.scope, (path_params or {}).get("identity"))
    if permission is None:
        if not principal.has(role):
            raise ApiError(
                403, "forbidden", f"role '{principal.role}' cannot do this; needs '{role}'"
            )
        return
    if not principal.can(permission):
        lowest = CATALOG.get(permission, (role, ""))[0]
        raise ApiError(
            403,
            "forbidden",
            f"role '{principal.role}' cannot do this; needs permission '{permission}'"
            f" (built-in role '{lowest}' has it)",
        )


def check_scope(scope: tuple[str, ...], identity: Any) -> None:
    """A scoped role reaches the routes of one identity (``{identity}`` in the path)
    inside its patterns; an identity outside answers 404, as one that does not exist.
    Routes in ``api.permissions.SCOPE_AWARE`` filter by the scope themselves (and SQL,
    ``SCOPE_UNFILTERED``, is open to a scoped role granted ``sql:query``); every other
    route — not about identities, or aggregated over all of them — is refused (403) to
    scoped roles: refusing is what leaks nothing."""
    if not isinstance(identity, str):
        raise ApiError(
            403,
            "forbidden",
            "a role scoped to identities cannot use this route (only routes of one identity)",
        )
    if not in_scope(identity, scope):
        message = f"identity: no identity {identity!r}"
        raise ApiError(404, "not_found", message, [{"field": "identity", "message": "not found"}])


def require(role: str) -> Callable[..., Principal]:
    """Dependency: an authenticated caller holding the permission the route declares in
    ``api.permissions.ROUTE_PERMISSIONS`` (a route not there: every permission of the
    built-in ``role``)."""

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
            access = context(request).access
            assert access is not None
            principal = access.authenticate(token)
            if principal is None:
                raise _unauthorized("invalid API key")
        key = route_key(request)
        aware = key in SCOPE_AWARE or key in SCOPE_UNFILTERED
        authorize(principal, route_permission(request), role, request.path_params, aware)
        return principal

    return dependency


#: shorthands every router uses; what a route really needs is in ``ROUTE_PERMISSIONS``
viewer = require("viewer")
operator = require("operator")
admin = require("admin")
