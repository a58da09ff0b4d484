"""Device metrics (``millrace.device_metrics``): counts per minute of what devices did
(publishes, connections, errors), merged into wider windows on read."""

from __future__ import annotations

from typing import Any

from millrace.projections.errors import QueryError
from millrace.projections.identity_filter import int64
from millrace.projections.store.base import ProjectionStore

METRIC_WINDOWS: dict[str, int] = {"1m": 1, "5m": 5, "1h": 60}  # minutes
METRIC_FNS = ("count", "max", "min", "sum", "avg")


def _clamp_s(seconds: int) -> int:
    return min(max(seconds, 0), 2**32 - 1)


def metrics(
    store: ProjectionStore, metric: str, window: str, fn: str, start_us: int, end_us: int
) -> list[dict[str, Any]]:
    """``fn`` of ``metric`` per ``window`` bucket whose start is in
    [start_us, end_us), ascending; buckets without data are absent. 5m and 1h
    buckets merge the stored 1m buckets; avg is total sum over total count (not an
    average of averages)."""
    minutes = METRIC_WINDOWS.get(window)
    if minutes is None:
        raise QueryError("aggregate_window", f"unknown window {window!r}; expected 1m, 5m or 1h")
    if fn not in METRIC_FNS:
        raise QueryError(
            "aggregate_fn", f"unknown function {fn!r}; expected one of {', '.join(METRIC_FNS)}"
        )
    agg = {
        "count": "sum(count)",
        "sum": "sum(sum)",
        "min": "min(min)",
        "max": "max(max)",
        "avg": "sum(sum) / sum(count)",
    }[fn]
    # buckets start on whole seconds: b * 1e6 >= start <=> b >= ceil(start / 1e6), and
    # likewise for end; clamped to the range of DateTime so any Int64 is a valid bound
    start_s = _clamp_s(-(-int64("start_time", start_us) // 1_000_000))
    end_s = _clamp_s(-(-int64("end_time", end_us) // 1_000_000))
    b = f"toStartOfInterval(bucket, INTERVAL {minutes} MINUTE)"
    rows = store.execute(
        f"SELECT toInt64(toUnixTimestamp(b)) * 1000000 AS t, {agg} AS v FROM "
        f"(SELECT {b} AS b, count, sum, min, max FROM millrace.device_metrics "
        "WHERE metric = {m:String} "
        f"AND {b} >= toDateTime({{s:UInt32}}, 'UTC') "
        f"AND {b} < toDateTime({{e:UInt32}}, 'UTC')) "
        "GROUP BY t ORDER BY t",
        {"m": metric, "s": start_s, "e": end_s},
    ).rows
    return [{"time_us": int(t), "value": int(v) if fn == "count" else float(v)} for t, v in rows]
