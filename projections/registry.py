"""Read model of the device registry: identities, their state, tags, resource
definitions and device metrics, queried from the projections the identity and
telemetry processors write.

Everything is answered by ClickHouse: filters, ordering and paging run in SQL over
``millrace.identities FINAL`` joined with what telemetry said (``identity_seen``), so a
page of a registry of 100k devices costs a scan and a sort of a few narrow columns plus
a key lookup of the page's rows, never a load of every row into Python. Values a user
typed (regular expressions, tags, addresses, resource names) are bound as query
parameters; only fixed fragments chosen from whitelists (order keys, comparison
operators, windows, aggregate functions) become SQL text.

Derived columns, defined once here so that the status filter, the ordering and the
returned dicts agree:

* ``lastseen``: the latest of telemetry received (``identity_seen``), connected and
  provisioned; none when the device never showed up.
* ``lastip``: the address of the latest telemetry when telemetry is the most recent
  contact and carried one, else the address of the latest connect/provision event.
* ``online``: seen after its last disconnect, and less than its inactivity timeout ago
  (its own ``inactivity_timeout_s``, or the deployment's default when 0). ``now`` is a
  parameter so the API passes its clock and tests pass theirs.

``credential_hash`` is selected by :meth:`RegistryQueries.credential` only, for device
authentication; no dict this module returns holds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import MillraceError, StoreError
from pipeline.identities.resources import ResourceDefinition
from pipeline.identities.state import STATUSES
from pipeline.processors.telemetry import KIND_BOOL, KIND_STRING
from projections.store.base import ProjectionStore

TAG_OPS = ("gt", "gte", "lt", "lte", "eq", "ne")
FILTER_STATUSES = (*STATUSES, "online", "offline")
#: order key -> the derived column it sorts on before the identity
_ORDER_COLUMNS = {"identity": "", "lastseen": "act", "lastip": "ip"}
ORDER_KEYS = tuple(_ORDER_COLUMNS)
STATE_ORDER_PREFIX = "state."
METRIC_WINDOWS: dict[str, int] = {"1m": 1, "5m": 5, "1h": 60}  # minutes
METRIC_FNS = ("count", "max", "min", "sum", "avg")
#: the most rows one call returns (a page, or the names of a bulk operation)
MAX_ROWS = 10_000_000

_OP_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=", "ne": "!="}
#: the identities columns a dict is built from (never credential_hash)
_COLUMNS = (
    "identity",
    "status",
    "created_us",
    "updated_us",
    "auth_type",
    "credential_expires_us",
    "provision_until_us",
    "provisioned_us",
    "connected_us",
    "disconnected_us",
    "inactivity_timeout_s",
    "attributes",
    "tags",
    "set_values",
    "set_ts",
    "set_by",
    "acked_ts",
    "timed_out_ts",
    "stale_ts",
)
_ROW_NAMES = (*_COLUMNS, "act", "ip", "onl")
_ROW = ", ".join(_ROW_NAMES)
_OPTIONAL_TIMES = (
    "connected_us",
    "disconnected_us",
    "created_us",
    "updated_us",
    "provisioned_us",
    "provision_until_us",
    "credential_expires_us",
)


#: ``RegistryQueries.list`` shadows the builtin inside the class body: annotate with these
Row = list[Any]
Rows = list[Row]
Names = list[str]
Dicts = list[dict[str, Any]]


#: ClickHouse's error code (ErrorCodes.cpp) for a pattern RE2 cannot compile
CANNOT_COMPILE_REGEXP = 427


class QueryError(MillraceError, ValueError):
    """A registry query that cannot run as asked; ``field`` names the request field
    (``status``, ``identity``, ``order``, ``tags``, ``limit``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class TagCriterion:
    """``tag op value``: holds when any of the identity's values of ``name`` satisfies
    it; compared as numbers when both sides parse as numbers, else as strings."""

    name: str
    op: str  # one of TAG_OPS
    value: str


@dataclass
class IdentityFilter:
    """What to select; every given part must hold (statuses are alternatives)."""

    status: list[str] = field(default_factory=list)
    identity: str | None = None  # RE2 regular expression
    ipaddress: str | None = None  # exact lastip
    tag: str | None = None
    tag_value: str | None = None
    tags: list[TagCriterion] = field(default_factory=list)
    before_us: int | None = None  # lastseen < before
    after_us: int | None = None  # lastseen > after
    identities: list[str] | None = None  # restrict to these names (bulk operations)


@dataclass(frozen=True)
class Order:
    """``identity``, ``lastseen``, ``lastip`` or ``state.<resource>`` (the reported
    value: numbers and booleans by value, then strings; identities without it last in
    both directions). Ties break on the identity, in the same direction."""

    key: str = "identity"
    descending: bool = False


def _base_sql(restrict: str, order_resource: bool) -> str:
    """One row per present identity with the derived columns (see the module doc);
    ``act`` is the last activity in µs (0: never), ``ip`` the derived lastip.
    ``restrict``: a condition on ``identity`` applied before the joins, or ""."""
    where = f" WHERE {restrict}" if restrict else ""
    also = f" AND {restrict}" if restrict else ""
    cols = ", ".join(f"i.{c} AS {c}" for c in _COLUMNS)
    order_join = ""
    order_cols = ""
    if order_resource:
        # the reported value of one resource, for ORDER BY state.<resource>
        order_join = (
            " LEFT JOIN (SELECT toString(identity) AS oid, 1 AS o_has, "
            f"if(kind = {KIND_STRING}, 1, 0) AS o_rank, "
            f"if(kind = {KIND_STRING}, 0, value) AS o_num, "
            f"if(kind = {KIND_STRING}, text, '') AS o_txt FROM millrace.latest FINAL "
            "WHERE signal = {ores:String}) AS o ON o.oid = i.identity"
        )
        order_cols = (
            ", ifNull(o.o_has, 0) AS o_has, o.o_rank AS o_rank, o.o_num AS o_num, o.o_txt AS o_txt"
        )
    # ifNull: a server profile may set join_use_nulls, making unmatched columns NULL
    return (
        f"SELECT {cols}, "
        # provisioned at creation by an operator (no address: not the device) is no contact
        "greatest(ifNull(s.seen, 0), i.connected_us, "
        "if(i.provisioned_us = i.created_us AND i.lastip = '', 0, i.provisioned_us)) AS act, "
        "if(ifNull(s.seen, 0) > greatest(i.connected_us, "
        "if(i.provisioned_us = i.created_us AND i.lastip = '', 0, i.provisioned_us)) "
        "AND ifNull(s.seen_ip, '') != '', s.seen_ip, i.lastip) AS ip, "
        "(act > i.disconnected_us AND {now:Int64} - act < toInt64(if(i.inactivity_timeout_s "
        "> 0, i.inactivity_timeout_s, {dflt:UInt32})) * 1000000) AS onl"
        f"{order_cols} "
        f"FROM (SELECT {', '.join(_COLUMNS)}, lastip FROM millrace.identities FINAL "
        f"WHERE present = 1{also}) AS i "
        "LEFT JOIN (SELECT identity, max(lastseen) AS seen, argMaxMerge(lastip) AS seen_ip "
        f"FROM millrace.identity_seen{where} GROUP BY identity) AS s ON s.identity = i.identity"
        f"{order_join}"
    )


def _tag_criterion_sql(i: int, op: str) -> str:
    """Any value of tag ``tn{i}`` compared with ``tv{i}``: numerically when both parse
    as numbers, as strings otherwise."""
    sym = _OP_SQL[op]
    v, c = "toFloat64OrNull(v)", f"toFloat64OrNull({{tv{i}:String}})"
    return (
        f"arrayExists(v -> multiIf(isNotNull({v}) AND isNotNull({c}), "
        f"ifNull({v} {sym} {c}, 0), v {sym} {{tv{i}:String}}), tags[{{tn{i}:String}}])"
    )


def _int64(name: str, v: int) -> int:
    """``v`` when ClickHouse can bind it as Int64; a QueryError naming ``name`` else."""
    if isinstance(v, bool) or not isinstance(v, int) or not -(2**63) <= v < 2**63:
        raise QueryError(name, f"must be an integer of at most 64 bits, got {v!r}")
    return v


def _clamp_s(seconds: int) -> int:
    return min(max(seconds, 0), 2**32 - 1)


def _number(v: Any) -> int | None:
    """An integer column that may come back as int, float or text; 0 means unset."""
    n = int(v or 0)
    return n or None


class RegistryQueries:
    """The registry's read side over a projection store (see the module doc)."""

    def __init__(self, store: ProjectionStore, default_inactivity_timeout_s: int = 300) -> None:
        self.store = store
        self.default_inactivity_timeout_s = int(default_inactivity_timeout_s)

    # -- identities ------------------------------------------------------------------

    def _where(self, f: IdentityFilter, params: dict[str, Any]) -> list[str]:
        conds: list[str] = []
        if f.status:
            alts: list[str] = []
            for i, status in enumerate(f.status):
                if status == "online":
                    alts.append("onl")
                elif status == "offline":
                    alts.append("NOT onl")
                elif status in STATUSES:
                    params[f"st{i}"] = status
                    alts.append(f"status = {{st{i}:String}}")
                else:
                    raise QueryError(
                        "status",
                        f"unknown status {status!r}; expected any of {', '.join(FILTER_STATUSES)}",
                    )
            conds.append("(" + " OR ".join(alts) + ")")
        if f.identity is not None:
            self._check_regex(f.identity)
            params["re"] = f.identity
            conds.append("match(identity, {re:String})")
        if f.ipaddress is not None:
            params["ip"] = f.ipaddress
            conds.append("ip = {ip:String}")
        if f.tag is not None:
            params["tag"] = f.tag
            if f.tag_value is not None:
                params["tagv"] = f.tag_value
                conds.append("has(tags[{tag:String}], {tagv:String})")
            else:
                conds.append("mapContains(tags, {tag:String})")
        elif f.tag_value is not None:
            params["tagv"] = f.tag_value
            conds.append("arrayExists(vs -> has(vs, {tagv:String}), mapValues(tags))")
        for i, crit in enumerate(f.tags):
            if crit.op not in TAG_OPS:
                raise QueryError(
                    "tags", f"unknown operator {crit.op!r}; expected one of {', '.join(TAG_OPS)}"
                )
            params[f"tn{i}"] = crit.name
            params[f"tv{i}"] = crit.value
            conds.append(_tag_criterion_sql(i, crit.op))
        # an identity never seen has no lastseen: it is neither before nor after anything
        if f.before_us is not None:
            params["before"] = _int64("before", f.before_us)
            conds.append("act > 0 AND act < {before:Int64}")
        if f.after_us is not None:
            params["after"] = _int64("after", f.after_us)
            conds.append("act > 0 AND act > {after:Int64}")
        return conds

    def _check_regex(self, pattern: str) -> None:
        """ClickHouse compiles a pattern only when it meets a row: check it on its own
        so that a bad one is refused even when nothing would match."""
        try:
            self.store.execute("SELECT match('', {re:String})", {"re": pattern})
        except StoreError as exc:
            if exc.code != CANNOT_COMPILE_REGEXP:
                raise  # not the pattern's fault
            reason = str(exc).split(", error: ", 1)[-1].split(". Look at", 1)[0]
            raise QueryError(
                "identity", f"not a valid regular expression (RE2): {reason[:200]}"
            ) from None

    def _params(self, f: IdentityFilter, now_us: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "now": _int64("now", now_us),
            "dflt": self.default_inactivity_timeout_s,
        }
        if f.identities is not None:
            params["ids"] = list(f.identities)
        return params

    def _matching_sql(
        self, f: IdentityFilter, params: dict[str, Any], columns: str, order_resource: bool
    ) -> str:
        """``SELECT columns`` of the identities matching ``f``; adds its parameters."""
        conds = self._where(f, params)
        restrict = "identity IN {ids:Array(String)}" if f.identities is not None else ""
        return f"SELECT {columns} FROM ({_base_sql(restrict, order_resource)})" + (
            " WHERE " + " AND ".join(conds) if conds else ""
        )

    def _select(self, f: IdentityFilter, now_us: int, columns: str, tail: str = "") -> Rows:
        params = self._params(f, now_us)
        sql = self._matching_sql(f, params, columns, False) + tail
        return self.store.execute(sql, params).rows

    def _order_by(self, order: Order) -> tuple[str, str | None]:
        """ORDER BY text and the resource whose reported value orders, if any."""
        d = "DESC" if order.descending else "ASC"
        if order.key in _ORDER_COLUMNS:
            first = _ORDER_COLUMNS[order.key]
            return (f"{first} {d}, " if first else "") + f"identity {d}", None
        if order.key.startswith(STATE_ORDER_PREFIX) and len(order.key) > len(STATE_ORDER_PREFIX):
            resource = order.key[len(STATE_ORDER_PREFIX) :]
            # o_has first and always ascending-inverted: identities without a reported
            # value go last whichever the direction
            return (
                f"o_has DESC, o_rank {d}, o_num {d}, o_txt {d}, identity {d}",
                resource,
            )
        raise QueryError(
            "order",
            f"cannot order by {order.key!r}; expected {', '.join(ORDER_KEYS)} "
            f"or {STATE_ORDER_PREFIX}<resource>",
        )

    def list(
        self, f: IdentityFilter, order: Order, limit: int, offset: int, now_us: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of identities and whether more follow it (one row past the page is
        fetched to tell)."""
        if not 0 <= limit < MAX_ROWS:
            raise QueryError("limit", f"must be between 0 and {MAX_ROWS - 1}, got {limit}")
        if not 0 <= offset < 2**63:
            raise QueryError("offset", f"must be 0 or more, got {offset}")
        order_by, resource = self._order_by(order)
        params = self._params(f, now_us)
        params.update(lim=limit + 1, off=offset)
        if resource is not None:
            params["ores"] = resource
        # the page is chosen on the narrow columns, then only its rows are read in full:
        # sorting every identity together with its maps costs several times more. A row
        # deleted between the two reads drops out of the page.
        sql = (
            self._matching_sql(f, params, "identity", resource is not None)
            + f" ORDER BY {order_by} LIMIT {{lim:UInt64}} OFFSET {{off:UInt64}}"
        )
        page = [str(r[0]) for r in self.store.execute(sql, params).rows]
        more = len(page) > limit
        page = page[:limit]
        if not page:
            return [], more
        full = {r[0]: r for r in self._select(IdentityFilter(identities=page), now_us, _ROW)}
        reported = self._latest(page)
        rows = [full[name] for name in page if name in full]
        return [self._identity(r, reported.get(r[0], {})) for r in rows], more

    def get(self, identity: str, now_us: int) -> dict[str, Any] | None:
        """The present identity ``identity`` with its state, or None."""
        rows = self._select(IdentityFilter(identities=[identity]), now_us, _ROW)
        if not rows:
            return None
        return self._identity(rows[0], self._latest([identity]).get(identity, {}))

    def count(self, f: IdentityFilter, now_us: int) -> int:
        rows = self._select(f, now_us, "count()")
        return int(rows[0][0]) if rows else 0

    def names(self, f: IdentityFilter, now_us: int, max_rows: int = 100_000) -> Names:
        """Identities matching ``f``, sorted, at most ``max_rows`` (bulk operations)."""
        if not 0 <= max_rows <= MAX_ROWS:
            raise QueryError("max_rows", f"must be between 0 and {MAX_ROWS}, got {max_rows}")
        rows = self._select(f, now_us, "identity", f" ORDER BY identity LIMIT {int(max_rows)}")
        return [str(r[0]) for r in rows]

    def credential(self, identity: str) -> tuple[str, str, int] | None:
        """``(auth_type, credential_hash, credential_expires_us)`` of the present
        identity, for device authentication only (the hash is "" before it ever
        provisioned), or None when there is no such identity."""
        rows = self.store.execute(
            "SELECT auth_type, credential_hash, credential_expires_us "
            "FROM millrace.identities FINAL WHERE identity = {id:String} AND present = 1",
            {"id": identity},
        ).rows
        if not rows:
            return None
        auth_type, credential_hash, expires = rows[0]
        return str(auth_type), str(credential_hash), int(expires)

    def _identity(self, row: Row, reported: dict[str, dict[str, Any]]) -> dict[str, Any]:
        r = dict(zip(_ROW_NAMES, row, strict=True))
        own_timeout = int(r["inactivity_timeout_s"])
        out: dict[str, Any] = {
            "identity": r["identity"],
            "status": r["status"],
            "online": bool(r["onl"]),
            "lastseen_us": _number(r["act"]),
            "lastip": r["ip"] or None,
        }
        for name in _OPTIONAL_TIMES:
            out[name] = _number(r[name])
        out["auth_type"] = r["auth_type"] or None
        out["inactivity_timeout_s"] = own_timeout or self.default_inactivity_timeout_s
        out["attributes"] = dict(r["attributes"])
        out["tags"] = {k: list(v) for k, v in r["tags"].items()}
        out["state"] = _state(r, reported)
        return out

    # -- reported values -------------------------------------------------------------

    def _latest(self, identities: Names) -> dict[str, dict[str, dict[str, Any]]]:
        """identity -> signal -> reported value, for a page of identities in one query."""
        if not identities:
            return {}
        rows = self.store.execute(
            "SELECT toString(identity), toString(signal), toUnixTimestamp64Micro(ts), "
            "value, text, kind, quality FROM millrace.latest FINAL "
            "WHERE identity IN {ids:Array(String)}",
            {"ids": identities},
        ).rows
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for identity, signal, ts, value, text, kind, quality in rows:
            out.setdefault(identity, {})[signal] = {
                "value": _typed(int(kind), value, text),
                "ts_us": int(ts),
                "quality": int(quality),
            }
        return out

    def reported(self, identity: str) -> dict[str, dict[str, Any]]:
        """signal -> {value (bool, float or str by kind), ts_us, quality}: what the
        identity last reported of each signal."""
        return self._latest([identity]).get(identity, {})

    # -- tags and definitions --------------------------------------------------------

    def tag_names(self) -> Names:
        rows = self.store.execute(
            "SELECT DISTINCT arrayJoin(mapKeys(tags)) AS t "
            "FROM millrace.identities FINAL WHERE present = 1 ORDER BY t"
        ).rows
        return [str(r[0]) for r in rows]

    def tag_values(self, tag: str) -> Names:
        rows = self.store.execute(
            "SELECT DISTINCT arrayJoin(tags[{tag:String}]) AS v "
            "FROM millrace.identities FINAL WHERE present = 1 ORDER BY v",
            {"tag": tag},
        ).rows
        return [str(r[0]) for r in rows]

    def definitions(self) -> dict[str, dict[str, Any]]:
        """name -> {definition, updated_us, updated_by} of the present definitions.
        Each was validated by the identity processor before it was stored."""
        rows = self.store.execute(
            "SELECT name, definition, updated_us, updated_by "
            "FROM millrace.resource_defs FINAL WHERE present = 1 ORDER BY name"
        ).rows
        return {
            str(name): {
                "definition": ResourceDefinition.model_validate_json(text),
                "updated_us": int(updated),
                "updated_by": str(by),
            }
            for name, text, updated, by in rows
        }

    # -- device metrics --------------------------------------------------------------

    def metrics(self, metric: str, window: str, fn: str, start_us: int, end_us: int) -> Dicts:
        """``fn`` of ``metric`` per ``window`` bucket whose start is in
        [start_us, end_us), ascending; buckets without data are absent. 5m and 1h
        buckets merge the stored 1m buckets; avg is total sum over total count (not an
        average of averages)."""
        minutes = METRIC_WINDOWS.get(window)
        if minutes is None:
            raise QueryError(
                "aggregate_window", f"unknown window {window!r}; expected 1m, 5m or 1h"
            )
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
        start_s = _clamp_s(-(-_int64("start_time", start_us) // 1_000_000))
        end_s = _clamp_s(-(-_int64("end_time", end_us) // 1_000_000))
        b = f"toStartOfInterval(bucket, INTERVAL {minutes} MINUTE)"
        rows = self.store.execute(
            f"SELECT toInt64(toUnixTimestamp(b)) * 1000000 AS t, {agg} AS v FROM "
            f"(SELECT {b} AS b, count, sum, min, max FROM millrace.device_metrics "
            "WHERE metric = {m:String} "
            f"AND {b} >= toDateTime({{s:UInt32}}, 'UTC') "
            f"AND {b} < toDateTime({{e:UInt32}}, 'UTC')) "
            "GROUP BY t ORDER BY t",
            {"m": metric, "s": start_s, "e": end_s},
        ).rows
        return [
            {"time_us": int(t), "value": int(v) if fn == "count" else float(v)} for t, v in rows
        ]


def _typed(kind: int, value: Any, text: str) -> Any:
    if kind == KIND_BOOL:
        return bool(value)
    if kind == KIND_STRING:
        return text
    # ClickHouse writes NaN and infinities as JSON null
    return float(value) if value is not None else None


def _state(r: dict[str, Any], reported: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """resource -> desired and reported state, for every resource set or reported."""
    set_values: dict[str, str] = r["set_values"]
    set_ts: dict[str, Any] = r["set_ts"]
    set_by: dict[str, str] = r["set_by"]
    acked: dict[str, Any] = r["acked_ts"]
    timed_out: dict[str, Any] = r["timed_out_ts"]
    stale: dict[str, Any] = r["stale_ts"]
    out: dict[str, dict[str, Any]] = {}
    for resource in sorted({*set_values, *reported}):
        rep = reported.get(resource)
        has_set = resource in set_values
        stale_ts = stale.get(resource)
        reported_ts = rep["ts_us"] if rep is not None else None
        out[resource] = {
            "set": _json(set_values[resource]) if has_set else None,
            "set_ts_us": int(set_ts[resource]) if resource in set_ts else None,
            "set_by": (set_by.get(resource) or None) if has_set else None,
            "reported": rep["value"] if rep is not None else None,
            "reported_ts_us": reported_ts,
            "pending": has_set and resource not in acked and resource not in timed_out,
            "acknowledged_us": int(acked[resource]) if resource in acked else None,
            "timed_out_us": int(timed_out[resource]) if resource in timed_out else None,
            "stale": stale_ts is not None and (reported_ts is None or int(stale_ts) >= reported_ts),
        }
    return out


def _json(text: str) -> Any:
    """A stored set value: the fold checked it is JSON when it was set."""
    try:
        return json.loads(text)
    except ValueError:
        return None
