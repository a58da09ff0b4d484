"""Time parameters: ISO-8601 or epoch numbers (``epoch=s|ms|us``), and their output."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from millrace.api.errors import bad_request
from millrace.pipeline.timestamps import MAX_QUERY_US, MIN_QUERY_US


class Epoch(StrEnum):
    s = "s"
    ms = "ms"
    us = "us"


_NUMBER = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FACTOR = {Epoch.s: 1_000_000, Epoch.ms: 1_000, Epoch.us: 1}


#: accepted times: years 1900 to 2299, the range of ClickHouse's DateTime64
MIN_US, MAX_US = MIN_QUERY_US, MAX_QUERY_US


def parse_time(field: str, raw: str | None, epoch: Epoch | None) -> int | None:
    """Epoch microseconds from an ISO-8601 string or a number in ``epoch`` units
    (seconds when ``epoch`` is absent)."""
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if _NUMBER.fullmatch(text):
        unit = epoch or Epoch.s
        us = int((Decimal(text) * _FACTOR[unit]).to_integral_value(ROUND_HALF_EVEN))
    else:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise bad_request(field, f"{raw!r} is neither ISO-8601 nor an epoch number") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        delta = dt - _EPOCH
        us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not MIN_US <= us < MAX_US:
        raise bad_request(field, f"{raw!r} is outside the years 1900-2299")
    return us


def format_time(ts_us: int, epoch: Epoch | None) -> int | float | str:
    """Epoch number in ``epoch`` units, or ISO-8601 (UTC, microseconds) when absent."""
    if epoch is None:
        dt = _EPOCH + timedelta(microseconds=ts_us)
        return dt.isoformat().replace("+00:00", "Z")
    if epoch is Epoch.us:
        return ts_us
    factor = _FACTOR[epoch]
    if ts_us % factor == 0:
        return ts_us // factor
    return float(Decimal(ts_us) / factor)
