"""Which identities a registry query selects and in what order, as ClickHouse SQL.

Derived columns, defined once here so that the status filter, the ordering and the
returned dicts agree:

* ``lastseen``: the latest of telemetry received (``identity_seen``), connected and
  provisioned; none when the device never showed up.
* ``lastip``: the address of the latest telemetry when telemetry is the most recent
  contact and carried one, else the address of the latest connect/provision event.
* ``online``: seen after its last disconnect, and less than its inactivity timeout ago
  (its own ``inactivity_timeout_s``, or the deployment's default when 0). ``now`` is a
  parameter so the API passes its clock and tests pass theirs.

Values a user typed are bound as parameters (``{name:Type}``); only fixed fragments
chosen from whitelists (order keys, comparison operators) become SQL text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from millrace.pipeline.identities.state import STATUSES
from millrace.pipeline.values import KIND_STRING
from millrace.projections.errors import QueryError

TAG_OPS = ("gt", "gte", "lt", "lte", "eq", "ne")
FILTER_STATUSES = (*STATUSES, "online", "offline")
#: order key -> the derived column it sorts on before the identity
_ORDER_COLUMNS = {"identity": "", "lastseen": "act", "lastip": "ip"}
ORDER_KEYS = tuple(_ORDER_COLUMNS)
STATE_ORDER_PREFIX = "state."
#: the most rows one call returns (a page, or the names of a bulk operation)
MAX_ROWS = 10_000_000

_OP_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=", "ne": "!="}

#: the identities columns a dict is built from (never credential_hash)
COLUMNS = (
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
_ROW_NAMES = (*COLUMNS, "act", "ip", "onl")
_ROW = ", ".join(_ROW_NAMES)


@dataclass(frozen=True)
class TagCriterion:
    """``tag op value``: holds when any of the identity's values of ``name`` satisfies
    it; compared as numbers when both sides parse as numbers, else as strings."""

    name: str
    op: str  # one of TAG_OPS
    value: str

    @staticmethod
    def parse(raw: str) -> TagCriterion | None:
        """``name:op:value`` (the list filters' and role scopes' form); None when
        ``raw`` is not one."""
        m = _TAG_CRITERION.match(raw)
        return None if m is None else TagCriterion(m.group(1), m.group(2), m.group(3))


_TAG_CRITERION = re.compile(r"^(.+?):(gte|gt|lte|lt|eq|ne):(.*)$", re.S)


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
    #: RE2 regular expression: the caller's scope (a scoped role), besides ``identity``
    within: str | None = None


@dataclass(frozen=True)
class Order:
    """``identity``, ``lastseen``, ``lastip`` or ``state.<resource>`` (the reported
    value: numbers and booleans by value, then strings; identities without it last in
    both directions). Ties break on the identity, in the same direction."""

    key: str = "identity"
    descending: bool = False


def base_sql(restrict: str, order_resource: bool) -> str:
    """One row per present identity with the derived columns (see the module doc);
    ``act`` is the last activity in µs (0: never), ``ip`` the derived lastip.
    ``restrict``: a condition on ``identity`` applied before the joins, or ""."""
    where = f" WHERE {restrict}" if restrict else ""
    also = f" AND {restrict}" if restrict else ""
    cols = ", ".join(f"i.{c} AS {c}" for c in COLUMNS)
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
        f"FROM (SELECT {', '.join(COLUMNS)}, lastip FROM millrace.identities FINAL "
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


def int64(name: str, v: int) -> int:
    """``v`` when ClickHouse can bind it as Int64; a QueryError naming ``name`` else."""
    if isinstance(v, bool) or not isinstance(v, int) or not -(2**63) <= v < 2**63:
        raise QueryError(name, f"must be an integer of at most 64 bits, got {v!r}")
    return v


def within_sql(column: str, within: str, params: dict[str, Any], name: str = "within") -> str:
    """The condition "the identity in ``column`` is inside a caller's scope": ``within``
    is the scope as an RE2 expression (``api.users.scope.within``). The one form every
    read model filters a scoped caller with; an empty identity is never inside."""
    params[name] = within
    return f"(notEmpty({column}) AND match({column}, {{{name}:String}}))"


def where_sql(f: IdentityFilter, params: dict[str, Any]) -> list[str]:
    """The conditions of ``f`` over the columns of :func:`base_sql`; adds their
    parameters. A regular expression must have been checked by the caller (it needs the
    store)."""
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
        params["re"] = f.identity
        conds.append("match(identity, {re:String})")
    if f.within is not None:
        conds.append(within_sql("identity", f.within, params))
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
        params["before"] = int64("before", f.before_us)
        conds.append("act > 0 AND act < {before:Int64}")
    if f.after_us is not None:
        params["after"] = int64("after", f.after_us)
        conds.append("act > 0 AND act > {after:Int64}")
    return conds


def order_by(order: Order) -> tuple[str, str | None]:
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
