"""No credential in a log line: a logging filter for every handler millrace installs
and for uvicorn's loggers (its access log, when someone turns it on, prints the path
with its query string — where the live stream's ``access_token`` travels).

It rewrites a record's message and arguments: ``access_token=…`` (and ``token``,
``refresh_token``, ``key``, ``password`` query parameters) become ``…=***``; API keys
(``mr_<id>_<secret>``) keep their id only; anything shaped like a JWT becomes ``***``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_QUERY = re.compile(r"((?:access_token|refresh_token|token|api_key|key|password)=)[^&\s\"']+", re.I)
_API_KEY = re.compile(r"\b(mr_[0-9a-f]{12})_[A-Za-z0-9_-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(Bearer\s+)\S+", re.I)

#: the loggers it is installed on by :func:`install_redaction` (a logger's filter sees
#: only records logged on that logger itself: uvicorn logs on these two; millrace's own
#: code never logs a credential, and the middleware that handles them logs nothing)
LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    text = _QUERY.sub(r"\1***", text)
    text = _API_KEY.sub(r"\1_***", text)
    text = _JWT.sub("***", text)
    return _BEARER.sub(r"\1***", text)


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        return True


_FILTER = RedactSecrets()


def install_redaction() -> None:
    """Add the filter to the loggers credentials could reach (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
