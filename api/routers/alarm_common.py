"""What the alarm and alarm-rule routers share: the queries, the append that waits
for the projections, the JSON shapes and the alarm list filter (also used by audits)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import Query

from millrace.api.context import AppContext
from millrace.api.errors import bad_request
from millrace.api.pagination import page_meta
from millrace.api.routers.signals import EndTime, EpochQ, StartTime, _time_range
from millrace.api.timeparams import Epoch, format_time
from millrace.pipeline.topics import ALARMS
from millrace.projections.alarms import AlarmFilter, AlarmQueries


class AlarmState(StrEnum):
    active = "active"
    cleared = "cleared"


def queries(ctx: AppContext) -> AlarmQueries:
    return AlarmQueries(ctx.store)


async def append(ctx: AppContext, events: list[tuple[str, dict[str, Any]]]) -> bool:
    """Append ``(key, event)`` pairs to the alarms topic and wait until the projections
    hold them; False when that could not be confirmed in time."""
    if not events:
        return True
    await ctx.publisher.publish(ALARMS, events)
    return await ctx.wait_applied(ALARMS)


# -- JSON ---------------------------------------------------------------------------------


def _time(us: int | None, epoch: Epoch | None) -> int | float | str | None:
    return None if us is None else format_time(us, epoch)


def alarm_json(a: dict[str, Any], epoch: Epoch | None = None) -> dict[str, Any]:
    """An alarm of ``projections.alarms`` as the API shows it."""
    return {
        "alarm_id": a["alarm_id"],
        "rule_id": a["rule_id"],
        "type": a["type"],
        "identity": a["identity"],
        "signal": a["signal"],
        "priority": a["priority"],
        "message": a["message"],
        "trigger_value": a["trigger_value"],
        "state": a["state"],
        "creation_time": _time(a["raised_us"], epoch),
        "clear_time": _time(a["cleared_us"], epoch),
        "clear_value": a["clear_value"],
        "requires_ack": a["requires_ack"],
        "open": a["open"],
        "management": {
            "status": a["mgmt_status"],
            "acknowledged_by": a["ack_user"],
            "acknowledged_time": _time(a["ack_us"], epoch),
            "acknowledge_note": a["ack_note"],
            "discarded_by": a["discard_user"],
            "discarded_time": _time(a["discard_us"], epoch),
            "discard_note": a["discard_note"],
        },
        "annotation_count": a["annotation_count"],
        "last_update_time": _time(a["updated_us"], epoch),
    }


def annotation_json(n: dict[str, Any], epoch: Epoch | None = None) -> dict[str, Any]:
    return {
        "alarm_id": n["alarm_id"],
        "seq": n["seq"],
        "time": _time(n["ts_us"], epoch),
        "user": n["user"],
        "text": n["text"],
    }


def rule_json(r: dict[str, Any], epoch: Epoch | None = None) -> dict[str, Any]:
    return {
        **r["definition"],
        "last_update_time": _time(r["updated_us"], epoch),
        "updated_by": r["updated_by"],
    }


#: the old name, still imported by routers elsewhere (``millrace.api.pagination``)
_pagination = page_meta


# -- filters ------------------------------------------------------------------------------


def _split(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v.strip() for raw in values for v in raw.split(",") if v.strip()))


def _priority_range(raw: str | None) -> tuple[int, int] | None:
    if raw is None or raw == "":
        return None
    parts = raw.split(",")
    try:
        lo, hi = (int(p.strip()) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or hi is None:
        raise bad_request("priority_range", f"expected lo,hi (integers 0..255), got {raw!r}")
    if not 0 <= lo <= hi <= 255:
        raise bad_request("priority_range", f"need 0 <= lo <= hi <= 255, got {lo},{hi}")
    return lo, hi


def alarm_filter(
    identity: Annotated[
        list[str], Query(description="device identity, exact (repeat or comma separated)")
    ] = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    signal: Annotated[list[str], Query(description="signal name (repeat or comma)")] = [],  # noqa: B006
    type: Annotated[list[str], Query(description="alarm type name (repeat or comma)")] = [],  # noqa: B006
    priority_range: Annotated[
        str | None, Query(description="lo,hi: priorities from lo to hi inclusive (0..255)")
    ] = None,
    state: Annotated[AlarmState | None, Query(description="active or cleared")] = None,
    include_acknowledged: Annotated[
        bool | None,
        Query(description="true: only acknowledged alarms; false: none of them; absent: all"),
    ] = None,
    include_discarded: Annotated[
        bool | None,
        Query(description="true: only discarded alarms; false: none of them; absent: all"),
    ] = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
    epoch: EpochQ = None,
) -> AlarmFilter:
    """The list filters of alarms (raised time between start_time and end_time)."""
    tr = _time_range(start_time, end_time, epoch)
    return AlarmFilter(
        identities=_split(identity),
        signals=_split(signal),
        types=_split(type),
        priority_range=_priority_range(priority_range),
        state=state.value if state is not None else None,
        acknowledged=include_acknowledged,
        discarded=include_discarded,
        start_us=tr.start_us,
        end_us=tr.end_us,
    )
