"""Activities: alarms and audit records in one list (Metasys' activity view).

An alarm-only filter (signal, type, priority, state, management status) selects alarms
only; an audit-only filter (actor, action, target type) selects audit records only; the
identity filter matches alarms of the identity and audit records whose target it is;
the time range is the alarm's raised time or the audit record's time. Audit records
sort with priority 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from millrace.projections.alarms import AlarmFilter, AlarmQueries, filter_conditions
from millrace.projections.audits import AuditFilter, audit_where, get_audits
from millrace.projections.queries import TimeRange
from millrace.projections.registry import QueryError
from millrace.projections.store.base import ProjectionStore

ACTIVITY_TYPES = ("alarm", "audit")
SORTS: dict[str, tuple[str, str]] = {
    "creation_time": ("ts_us", "ASC"),
    "-creation_time": ("ts_us", "DESC"),
    "priority": ("priority", "ASC"),
    "-priority": ("priority", "DESC"),
}


@dataclass
class ActivityFilter:
    alarms: AlarmFilter = field(default_factory=AlarmFilter)
    actors: Sequence[str] = ()
    actions: Sequence[str] = ()
    target_types: Sequence[str] = ()
    activity_types: Sequence[str] = ()

    def alarm_only(self) -> bool:
        a = self.alarms
        return bool(
            a.signals
            or a.types
            or a.priority_range is not None
            or a.state is not None
            or a.acknowledged is not None
            or a.discarded is not None
        )

    def audit_only(self) -> bool:
        return bool(self.actors or self.actions or self.target_types)


def _wanted(f: ActivityFilter) -> list[str]:
    for t in f.activity_types:
        if t not in ACTIVITY_TYPES:
            raise QueryError("activity_type", f"{t!r} is not one of {', '.join(ACTIVITY_TYPES)}")
    wanted = list(f.activity_types) or list(ACTIVITY_TYPES)
    if f.alarm_only() and "audit" in wanted:
        wanted.remove("audit")
    if f.audit_only() and "alarm" in wanted:
        wanted.remove("alarm")
    return wanted


def list_activities(
    store: ProjectionStore, f: ActivityFilter, sort: str, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of activities (``{"activity_type", "id", "ts_us", "priority", "alarm" |
    "audit"}``) and how many match."""
    if sort not in SORTS:
        raise QueryError("sort", f"{sort!r} is not one of {', '.join(SORTS)}")
    params: dict[str, Any] = {}
    parts = []
    for kind in _wanted(f):
        if kind == "alarm":
            conds = filter_conditions(f.alarms, params) or ["1"]
            parts.append(
                "SELECT 'alarm' AS activity_type, alarm_id AS id, raised_us AS ts_us, "
                f"toUInt8(priority) AS priority FROM millrace.alarms FINAL "
                f"WHERE {' AND '.join(conds)}"
            )
        else:
            audit = AuditFilter(
                actors=f.actors,
                actions=f.actions,
                target_types=f.target_types,
                target_ids=f.alarms.identities,
                time=TimeRange(f.alarms.start_us, f.alarms.end_us),
                within=f.alarms.within,
            )
            parts.append(
                "SELECT 'audit' AS activity_type, audit_id AS id, "
                "toUnixTimestamp64Micro(ts) AS ts_us, toUInt8(0) AS priority "
                f"FROM millrace.audits FINAL WHERE {audit_where(audit, params)}"
            )
    if not parts:
        return [], 0
    column, direction = SORTS[sort]
    union = " UNION ALL ".join(parts)
    res = store.execute(
        f"SELECT activity_type, id, ts_us, priority, count() OVER () FROM ({union}) "
        f"ORDER BY {column} {direction}, ts_us {direction}, id {direction} "
        f"LIMIT {int(offset)}, {int(limit)}",
        params,
    )
    total = int(res.rows[0][4]) if res.rows else 0
    if not res.rows and offset:
        total = int(store.execute(f"SELECT count() FROM ({union})", params).rows[0][0])
    alarms = AlarmQueries(store).get_many([str(r[1]) for r in res.rows if r[0] == "alarm"])
    audits = get_audits(store, [str(r[1]) for r in res.rows if r[0] == "audit"])
    out = []
    for kind, ident, ts_us, priority, _ in res.rows:
        item: dict[str, Any] = {
            "activity_type": kind,
            "id": ident,
            "ts_us": int(ts_us),
            "priority": int(priority),
        }
        if kind == "alarm":
            item["alarm"] = alarms.get(ident)
        else:
            item["audit"] = audits.get(ident)
        out.append(item)
    return out, total
