"""The supervisor: keeps a protocol session up, reconnecting with backoff, forever.

:func:`supervise` drives a :class:`Session` (a protocol connector): ``connect``, then
``serve`` until the session is lost, ``disconnect``, wait the next backoff delay (full
jitter), again. It reports each step through ``set_state`` (``connecting``,
``running``, ``reconnecting``, ``error``; retries after an error stay ``error``) and
names the gap in the data after a reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Protocol

from millrace.pipeline.errors import ConnectorError

from .backoff import Backoff
from .models import BackoffConfig

log = logging.getLogger("millrace.connectors")


def describe(exc: BaseException) -> str:
    """A one-line, user-facing reason for a connection failure."""
    if isinstance(exc, ConnectionRefusedError):
        return "Connection refused"
    if isinstance(exc, socket.gaierror):
        return "Host not found"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "Host not reachable (timeout)"
    if isinstance(exc, OSError) and exc.errno in (101, 113):
        return "Host not reachable"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ConnectorError) else f"{type(exc).__name__}: {text}"


class Session(Protocol):
    """What the supervisor needs of a connector."""

    resource_id: str
    counters: dict[str, float]
    connected_event: asyncio.Event

    async def connect(self) -> None: ...
    async def serve(self) -> None: ...
    async def disconnect(self) -> None: ...
    def now_us(self) -> int: ...
    def current_state(self) -> tuple[str, str]: ...
    def set_state(self, current: str, info: str = "") -> None: ...


async def supervise(session: Session, reconnect: BackoffConfig) -> None:
    """Run ``session`` until cancelled (see the module doc)."""
    r = reconnect
    backoff = Backoff(r.initial_ms / 1000, r.max_ms / 1000, r.factor, r.jitter)
    counters = session.counters
    first = True
    lost_at_us: int | None = None
    while True:
        current, info = session.current_state()
        if current != "error":  # retries after an error stay "error"
            session.set_state("connecting" if first else "reconnecting", info)
        try:
            await session.connect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            counters["errors"] += 1
            # every failed attempt, even when the state does not change (the status
            # processor counts the increase as connection_error device metrics)
            counters["connect_errors"] += 1
            await _safe_disconnect(session)
            if lost_at_us is None:
                lost_at_us = session.now_us()
            session.set_state("error", describe(exc))
            await asyncio.sleep(backoff.next())
            first = False
            continue
        backoff.reset()
        info = ""
        if lost_at_us is not None and not first:
            counters["reconnects"] += 1
            gap_s = (session.now_us() - lost_at_us) / 1e6
            info = f"reconnected; no data for {gap_s:.1f} s"
        lost_at_us = None
        session.connected_event.set()
        session.set_state("running", info)
        first = False
        try:
            await session.serve()
            reason = "connection closed"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            counters["errors"] += 1
            reason = describe(exc)
        session.connected_event.clear()
        lost_at_us = session.now_us()
        await _safe_disconnect(session)
        session.set_state("reconnecting", f"connection lost: {reason}")
        await asyncio.sleep(backoff.next())


async def _safe_disconnect(session: Session) -> None:
    try:
        await session.disconnect()
    except Exception:
        log.debug("%s: disconnect failed", session.resource_id, exc_info=True)
