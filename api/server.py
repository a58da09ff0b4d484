"""The HTTP server of both deployments, with limits a hostile client cannot outlast.

uvicorn's defaults let a client hold a connection forever by never finishing its
request headers, keep as many idle connections as the process has file descriptors,
and log every failed ``accept()`` once file descriptors ran out (673,773 lines in one
probe). :func:`build_server` builds the one uvicorn server ``millrace run`` and
``millrace api`` use, with:

* a header timeout: a connection must complete its request headers within
  ``header_timeout_s`` of opening (or of its previous response), else it is closed;
* a body timeout: a request body that stops arriving for ``body_timeout_s`` (while the
  server is ready to read) closes the connection;
* after an early answer (401, 413) to a request whose body is still arriving, at most
  ``linger_bytes`` more are read and discarded, for at most ``linger_s``, so the client
  can finish sending and read the answer, then the connection is closed;
* ``keep_alive_timeout_s`` between requests, and the header size limit of h11
  (``max_header_bytes``: 431 when exceeded);
* a connection cap below the file descriptor limit, in total and per client address:
  a connection beyond it is answered 503 and closed at once, without reading it;
* ``limit_concurrency``: beyond this many requests in flight or connections open, a
  request is answered 503 (``overloaded``) instead of queueing;
* RLIMIT_NOFILE's soft limit raised to the hard limit at start;
* messages a flood would repeat (``socket.accept() out of system resource``, invalid
  requests, refusals) logged at most once per ``log_interval_s``, with the number of
  those suppressed.

The protocol (timers, caps, head limit) is :mod:`millrace.api.server_protocol`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from millrace.api.errors import error_body
from millrace.api.responses import JsonResponse
from millrace.api.server_limits import ServerLimits
from millrace.api.server_protocol import ConnectionCounter as ConnectionCounter
from millrace.api.server_protocol import protocol_class
from millrace.api.users.redact import install_redaction

__all__ = ["ServerLimits", "build_server"]

log = logging.getLogger("millrace.api.server")

#: messages a flood repeats: (logger, message prefix)
FLOOD_MESSAGES = (
    ("asyncio", "socket.accept() out of system resource"),
    ("uvicorn.error", "Invalid HTTP request received."),
    ("millrace.api.server", "refused"),
)


# -- file descriptors ----------------------------------------------------------------


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; the soft limit after."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def accept_backlog(nofile: int) -> int:
    """The listen backlog, which is also how many connections asyncio accepts in one go
    (each an open file descriptor until refused): ``nofile / 8``, 16 to 2048."""
    return min(2048, max(16, nofile // 8))


def connection_cap(configured: int, nofile: int) -> int:
    """``configured``, lowered so that the connections leave file descriptors for the
    rest of the process (log segments, the store, Kafka: ``min(1024, nofile / 4)``) and
    for two bursts of accepted connections not yet refused (``2 * accept_backlog``)."""
    reserve = min(1024, nofile // 4) + 2 * accept_backlog(nofile)
    return max(1, min(configured, nofile - reserve))


# -- logging ---------------------------------------------------------------------------


class RateLimitFilter(logging.Filter):
    """Lets a record whose message starts with ``prefix`` through at most once per
    ``interval_s``; the next one let through says how many were suppressed."""

    def __init__(
        self, prefix: str, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.interval_s = interval_s
        self.clock = clock
        self.suppressed = 0
        self._next = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        now = self.clock()
        if now < self._next:
            self.suppressed += 1
            return False
        self._next = now + self.interval_s
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} more suppressed)"
            self.suppressed = 0
        return True


def install_log_filters(interval_s: float) -> None:
    """Rate-limit :data:`FLOOD_MESSAGES` (once per logger and message)."""
    for name, prefix in FLOOD_MESSAGES:
        logger = logging.getLogger(name)
        mine = [f for f in logger.filters if isinstance(f, RateLimitFilter) and f.prefix == prefix]
        if mine:
            mine[0].interval_s = interval_s
        else:
            logger.addFilter(RateLimitFilter(prefix, interval_s))


# -- load shedding ---------------------------------------------------------------------


class OverloadGuard:
    """503 ``overloaded`` (with ``Retry-After``) for a request that arrives while
    ``limit`` requests are in flight or ``limit`` connections are open: uvicorn's own
    ``limit_concurrency``, with the API's error body. Long-lived streams count."""

    def __init__(self, app: ASGIApp, counter: ConnectionCounter, limit: int) -> None:
        self.app = app
        self.counter = counter
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit or self.counter.total > self.limit:
            response = JsonResponse(
                error_body("overloaded", "the server is at its concurrency limit; retry"),
                503,
                headers={"Retry-After": "1", "Connection": "close"},
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def build_server(
    app: ASGIApp,
    host: str,
    port: int,
    limits: ServerLimits | None = None,
    **config: Any,
) -> uvicorn.Server:
    """The uvicorn server of ``app`` with ``limits``; ``config`` passes further
    ``uvicorn.Config`` settings (e.g. ``timeout_graceful_shutdown``). Signals are left
    to the caller, which owns shutdown (``server.should_exit``)."""
    limits = limits or ServerLimits()
    nofile = raise_nofile_limit()
    cap = connection_cap(limits.max_connections, nofile)
    counter = ConnectionCounter(cap, limits.max_connections_per_client)
    install_log_filters(limits.log_interval_s)
    install_redaction()  # no token or key in uvicorn's lines, access log included
    settings: dict[str, Any] = {
        "log_level": "warning",
        "access_log": False,
        "lifespan": "off",
        "ws": "none",
        "backlog": accept_backlog(nofile),
        **config,
    }
    server = uvicorn.Server(
        uvicorn.Config(
            OverloadGuard(app, counter, min(limits.limit_concurrency, cap)),
            host=host,
            port=port,
            http=protocol_class(limits, counter),
            timeout_keep_alive=limits.keep_alive_timeout_s,
            h11_max_incomplete_event_size=limits.max_header_bytes,
            **settings,
        )
    )
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    return server
