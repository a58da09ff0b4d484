"""The archiver's health on a runner heartbeat, and back (issue 14).

``millrace run`` shows ``Archiver.health()`` under ``/status``'s ``archive``; in the
distributed deployment the archiver runs in a ``millrace process`` and ``millrace api``
reads it from that process's heartbeat (``pipeline.heartbeat``): the numbers as
figures ``archive_<field>`` (plus ``archive_failing`` 0/1 and ``archive_retries``, the
failures so far), the texts (store URL, last error, passwords masked) as JSON in the
heartbeat's ``info``. :func:`archive_health` rebuilds the same shape from them.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from millrace.pipeline.archive.archiver import ArchiverStats
from millrace.pipeline.restore.urls import masked_url

PREFIX = "archive_"
_NUMBERS = tuple(f.name for f in fields(ArchiverStats) if f.name != "error")
_TEXTS = ("store", "error")


def archive_figures(health: dict[str, Any]) -> dict[str, float]:
    """Heartbeat figures of an archiver's ``health()``."""
    out = {PREFIX + name: float(health.get(name) or 0) for name in _NUMBERS}
    out[PREFIX + "failing"] = float(health.get("error") is not None)
    out[PREFIX + "retries"] = float(health.get("failures") or 0)
    return out


def archive_info(health: dict[str, Any]) -> str:
    """The heartbeat's ``info``: the store URL and the last error, passwords masked."""
    texts = {name: health.get(name) for name in _TEXTS}
    return json.dumps(
        {"archive": {k: masked_url(str(v)) if v is not None else None for k, v in texts.items()}}
    )


def archive_health(figures: dict[str, float], info: str) -> dict[str, Any] | None:
    """``Archiver.health()``'s shape from a heartbeat, None when it carries no archiver."""
    if PREFIX + "failing" not in figures:
        return None
    try:
        texts = json.loads(info).get("archive") or {}
    except (ValueError, AttributeError):
        texts = {}
    out: dict[str, Any] = {}
    for f in fields(ArchiverStats):
        if f.name == "error":
            out["error"] = texts.get("error")
        else:
            value = figures.get(PREFIX + f.name, 0.0)
            out[f.name] = value if f.name == "retry_in_s" else int(value)
    out["store"] = texts.get("store")
    return out
