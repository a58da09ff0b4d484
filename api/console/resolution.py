"""What the explorer asks the API for a time range, and the CSV of what it shows (pure).

A chart never asks for more than :data:`MAX_POINTS` points per signal: short ranges get
raw readings (when the raw answer would be longer, the explorer falls back to the
aggregates), longer ones the smallest of the 1m/5m/1h aggregates whose bucket count fits.
Past :data:`MAX_POINTS` hours the newest hourly buckets are shown and the page says so.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_POINTS = 2500
#: ranges up to this many seconds try raw readings first
RAW_MAX_S = 30 * 60
BUCKETS: tuple[tuple[str, int], ...] = (("1m", 60), ("5m", 300), ("1h", 3600))
PRESETS: dict[str, int] = {
    "15 min": 15 * 60,
    "1 hour": 3600,
    "6 hours": 6 * 3600,
    "24 hours": 86400,
    "7 days": 7 * 86400,
    "30 days": 30 * 86400,
}


@dataclass(frozen=True)
class Plan:
    """One query: ``bucket`` None for raw readings; ``truncated`` when even the coarsest
    bucket has more than :data:`MAX_POINTS` in the range (the newest are shown)."""

    bucket: str | None
    truncated: bool = False


def plan(start_ms: int, end_ms: int, raw_too_long: bool = False) -> Plan:
    """The query for ``[start_ms, end_ms)``; ``raw_too_long`` when a raw answer had more
    than :data:`MAX_POINTS` readings."""
    span_s = max(0, end_ms - start_ms) / 1000
    if span_s <= RAW_MAX_S and not raw_too_long:
        return Plan(None)
    for name, seconds in BUCKETS:
        if span_s / seconds <= MAX_POINTS:
            return Plan(name)
    return Plan(BUCKETS[-1][0], truncated=True)


def zoomed(start_ms: int, end_ms: int, lo_pct: float, hi_pct: float) -> tuple[int, int]:
    """The sub-range ``lo_pct..hi_pct`` (percent, as ECharts' dataZoom reports) of a range;
    at least one second wide."""
    span = end_ms - start_ms
    lo = start_ms + round(span * max(0.0, min(lo_pct, 100.0)) / 100)
    hi = start_ms + round(span * max(0.0, min(hi_pct, 100.0)) / 100)
    return lo, max(hi, lo + 1000)


def shifted(start_ms: int, end_ms: int, factor: float, shift: float) -> tuple[int, int]:
    """The range scaled by ``factor`` around its middle, then moved by ``shift`` of its
    new width (keyboard zoom and pan)."""
    middle, half = (start_ms + end_ms) / 2, (end_ms - start_ms) * factor / 2
    half = max(half, 500)
    move = 2 * half * shift
    return round(middle - half + move), round(middle + half + move)


def parse_time(text: str) -> int | None:
    """Milliseconds of an ISO-8601 time (UTC when no offset is given), or None."""
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def to_csv(bucket: str | None, series: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The shown points as CSV: ``time,signal,value`` for raw readings, else
    ``time,signal,min,avg,max`` (times ISO-8601 UTC, oldest first)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    fields = ["value"] if bucket is None else ["min", "avg", "max"]
    writer.writerow(["time", "signal", *fields])
    for signal, points in series.items():
        for p in sorted(points, key=lambda p: p["timestamp"]):
            writer.writerow([iso(p["timestamp"]), signal, *(_cell(p.get(f)) for f in fields)])
    return out.getvalue()


def _cell(value: Any) -> Any:
    return "" if value is None else value


def units_axes(units: Iterable[str]) -> dict[str, int]:
    """Each distinct unit's y-axis index, in first-seen order."""
    axes: dict[str, int] = {}
    for unit in units:
        axes.setdefault(unit, len(axes))
    return axes
