"""Recent log records in memory (``GET /api/v1/logs`` and its live stream).

:class:`LogRing` is a logging handler on the root logger keeping the last ``capacity``
records as plain dicts (time, level, logger, message), so the API can filter them
(level, logger prefix, since, text) and tail them over Server-Sent Events. A record is
redacted once, when it enters the ring, by :func:`scrub` — the redaction of
``api.users.redact`` (query parameters, API keys, JWTs, bearer tokens) plus
``key: value`` / ``"key": "value"`` pairs whose key names a secret (password, secret,
token, api_key, credential) — and the same filter is installed on the root logger's
handlers, so what the process prints is the same redacted text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from millrace.api.users.redact import redact

#: ``password=…``, ``"token": "…"``, ``secret: …`` in free text (message or arguments)
_PAIR = re.compile(
    r"""(["']?\b[\w.-]*(?:password|passwd|secret|token|api_key|apikey|credential)[\w.-]*\b["']?"""
    r"""\s*[:=]\s*)(?:"[^"]*"|'[^']*'|[^\s,;&}\]]+)""",
    re.I,
)

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def scrub(text: str) -> str:
    """``text`` with every credential we can recognise replaced by ``***``."""
    return _PAIR.sub(r"\1***", redact(text))


class ScrubFilter(logging.Filter):
    """Formats the record's message once, scrubbed (arguments included), and the
    exception text too, so no handler after it can print a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_millrace_scrubbed", False):
            return True
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        record._millrace_scrubbed = True
        return True


@dataclass(frozen=True)
class LogQuery:
    level: int = 0
    logger: str | None = None
    since_us: int | None = None
    text: str | None = None

    def matches(self, rec: dict[str, Any]) -> bool:
        if rec["levelno"] < self.level:
            return False
        if self.logger and not (
            rec["logger"] == self.logger or rec["logger"].startswith(self.logger + ".")
        ):
            return False
        if self.since_us is not None and rec["time_us"] < self.since_us:
            return False
        return not (self.text and self.text.lower() not in rec["message"].lower())


class LogRing(logging.Handler):
    """The last ``capacity`` records, and queues of live listeners."""

    def __init__(self, capacity: int = 5000) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(ScrubFilter())
        self._records: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._seq = 0
        self._lock2 = threading.Lock()
        self._listeners: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]] = (
            set()
        )

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_text:
            text = f"{text}\n{record.exc_text}"
        with self._lock2:
            self._seq += 1
            rec = {
                "seq": self._seq,
                "time_us": int(record.created * 1_000_000),
                "level": record.levelname,
                "levelno": record.levelno,
                "logger": record.name,
                "message": text,
            }
            self._records.append(rec)
            listeners = list(self._listeners)
        for loop, queue in listeners:
            with contextlib.suppress(RuntimeError):  # its loop closed
                loop.call_soon_threadsafe(_offer, queue, rec)

    def records(self, query: LogQuery, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest ``limit`` matching records, oldest first."""
        with self._lock2:
            found = [r for r in self._records if query.matches(r)]
        return [public(r) for r in found[-limit:]]

    @contextlib.contextmanager
    def listen(self, maxsize: int = 1000) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of the records logged from now on (full: newer ones are dropped)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        entry = (asyncio.get_running_loop(), queue)
        with self._lock2:
            self._listeners.add(entry)
        try:
            yield queue
        finally:
            with self._lock2:
                self._listeners.discard(entry)


def _offer(queue: asyncio.Queue[dict[str, Any]], rec: dict[str, Any]) -> None:
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(rec)


def public(rec: dict[str, Any]) -> dict[str, Any]:
    """A record as the API shows it."""
    return {k: v for k, v in rec.items() if k != "levelno"}


_INSTALLED: LogRing | None = None


def install(capacity: int = 5000) -> LogRing:
    """The process's ring on the root logger (once), and the scrub filter on every
    handler the root logger has, so printed lines are redacted as the ring's are."""
    global _INSTALLED
    root = logging.getLogger()
    if _INSTALLED is None:
        _INSTALLED = LogRing(capacity)
        root.addHandler(_INSTALLED)
    for handler in root.handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())
    return _INSTALLED
