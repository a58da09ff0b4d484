"""The audit trail as the API reads it: filtered, sorted, paged.

Every filter is a bound ClickHouse parameter; multi-valued filters take lists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from millrace.projections.identity_filter import within_sql
from millrace.projections.queries import TimeRange, _time_where
from millrace.projections.store.base import ProjectionStore

COLUMNS = (
    "toUnixTimestamp64Micro(ts) AS ts_us, audit_id, actor, actor_role, action, target_type, "
    "target_id, before, after, status, request_id, source_ip"
)


@dataclass(frozen=True)
class AuditFilter:
    actors: Sequence[str] = ()
    actions: Sequence[str] = ()
    target_types: Sequence[str] = ()
    target_ids: Sequence[str] = ()
    statuses: Sequence[str] = ()
    #: only refused/failed writes (status != 'ok') when True, only successful when False
    failed: bool | None = None
    time: TimeRange = field(default_factory=TimeRange)
    #: RE2 expression: the caller's scope (a scoped role); only records about an
    #: identity inside it (:data:`ABOUT_IDENTITY`)
    within: str | None = None


#: the identity an audit record is about: the target of a write to an identity (its
#: tags and state too), the identity of the alarm an alarm action targets (the alarm as
#: recorded after, else before); '' for every other record (keys, users, rules, ...).
#: ``api.stream_filters.identity_of`` reads a live audit item the same way.
ABOUT_IDENTITY = (
    "multiIf(target_type = 'identity', target_id, target_type = 'alarm', "
    "JSONExtractString(if(notEmpty(after), after, before), 'identity'), '')"
)


def audit_where(f: AuditFilter, params: dict[str, Any]) -> str:
    """The WHERE clause (without the keyword) of ``f`` over ``millrace.audits``."""
    conds = ["1"]
    for name, values in (
        ("actor", f.actors),
        ("action", f.actions),
        ("target_type", f.target_types),
        ("target_id", f.target_ids),
        ("status", f.statuses),
    ):
        if values:
            params[f"a_{name}"] = list(values)
            conds.append(f"{name} IN {{a_{name}:Array(String)}}")
    if f.failed is not None:
        conds.append("status != 'ok'" if f.failed else "status = 'ok'")
    if f.within is not None:
        conds.append(within_sql(ABOUT_IDENTITY, f.within, params, "a_within"))
    return " AND ".join(conds) + _time_where("ts", f.time, params, micro=True)


def _decode(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def audit_row(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "ts_us": int(r[0]),
        "id": r[1],
        "actor": r[2],
        "actor_role": r[3],
        "action": r[4],
        "target_type": r[5],
        "target_id": r[6],
        "before": _decode(r[7]),
        "after": _decode(r[8]),
        "status": r[9],
        "request_id": r[10] or None,
        "source_ip": r[11] or None,
    }


def list_audits(
    store: ProjectionStore,
    f: AuditFilter,
    order: Literal["asc", "desc"],
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Audit records matching ``f`` (oldest or newest first) and how many match."""
    params: dict[str, Any] = {}
    where = audit_where(f, params)
    direction = "ASC" if order == "asc" else "DESC"
    res = store.execute(
        f"SELECT {COLUMNS}, count() OVER () FROM millrace.audits FINAL WHERE {where} "
        f"ORDER BY ts {direction}, log_offset {direction}, audit_id {direction} "
        f"LIMIT {int(offset)}, {int(limit)}",
        params,
    )
    total = int(res.rows[0][-1]) if res.rows else 0
    if not res.rows and offset:
        total = int(
            store.execute(f"SELECT count() FROM millrace.audits FINAL WHERE {where}", params).rows[
                0
            ][0]
        )
    return [audit_row(r) for r in res.rows], total


def get_audits(
    store: ProjectionStore, audit_ids: Sequence[str], within: str | None = None
) -> dict[str, dict[str, Any]]:
    """audit id -> record, for those of ``audit_ids`` that exist (and are about an
    identity inside ``within``, when given)."""
    if not audit_ids:
        return {}
    params: dict[str, Any] = {"ids": list(audit_ids)}
    where = "audit_id IN {ids:Array(String)}"
    if within is not None:
        where += " AND " + within_sql(ABOUT_IDENTITY, within, params, "a_within")
    res = store.execute(f"SELECT {COLUMNS} FROM millrace.audits FINAL WHERE {where}", params)
    return {str(r[1]): audit_row(r) for r in res.rows}


def get_audit(
    store: ProjectionStore, audit_id: str, within: str | None = None
) -> dict[str, Any] | None:
    return get_audits(store, [audit_id], within).get(audit_id)
