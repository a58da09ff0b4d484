"""Read model of alarms: lists with filters, keyset pages, one alarm, its annotations,
and the alarm rules, queried from the projections ``pipeline.processors.alarms`` writes.

Filters (:class:`AlarmFilter`) become SQL conditions in :func:`filter_conditions`,
which takes the column each logical field lives in, so another read model (activities:
alarms and audit records together) can apply the same filters to its own columns.
Values a user typed are bound as query parameters; only fixed fragments chosen from
whitelists (sort keys, directions, column names given by code) become SQL text.

Sorts (:data:`SORTS`) are ``creation_time`` (raised time) and ``priority``, ascending
or descending (``-``), ties broken on the alarm id in the same direction, so the
order is total. Pages are chosen by ``page``/``limit`` or by a continuation token:
opaque text carrying the sort and the sort key of the last row returned; the next
page is what sorts after that key (keyset pagination), so it neither repeats nor skips
rows while new alarms arrive.

``include_acknowledged`` / ``include_discarded``: True = only alarms whose management
status is that one, False = none of them, None = no condition. Both True selects
nothing: an alarm has one status.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from millrace.projections.identity_filter import within_sql
from millrace.projections.registry import QueryError
from millrace.projections.store.base import ProjectionStore

#: sort name -> (column, descending)
SORTS: dict[str, tuple[str, bool]] = {
    "creation_time": ("raised_us", False),
    "-creation_time": ("raised_us", True),
    "priority": ("priority", False),
    "-priority": ("priority", True),
}
STATES = ("active", "cleared")
MAX_LIMIT = 10_000
MAX_TOKEN = 2048

#: logical filter field -> column of ``millrace.alarms`` (the default mapping)
ALARM_COLUMNS: dict[str, str] = {
    "identity": "identity",
    "signal": "signal",
    "type": "type",
    "priority": "priority",
    "state": "state",
    "mgmt_status": "mgmt_status",
    "time": "raised_us",
    "id": "alarm_id",
}

_ALARM_FIELDS = (
    "alarm_id",
    "version",
    "rule_id",
    "type",
    "identity",
    "signal",
    "priority",
    "message",
    "trigger_value",
    "state",
    "raised_us",
    "cleared_us",
    "clear_value",
    "requires_ack",
    "mgmt_status",
    "ack_user",
    "ack_us",
    "ack_note",
    "discard_user",
    "discard_us",
    "discard_note",
    "annotation_count",
    "updated_us",
)
_SELECT = ", ".join(_ALARM_FIELDS)


@dataclass
class AlarmFilter:
    """What to select; every given part must hold (values of one list are
    alternatives). Times are epoch µs on the raised time: start inclusive, end
    exclusive."""

    identities: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    priority_range: tuple[int, int] | None = None  # inclusive
    state: str | None = None  # active | cleared
    acknowledged: bool | None = None
    discarded: bool | None = None
    start_us: int | None = None
    end_us: int | None = None
    alarm_ids: list[str] | None = None
    #: RE2 expression: the caller's scope (a scoped role), the identity must match it
    within: str | None = None


def _int64(name: str, v: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not -(2**63) <= v < 2**63:
        raise QueryError(name, f"must be an integer of at most 64 bits, got {v!r}")
    return v


def filter_conditions(
    f: AlarmFilter,
    params: dict[str, Any],
    columns: Mapping[str, str] = ALARM_COLUMNS,
    prefix: str = "af_",
) -> list[str]:
    """SQL conditions (to AND together) selecting what ``f`` asks for; their
    parameters are added to ``params`` under names starting with ``prefix``.
    ``columns`` maps the logical fields (keys of :data:`ALARM_COLUMNS`) to the SQL
    expressions holding them; a filter on a field it lacks raises ``KeyError``."""
    conds: list[str] = []

    def bind(name: str, value: Any, ch_type: str) -> str:
        params[prefix + name] = value
        return f"{{{prefix}{name}:{ch_type}}}"

    for name, values in (("identity", f.identities), ("signal", f.signals), ("type", f.types)):
        if values:
            conds.append(f"{columns[name]} IN {bind(name, list(values), 'Array(String)')}")
    if f.alarm_ids is not None:
        conds.append(f"{columns['id']} IN {bind('ids', list(f.alarm_ids), 'Array(String)')}")
    if f.within is not None:
        conds.append(within_sql(columns["identity"], f.within, params, prefix + "within"))
    if f.priority_range is not None:
        lo, hi = f.priority_range
        if not 0 <= lo <= hi <= 255:
            raise QueryError("priority_range", f"need 0 <= lo <= hi <= 255, got {lo},{hi}")
        col = columns["priority"]
        conds.append(f"{col} >= {bind('plo', lo, 'UInt8')} AND {col} <= {bind('phi', hi, 'UInt8')}")
    if f.state is not None:
        if f.state not in STATES:
            raise QueryError("state", f"{f.state!r} is not one of {', '.join(STATES)}")
        conds.append(f"{columns['state']} = {bind('state', f.state, 'String')}")
    for status, wanted in (("acknowledged", f.acknowledged), ("discarded", f.discarded)):
        if wanted is not None:
            op = "=" if wanted else "!="
            conds.append(f"{columns['mgmt_status']} {op} '{status}'")
    if f.start_us is not None:
        conds.append(
            f"{columns['time']} >= {bind('start', _int64('start_time', f.start_us), 'Int64')}"
        )
    if f.end_us is not None:
        conds.append(f"{columns['time']} < {bind('end', _int64('end_time', f.end_us), 'Int64')}")
    return conds


def where_clause(
    f: AlarmFilter,
    params: dict[str, Any],
    columns: Mapping[str, str] = ALARM_COLUMNS,
    prefix: str = "af_",
) -> str:
    """``" WHERE ..."`` for :func:`filter_conditions`, or ``""`` when nothing filters."""
    conds = filter_conditions(f, params, columns, prefix)
    return " WHERE " + " AND ".join(conds) if conds else ""


# -- continuation tokens ------------------------------------------------------------------


def encode_token(sort: str, key: Any, alarm_id: str) -> str:
    """The token of the row with sort key ``key`` and id ``alarm_id`` under ``sort``."""
    raw = json.dumps({"s": sort, "k": [key, alarm_id]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, sort: str) -> tuple[int, str]:
    """(sort key, alarm id) of a token made for ``sort``; QueryError naming
    ``continuation_token`` when it is not one."""
    bad = QueryError("continuation_token", "not a continuation token of this list")
    if len(token) > MAX_TOKEN:
        raise bad
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        raise bad from None
    if not isinstance(doc, dict) or not isinstance(doc.get("k"), list) or len(doc["k"]) != 2:
        raise bad
    key, alarm_id = doc["k"]
    if doc.get("s") != sort:
        raise QueryError(
            "continuation_token", f"the token continues sort {doc.get('s')!r}, not {sort!r}"
        )
    if isinstance(key, bool) or not isinstance(key, int) or not isinstance(alarm_id, str):
        raise bad
    if not -(2**63) <= key < 2**63:
        raise bad
    return key, alarm_id


# -- rows ---------------------------------------------------------------------------------


def _json_value(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def alarm_row(r: Mapping[str, Any]) -> dict[str, Any]:
    """A stored alarm as plain values (times in epoch µs, None when not happened).
    ``open``: active, or pending acknowledgement when the rule requires it."""
    status = str(r["mgmt_status"])
    requires_ack = bool(int(r["requires_ack"]))
    active = r["state"] == "active"
    return {
        "alarm_id": str(r["alarm_id"]),
        "rule_id": str(r["rule_id"]),
        "type": str(r["type"]),
        "identity": str(r["identity"]),
        "signal": str(r["signal"]) or None,
        "priority": int(r["priority"]),
        "message": str(r["message"]),
        "trigger_value": _json_value(str(r["trigger_value"])),
        "state": str(r["state"]),
        "raised_us": int(r["raised_us"]),
        "cleared_us": int(r["cleared_us"]) or None,
        "clear_value": _json_value(str(r["clear_value"])),
        "requires_ack": requires_ack,
        "open": active or (requires_ack and status == "pending"),
        "mgmt_status": status,
        "ack_user": str(r["ack_user"]) or None,
        "ack_us": int(r["ack_us"]) or None,
        "ack_note": str(r["ack_note"]) or None,
        "discard_user": str(r["discard_user"]) or None,
        "discard_us": int(r["discard_us"]) or None,
        "discard_note": str(r["discard_note"]) or None,
        "annotation_count": int(r["annotation_count"]),
        "updated_us": int(r["updated_us"]),
        "version": int(r["version"]),
    }


#: ``AlarmQueries.list`` shadows the builtin inside the class body: annotate with these
Names = list[str]
Dicts = list[dict[str, Any]]


@dataclass
class AlarmPage:
    rows: list[dict[str, Any]]
    more: bool  # rows follow this page
    token: str | None  # continues after the last row (None: nothing follows)
    total: int  # every row matching the filter


class AlarmQueries:
    """The alarms' read side over a projection store (see the module doc)."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store

    def list(
        self,
        f: AlarmFilter,
        sort: str = "-creation_time",
        limit: int = 100,
        page: int = 1,
        token: str | None = None,
    ) -> AlarmPage:
        """A page of alarms: after ``token`` when given (``page`` is then ignored),
        else page ``page`` (1-based) of ``limit`` rows."""
        if sort not in SORTS:
            raise QueryError("sort", f"{sort!r} is not one of {', '.join(SORTS)}")
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
        if not 1 <= page <= 2**40:
            raise QueryError("page", f"must be 1 or more, got {page}")
        column, desc = SORTS[sort]
        params: dict[str, Any] = {}
        conds = filter_conditions(f, params)
        total = self._count(conds, params)
        page_conds = list(conds)
        offset = (page - 1) * limit
        if token is not None:
            key, after_id = decode_token(token, sort)
            params["kk"], params["kid"] = key, after_id
            op = "<" if desc else ">"
            page_conds.append(f"({column}, alarm_id) {op} ({{kk:Int64}}, {{kid:String}})")
            offset = 0
        d = "DESC" if desc else "ASC"
        params.update(lim=limit + 1, off=offset)
        where = " WHERE " + " AND ".join(page_conds) if page_conds else ""
        res = self.store.execute(
            f"SELECT {_SELECT} FROM millrace.alarms FINAL{where} "
            f"ORDER BY {column} {d}, alarm_id {d} LIMIT {{lim:UInt64}} OFFSET {{off:UInt64}}",
            params,
        )
        rows = [alarm_row(r) for r in res.dicts()]
        more = len(rows) > limit
        rows = rows[:limit]
        next_token = None
        if more and rows:
            last = rows[-1]
            next_token = encode_token(
                sort, last["raised_us" if column == "raised_us" else "priority"], last["alarm_id"]
            )
        return AlarmPage(rows, more, next_token, total)

    def _count(self, conds: Names, params: dict[str, Any]) -> int:
        where = " WHERE " + " AND ".join(conds) if conds else ""
        rows = self.store.execute(f"SELECT count() FROM millrace.alarms FINAL{where}", params).rows
        return int(rows[0][0]) if rows else 0

    def get(self, alarm_id: str) -> dict[str, Any] | None:
        found = self.get_many([alarm_id])
        return found.get(alarm_id)

    def get_many(self, alarm_ids: Names) -> dict[str, dict[str, Any]]:
        """alarm id -> alarm, for those of ``alarm_ids`` that exist."""
        if not alarm_ids:
            return {}
        res = self.store.execute(
            f"SELECT {_SELECT} FROM millrace.alarms FINAL WHERE alarm_id IN {{ids:Array(String)}}",
            {"ids": list(alarm_ids)},
        )
        return {str(r["alarm_id"]): alarm_row(r) for r in res.dicts()}

    def annotations(self, alarm_id: str, limit: int = 1000, offset: int = 0) -> tuple[Dicts, int]:
        """The alarm's annotations in the order they were made (``seq`` 1, 2, ...), and
        how many it has."""
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
        params = {"id": alarm_id, "lim": limit, "off": offset}
        total_rows = self.store.execute(
            "SELECT count() FROM millrace.alarm_annotations FINAL WHERE alarm_id = {id:String}",
            params,
        ).rows
        res = self.store.execute(
            "SELECT ts_us, user, text FROM millrace.alarm_annotations FINAL "
            "WHERE alarm_id = {id:String} ORDER BY seq LIMIT {lim:UInt64} OFFSET {off:UInt64}",
            params,
        )
        rows = [
            {
                "alarm_id": alarm_id,
                "seq": offset + i + 1,
                "ts_us": int(ts),
                "user": str(user) or None,
                "text": str(text),
            }
            for i, (ts, user, text) in enumerate(res.rows)
        ]
        return rows, int(total_rows[0][0]) if total_rows else 0

    # -- rules ----------------------------------------------------------------------------

    def rules(self, limit: int = 1000, offset: int = 0) -> tuple[Dicts, int]:
        """Present rules by id, and how many there are."""
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
        total = self.store.execute(
            "SELECT count() FROM millrace.alarm_rules FINAL WHERE present = 1"
        ).rows
        res = self.store.execute(
            "SELECT rule_id, definition, updated_us, updated_by FROM millrace.alarm_rules FINAL "
            "WHERE present = 1 ORDER BY rule_id LIMIT {lim:UInt64} OFFSET {off:UInt64}",
            {"lim": limit, "off": offset},
        )
        return [_rule(r) for r in res.rows], int(total[0][0]) if total else 0

    def rule(self, rule_id: str) -> dict[str, Any] | None:
        """The present rule ``rule_id`` (definition, updated_us, updated_by), or None."""
        res = self.store.execute(
            "SELECT rule_id, definition, updated_us, updated_by FROM millrace.alarm_rules FINAL "
            "WHERE rule_id = {id:String} AND present = 1",
            {"id": rule_id},
        )
        return _rule(res.rows[0]) if res.rows else None


def _rule(row: list[Any]) -> dict[str, Any]:
    rule_id, definition, updated_us, updated_by = row
    return {
        "rule_id": str(rule_id),
        "definition": json.loads(definition),
        "updated_us": int(updated_us),
        "updated_by": str(updated_by) or None,
    }
