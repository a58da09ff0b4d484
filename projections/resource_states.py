"""Read model of resource states, deviations and runner heartbeats.

Resources are of two origins, answered as one list by a ``UNION ALL`` in ClickHouse so
that filters, paging and counts stay in the store:

* connector connections, endpoints and runners: ``millrace.resource_states FINAL``
  (folded from the status topic by ``pipeline.processors.status``);
* identities' desired state: one resource ``identity:<identity>/<resource>`` (service
  ``identities``, type ``identity_state``) per key of a present identity's
  ``set_values``. ``desired_state`` is the set value (JSON text as stored),
  ``current_state`` the reported value (``millrace.latest``) rendered as JSON, or ""
  when nothing was reported. They deviate unless equal as JSON values, as the control
  loop compares them (``pipeline.identities.resources.same_value`` with the reported
  value read as ``pipeline.values.typed_value``: 1 == 1.0, true is not 1, a
  non-finite number is null). ``info`` is the command's progress as
  ``GET /api/v1/identities/{identity}/state`` shows it: pending, acknowledged or timed
  out. Only the latest report is kept, so ``since_us`` is the last report's time (the
  set time before any) and ``deviated_since_us`` the later of set and last report.

Runners: ``last`` is their latest sign of life; ``misses`` the whole heartbeat intervals
elapsed since it beyond the first (``interval_s`` of the runner's latest explicit
heartbeat, else :data:`DEFAULT_INTERVAL_S`); ``healthy`` while misses are fewer than
``unhealthy_misses``. ``now`` is a parameter: the API passes its clock, tests theirs.

User input is bound as query parameters; only fixed fragments become SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from millrace.pipeline.values import KIND_BOOL, KIND_INT, KIND_STRING, NUMERIC_KINDS
from millrace.projections.identity_filter import within_sql
from millrace.projections.registry import QueryError
from millrace.projections.store.base import ProjectionStore

IDENTITY_SERVICE = "identities"
IDENTITY_STATE_TYPE = "identity_state"
IDENTITY_PREFIX = "identity:"
#: heartbeat interval assumed for runners that never sent an explicit heartbeat (the
#: connectors' default status_interval_s)
DEFAULT_INTERVAL_S = 30.0
#: a runner is unhealthy from this many missed heartbeats on
UNHEALTHY_MISSES = 3
#: the most rows one page holds
MAX_PAGE_ROWS = 10_000

_NUMBER_JSON_TYPES = "('Int64', 'UInt64', 'Double')"

#: the reported value as JSON text ('' when none), and whether it equals the set value
#: as a JSON value; ``l`` is the latest row (``found`` = 0 when there is none), ``s`` the
#: set value's JSON text
_REPORTED_JSON = (
    "multiIf(found = 0, '', "
    f"kind = {KIND_BOOL}, if(value != 0, 'true', 'false'), "
    f"kind = {KIND_STRING}, toJSONString(text), "
    f"kind = {KIND_INT} AND text != '', text, "  # an int beyond 2**53: its digits
    "isFinite(value), toString(value), 'null')"
)
_SAME = (
    "multiIf(found = 0, JSONType(s) = 'Null', "
    f"kind = {KIND_BOOL}, JSONType(s) = 'Bool' AND JSONExtractBool(s) = (value != 0), "
    f"kind = {KIND_STRING}, JSONType(s) = 'String' AND JSONExtractString(s) = text, "
    f"kind IN {NUMERIC_KINDS} AND isFinite(value), "
    f"JSONType(s) IN {_NUMBER_JSON_TYPES} AND JSONExtractFloat(s) = value, "
    "JSONType(s) = 'Null')"
)

_COLUMNS = (
    "resource_id",
    "service_id",
    "resource_type",
    "desired_state",
    "current_state",
    "deviated",
    "info",
    "runner",
    "ts_us",
    "since_us",
    "deviated_since_us",
    "metrics",
)

_STATES_SQL = (
    "SELECT resource_id, toString(service_id) AS service_id, "
    "toString(resource_type) AS resource_type, toString(desired_state) AS desired_state, "
    "toString(current_state) AS current_state, deviated, info, toString(runner) AS runner, "
    "ts_us, since_us, deviated_since_us, metrics FROM millrace.resource_states FINAL"
)

# one row per (present identity, set resource), joined with its latest report; {restrict}
# narrows the identities (a scoped caller's)
_IDENTITY_SQL_TEMPLATE = f"""SELECT
    concat('{IDENTITY_PREFIX}', identity, '/', resource) AS resource_id,
    '{IDENTITY_SERVICE}' AS service_id,
    '{IDENTITY_STATE_TYPE}' AS resource_type,
    s AS desired_state,
    {_REPORTED_JSON} AS current_state,
    toUInt8(NOT {_SAME}) AS deviated,
    multiIf(acked > 0, 'acknowledged', timed_out > 0, 'timed out', 'pending') AS info,
    '' AS runner,
    greatest(set_us, if(found = 1, rts, 0)) AS ts_us,
    if(found = 1, rts, set_us) AS since_us,
    if(deviated = 1, ts_us, 0) AS deviated_since_us,
    CAST(map(), 'Map(String, Float64)') AS metrics
FROM (
    SELECT i.identity AS identity, i.resource AS resource, i.s AS s, i.set_us AS set_us,
           i.acked AS acked, i.timed_out AS timed_out, ifNull(l.found, 0) AS found,
           ifNull(l.rts, 0) AS rts, ifNull(l.kind, 0) AS kind, ifNull(l.value, 0) AS value,
           ifNull(l.text, '') AS text
    FROM (
        SELECT identity, resource, set_values[resource] AS s, set_ts[resource] AS set_us,
               mapContains(acked_ts, resource) AS acked,
               mapContains(timed_out_ts, resource) AS timed_out
        FROM millrace.identities FINAL
        ARRAY JOIN mapKeys(set_values) AS resource
        WHERE present = 1{{restrict}}
    ) AS i
    LEFT JOIN (
        SELECT toString(identity) AS identity, toString(signal) AS signal,
               toUnixTimestamp64Micro(ts) AS rts, kind, value, text, toUInt8(1) AS found
        FROM millrace.latest FINAL
        WHERE identity IN (
            SELECT identity FROM millrace.identities FINAL
            WHERE present = 1 AND notEmpty(set_values){{restrict}}
        )
    ) AS l ON l.identity = i.identity AND l.signal = i.resource
)"""
_IDENTITY_SQL = _IDENTITY_SQL_TEMPLATE.format(restrict="")

_ALL_SQL = f"({_STATES_SQL} UNION ALL {_IDENTITY_SQL})"


def _source(within: str | None, params: dict[str, Any]) -> str:
    """Every resource, or — for a scoped caller (``within``) — only the desired state of
    the identities inside its scope: connector connections, endpoints and runners are
    not one identity's, so a scoped caller sees none of them."""
    if within is None:
        return _ALL_SQL
    restrict = " AND " + within_sql("identity", within, params)
    return f"({_IDENTITY_SQL_TEMPLATE.format(restrict=restrict)})"


_RUNNERS_SQL = """SELECT runner, last_us, first_us, interval_s, state, service_ids,
    greatest(intDiv({now:Int64} - last_us,
                    toInt64(if(interval_s > 0, interval_s, {dflt:Float64}) * 1000000)) - 1,
             0) AS misses
FROM (
    SELECT runner, max(last_us) AS last_us, min(first_us) AS first_us,
           argMaxMerge(heartbeat) AS hb, hb.1 AS interval_s, hb.2 AS state,
           arraySort(groupUniqArrayArray(service_ids)) AS service_ids
    FROM millrace.resource_runners
    GROUP BY runner
)"""


@dataclass(frozen=True)
class ResourceFilter:
    """Which resources: ``resource_ids`` win over ``service_ids`` when both are given;
    ``deviated`` None means either."""

    service_ids: tuple[str, ...] = ()
    resource_ids: tuple[str, ...] = ()
    deviated: bool | None = None
    #: RE2 expression: a scoped caller's scope (see :func:`_source`)
    within: str | None = None


@dataclass(frozen=True)
class Page:
    """A 1-based page of ``items_per_page`` rows."""

    number: int = 1
    items_per_page: int = 100

    def check(self) -> None:
        if not 1 <= self.number < 2**31:
            raise QueryError("page", f"must be 1 or more, got {self.number}")
        if not 1 <= self.items_per_page <= MAX_PAGE_ROWS:
            raise QueryError(
                "items_per_page",
                f"must be between 1 and {MAX_PAGE_ROWS}, got {self.items_per_page}",
            )

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.items_per_page


def _where(f: ResourceFilter, params: dict[str, Any]) -> str:
    conds = []
    if f.resource_ids:
        params["rids"] = list(f.resource_ids)
        conds.append("resource_id IN {rids:Array(String)}")
    elif f.service_ids:
        params["sids"] = list(f.service_ids)
        conds.append("service_id IN {sids:Array(String)}")
    if f.deviated is not None:
        conds.append(f"deviated = {int(f.deviated)}")
    return " WHERE " + " AND ".join(conds) if conds else ""


def _paged(sql: str, page: Page, params: dict[str, Any]) -> str:
    page.check()
    params.update(lim=page.items_per_page, off=page.offset)
    return sql + " LIMIT {lim:UInt64} OFFSET {off:UInt64}"


class ResourceStateQueries:
    """The read side of resource states and runners over a projection store."""

    def __init__(
        self,
        store: ProjectionStore,
        default_interval_s: float = DEFAULT_INTERVAL_S,
        unhealthy_misses: int = UNHEALTHY_MISSES,
    ) -> None:
        self.store = store
        self.default_interval_s = float(default_interval_s)
        self.unhealthy_misses = int(unhealthy_misses)

    def states(self, f: ResourceFilter, page: Page) -> tuple[list[dict[str, Any]], int]:
        """A page of resource states ordered by service and resource id, and how many
        match ``f`` in all."""
        params: dict[str, Any] = {}
        where = _where(f, params)
        source = _source(f.within, params)
        total = self.store.execute(f"SELECT count() FROM {source}{where}", params).rows
        sql = _paged(
            f"SELECT {', '.join(_COLUMNS)} FROM {source}{where} ORDER BY service_id, resource_id",
            page,
            params,
        )
        rows = self.store.execute(sql, params).rows
        return [_state(r) for r in rows], int(total[0][0]) if total else 0

    def deviations(self, f: ResourceFilter, page: Page) -> tuple[list[dict[str, Any]], int]:
        """:meth:`states` of the deviated resources only."""
        return self.states(
            ResourceFilter(f.service_ids, f.resource_ids, deviated=True, within=f.within),
            page,
        )

    def deviation_counts(
        self, service_ids: tuple[str, ...], page: Page, within: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """Deviated resources per service (services without any are absent), ordered by
        service id, and how many services have some."""
        params: dict[str, Any] = {}
        where = _where(ResourceFilter(service_ids=service_ids, deviated=True), params)
        source = _source(within, params)
        grouped = f"SELECT service_id, count() AS n FROM {source}{where} GROUP BY service_id"
        total = self.store.execute(f"SELECT count() FROM ({grouped})", params).rows
        rows = self.store.execute(_paged(grouped + " ORDER BY service_id", page, params), params)
        data = [{"service_id": str(s), "count": int(n)} for s, n in rows.rows]
        return data, int(total[0][0]) if total else 0

    def runners(self, now_us: int, page: Page) -> tuple[list[dict[str, Any]], int]:
        """A page of runners ordered by name, with misses and health at ``now_us``."""
        if isinstance(now_us, bool) or not isinstance(now_us, int) or not 0 <= now_us < 2**63:
            raise QueryError("now", f"must be a time in µs since the epoch, got {now_us!r}")
        params: dict[str, Any] = {"now": now_us, "dflt": self.default_interval_s}
        total = self.store.execute("SELECT uniqExact(runner) FROM millrace.resource_runners").rows
        rows = self.store.execute(
            _paged(f"{_RUNNERS_SQL} ORDER BY runner", page, params), params
        ).rows
        out = []
        for runner, last, first, interval, state, services, misses in rows:
            interval_s = float(interval) if interval else 0.0
            out.append(
                {
                    "runner": str(runner),
                    "last_us": int(last),
                    "first_us": int(first),
                    "interval_s": interval_s or self.default_interval_s,
                    "explicit_heartbeat": interval_s > 0,
                    "state": str(state) or None,
                    "service_ids": [str(s) for s in services],
                    "misses": int(misses),
                    "healthy": int(misses) < self.unhealthy_misses,
                }
            )
        return out, int(total[0][0]) if total else 0


def _state(row: list[Any]) -> dict[str, Any]:
    r = dict(zip(_COLUMNS, row, strict=True))
    deviated_since = int(r["deviated_since_us"])
    return {
        "resource_id": str(r["resource_id"]),
        "service_id": str(r["service_id"]),
        "resource_type": str(r["resource_type"]),
        "desired_state": str(r["desired_state"]),
        "current_state": str(r["current_state"]),
        "deviated": bool(r["deviated"]),
        "info": str(r["info"]),
        "runner": str(r["runner"]) or None,
        "ts_us": int(r["ts_us"]),
        "since_us": int(r["since_us"]),
        "deviated_since_us": deviated_since or None,
        "metrics": {str(k): float(v) for k, v in dict(r["metrics"] or {}).items()},
    }
