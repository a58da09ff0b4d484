"""The server's HTTP/1.1 protocol: uvicorn's h11 protocol with the header, body and
linger timers, the head size limit and the connection caps that ``millrace.api.server``
describes (its module doc lists every limit); :class:`ConnectionCounter` is the cap
both this protocol and the server's overload guard read. Refusals log to the
``millrace.api.server`` logger, whose flood filter rate-limits them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import get_remote_addr

from millrace.api.errors import error_body
from millrace.api.server_limits import ServerLimits

log = logging.getLogger("millrace.api.server")


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
