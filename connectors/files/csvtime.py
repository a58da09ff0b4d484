"""CSV timestamps → epoch microseconds: epoch numbers, ISO 8601 or a strptime format, a
local time in the configured time zone (with the daylight-saving rules of
:class:`TimestampParser`), and the check of a configured ``timestamp_format``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, InvalidOperation
from zoneinfo import ZoneInfo

from .config import EPOCH_FORMATS
from .csvvalues import parse_decimal

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_EPOCH_FACTOR = {"epoch_s": 1_000_000, "epoch_ms": 1000, "epoch_us": 1}


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch of an aware datetime, exactly."""
    return (dt - _EPOCH) // _US


_MIN_US = to_us(datetime(1, 1, 2, tzinfo=UTC))
_MAX_US = to_us(datetime(9999, 12, 30, tzinfo=UTC))


def check_timestamp_format(fmt: str) -> str | None:
    """Why ``fmt`` is not a usable timestamp_format, or None if it is."""
    if fmt in EPOCH_FORMATS or fmt == "iso8601":
        return None
    if "%" not in fmt:
        return (
            f"{fmt!r} is neither iso8601, epoch_s, epoch_ms, epoch_us nor a strptime format "
            "(e.g. %Y-%m-%d %H:%M:%S)"
        )
    sample = datetime(2001, 11, 22, 13, 14, 15, 123456, tzinfo=UTC)
    try:
        datetime.strptime(sample.strftime(fmt), fmt)
    except ValueError as exc:
        return f"invalid strptime format {fmt!r}: {exc}"
    return None


class TimestampParser:
    """Text of the timestamp column(s) → epoch microseconds.

    A time without a UTC offset is in ``timezone``. In the hour repeated when daylight
    saving time ends, a time is taken as its first occurrence unless that would go back
    before the previous row's time: a file written in time order then reads the second
    pass through the hour correctly. Times in the hour skipped in spring are shifted by
    the DST offset (PEP 495).
    """

    def __init__(self, fmt: str, timezone: str, decimal_comma: bool = False) -> None:
        self.fmt = fmt
        self.zone = ZoneInfo(timezone)
        self.decimal_comma = decimal_comma
        self.previous: int | None = None

    def __call__(self, text: str) -> int:
        fmt = self.fmt
        if fmt in _EPOCH_FACTOR:
            try:
                d = parse_decimal(text, self.decimal_comma) * _EPOCH_FACTOR[fmt]
                ts = int(d.to_integral_value(ROUND_HALF_EVEN))
            except (ValueError, InvalidOperation, OverflowError) as exc:
                raise ValueError(f"time {text!r} is not an {fmt} number") from exc
        else:
            try:
                if fmt == "iso8601":
                    dt = datetime.fromisoformat(text)
                else:
                    dt = datetime.strptime(text, fmt)
            except ValueError as exc:
                want = "an ISO 8601 time" if fmt == "iso8601" else f"format {fmt!r}"
                raise ValueError(f"time {text!r} does not match {want}") from exc
            ts = self._local(dt) if dt.tzinfo is None else to_us(dt)
        if not _MIN_US <= ts <= _MAX_US:
            raise ValueError(f"time {text!r} is out of range")
        self.previous = ts
        return ts

    def _local(self, dt: datetime) -> int:
        first = to_us(dt.replace(tzinfo=self.zone, fold=0))
        second = to_us(dt.replace(tzinfo=self.zone, fold=1))
        if second > first and self.previous is not None and first < self.previous:
            return second  # the repeated hour, second pass
        return first
