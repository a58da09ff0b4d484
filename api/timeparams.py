"""Time parameters: ISO-8601 or epoch numbers (``epoch=s|ms|us``), and their output."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from api.errors import bad_request


class Epoch(StrEnum):
    s = "s"
    ms = "ms"
    us = "us"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FACTOR = {Epoch.s: 1_000_000, Epoch.ms: 1_000, Epoch.us: 1}


def parse_time(field: str, raw: str | None, epoch: Epoch | None) -> int | None:
    """Epoch microseconds from an ISO-8601 string or a number in ``epoch`` units
    (seconds when ``epoch`` is absent)."""
    if raw is None or raw == "":
        return None
    text = raw.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        unit = epoch or Epoch.s
        if number != number or abs(number) > 1e19:
            raise bad_request(field, f"{raw!r} is not a valid time")
        if unit is Epoch.us and text.lstrip("-").isdigit():
            return int(text)
        return round(number * _FACTOR[unit])
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(field, f"{raw!r} is neither ISO-8601 nor an epoch number") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def format_time(ts_us: int, epoch: Epoch | None) -> int | float | str:
    """Epoch number in ``epoch`` units, or ISO-8601 (UTC, microseconds) when absent."""
    if epoch is None:
        dt = _EPOCH + timedelta(microseconds=ts_us)
        return dt.isoformat().replace("+00:00", "Z")
    if epoch is Epoch.us:
        return ts_us
    if epoch is Epoch.ms:
        return ts_us // 1000 if ts_us % 1000 == 0 else ts_us / 1000
    return ts_us // 1_000_000 if ts_us % 1_000_000 == 0 else ts_us / 1_000_000
