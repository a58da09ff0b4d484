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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

import h11
import orjson
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import get_remote_addr

from millrace.api.errors import error_body
from millrace.api.responses import JsonResponse
from millrace.api.server_limits import ServerLimits

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


class ConnectionCounter:
    """Open connections, in total and per client address."""

    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.total = 0
        self.per_client: dict[str, int] = {}
        self.refused = 0

    def acquire(self, client: str) -> bool:
        held = self.per_client.get(client, 0)
        if self.total >= self.max_total or held >= self.max_per_client:
            self.refused += 1
            return False
        self.total += 1
        self.per_client[client] = held + 1
        return True

    def release(self, client: str) -> None:
        self.total -= 1
        held = self.per_client.get(client, 1) - 1
        if held > 0:
            self.per_client[client] = held
        else:
            self.per_client.pop(client, None)


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


# -- the protocol ----------------------------------------------------------------------


def _raw_response(status: int, reason: bytes, code: str, message: str) -> bytes:
    body = orjson.dumps(error_body(code, message))
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\nretry-after: 1\r\n\r\n" % (status, reason, len(body))
    )
    return head + body


REFUSED = _raw_response(
    503, b"Service Unavailable", "overloaded", "too many connections; try again later"
)


def head_too_large(limit: int) -> bytes:
    return _raw_response(
        431,
        b"Request Header Fields Too Large",
        "headers_too_large",
        f"request line and headers larger than {limit} bytes",
    )


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the timers, caps and discard bound of the module
    doc. :func:`protocol_class` makes a subclass carrying the limits."""

    limits: ClassVar[ServerLimits] = ServerLimits()
    counter: ClassVar[ConnectionCounter] = ConnectionCounter(8192, 1024)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client_host: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind: str | None = None
        self._discarded = 0
        #: request head bytes seen so far, and the last 3 (a head end split over reads)
        self._head_seen = 0
        self._head_tail = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = get_remote_addr(transport)
        host = peer[0] if peer else ""
        if not self.counter.acquire(host):
            self.transport = transport
            log.warning(
                "refused connections over the cap (%d open, %d per client)",
                self.counter.max_total,
                self.counter.max_per_client,
            )
            transport.write(REFUSED)
            transport.close()
            return
        self._client_host = host
        super().connection_made(transport)
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._client_host is None:  # refused in connection_made
            return
        self.counter.release(self._client_host)
        self._client_host = None
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering():
            self._discarded += len(data)
            if self._discarded > self.limits.linger_bytes:
                self._close()
                return
        if self.conn.their_state is h11.IDLE and not self._head_fits(data):
            self._answer_and_close(head_too_large(self.limits.max_header_bytes))
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._head_seen, self._head_tail = 0, b""
        self._watch()

    def _head_fits(self, data: bytes) -> bool:
        """Whether the request head (line and headers) stays within
        ``max_header_bytes`` with ``data``: h11 bounds only a head that arrives in
        pieces, not one that arrives whole in one read."""
        joined = self._head_tail + data
        end = joined.find(b"\r\n\r\n")
        if end == -1:
            self._head_seen += len(data)
            self._head_tail = joined[-3:]
            return self._head_seen <= self.limits.max_header_bytes
        return self._head_seen - len(self._head_tail) + end + 4 <= self.limits.max_header_bytes

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def send_400_response(self, msg: str) -> None:
        """An unparseable request: 431 when its head outgrew ``max_header_bytes``,
        else 400; JSON like every other error; the connection is closed."""
        buffered, _ = self.conn.trailing_data
        if len(buffered) > self.limits.max_header_bytes:
            self._answer_and_close(head_too_large(self.limits.max_header_bytes))
        else:
            self._answer_and_close(_raw_response(400, b"Bad Request", "invalid_http", msg))

    def _answer_and_close(self, raw: bytes) -> None:
        self._cancel_timer()
        if not self.transport.is_closing():
            self.transport.write(raw)
            self.transport.close()

    # -- timers ---------------------------------------------------------------------

    def _lingering(self) -> bool:
        """Answered, while the request body still arrives."""
        return (
            self.cycle is not None
            and self.cycle.response_complete
            and self.conn.their_state is h11.SEND_BODY
        )

    def _watch(self) -> None:
        """Arm the timer that fits the connection's state: waiting for request headers
        (a deadline data does not extend), reading a body (reset by each read), or
        discarding a body after the answer (a deadline)."""
        if self.transport is None or self.transport.is_closing():
            self._cancel_timer()
            return
        state = self.conn.their_state
        kind: str | None = None
        if state is h11.IDLE:
            kind = "header"
        elif state is h11.SEND_BODY:
            kind = "linger" if self._lingering() else "body"
        if kind == self._timer_kind and kind != "body":
            return
        self._cancel_timer()
        if kind is not None:
            delay = {
                "header": self.limits.header_timeout_s,
                "body": self.limits.body_timeout_s,
                "linger": self.limits.linger_s,
            }[kind]
            self._timer = self.loop.call_later(delay, self._expired, kind)
        self._timer_kind = kind

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_kind = None

    def _expired(self, kind: str) -> None:
        self._timer = None
        self._timer_kind = None
        if kind == "body" and self.flow is not None and self.flow.read_paused:
            self._watch()  # the app is not reading yet: not the client's delay
            return
        self._close()

    def _close(self) -> None:
        self._cancel_timer()
        if not self.transport.is_closing():
            self.transport.close()


def protocol_class(limits: ServerLimits, counter: ConnectionCounter) -> type[LimitedH11Protocol]:
    """A :class:`LimitedH11Protocol` for one server."""
    return type("LimitedH11Protocol", (LimitedH11Protocol,), {"limits": limits, "counter": counter})


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
