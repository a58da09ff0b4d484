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

Which identities a query selects and their derived columns (lastseen, lastip, online)
are built in ``projections.identity_filter``; tags, definitions and device metrics have
modules of their own (``tags``, ``definitions``, ``device_metrics``), reached through
:class:`RegistryQueries` too.

``credential_hash`` is selected by :meth:`RegistryQueries.credential` only, for device
authentication; no dict this module returns holds it.
"""

from __future__ import annotations

import json
from typing import Any

from millrace.pipeline.errors import StoreError
from millrace.pipeline.values import typed_value
from millrace.projections import definitions, device_metrics, tags
from millrace.projections.device_metrics import METRIC_FNS, METRIC_WINDOWS
from millrace.projections.errors import QueryError
from millrace.projections.identity_filter import (
    COLUMNS,
    FILTER_STATUSES,
    MAX_ROWS,
    ORDER_KEYS,
    STATE_ORDER_PREFIX,
    TAG_OPS,
    IdentityFilter,
    Order,
    TagCriterion,
    base_sql,
    int64,
    order_by,
    where_sql,
)
from millrace.projections.store.base import ProjectionStore

__all__ = [
    "FILTER_STATUSES",
    "MAX_ROWS",
    "METRIC_FNS",
    "METRIC_WINDOWS",
    "ORDER_KEYS",
    "STATE_ORDER_PREFIX",
    "TAG_OPS",
    "IdentityFilter",
    "Order",
    "QueryError",
    "RegistryQueries",
    "TagCriterion",
]

_ROW_NAMES = (*COLUMNS, "act", "ip", "onl")
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
        if f.identity is not None:
            self._check_regex(f.identity)
        return where_sql(f, params)

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
            "now": int64("now", now_us),
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
        return f"SELECT {columns} FROM ({base_sql(restrict, order_resource)})" + (
            " WHERE " + " AND ".join(conds) if conds else ""
        )

    def _select(self, f: IdentityFilter, now_us: int, columns: str, tail: str = "") -> Rows:
        params = self._params(f, now_us)
        sql = self._matching_sql(f, params, columns, False) + tail
        return self.store.execute(sql, params).rows

    def list(
        self, f: IdentityFilter, order: Order, limit: int, offset: int, now_us: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of identities and whether more follow it (one row past the page is
        fetched to tell)."""
        if not 0 <= limit < MAX_ROWS:
            raise QueryError("limit", f"must be between 0 and {MAX_ROWS - 1}, got {limit}")
        if not 0 <= offset < 2**63:
            raise QueryError("offset", f"must be 0 or more, got {offset}")
        sort, resource = order_by(order)
        params = self._params(f, now_us)
        params.update(lim=limit + 1, off=offset)
        if resource is not None:
            params["ores"] = resource
        # the page is chosen on the narrow columns, then only its rows are read in full:
        # sorting every identity together with its maps costs several times more. A row
        # deleted between the two reads drops out of the page.
        sql = (
            self._matching_sql(f, params, "identity", resource is not None)
            + f" ORDER BY {sort} LIMIT {{lim:UInt64}} OFFSET {{off:UInt64}}"
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

    def status(self, identity: str) -> str | None:
        """The stored status of the present identity ``identity``, or None: one
        primary-key read of one column (HTTP ingest asks it per request)."""
        rows = self.store.execute(
            "SELECT status FROM millrace.identities FINAL "
            "WHERE identity = {id:String} AND present = 1",
            {"id": identity},
        ).rows
        return str(rows[0][0]) if rows else None

    def gate_sets(
        self, registered: bool, max_identities: int
    ) -> tuple[frozenset[str], frozenset[str] | None]:
        """The locked present identities and, with ``registered``, every present one
        (None when there are more than ``max_identities``): HTTP ingest's gate
        (``api.ingest_gate``), one query for all identities."""
        if not registered:
            rows = self.store.execute(
                "SELECT identity FROM millrace.identities FINAL "
                "WHERE present = 1 AND status = 'locked'"
            ).rows
            return frozenset(str(r[0]) for r in rows), None
        rows = self.store.execute(
            "SELECT identity, status = 'locked' FROM millrace.identities FINAL "
            "WHERE present = 1 LIMIT {n:UInt64}",
            {"n": max_identities + 1},
        ).rows
        locked = frozenset(str(r[0]) for r in rows if r[1])
        if len(rows) > max_identities:
            return locked, None
        return locked, frozenset(str(r[0]) for r in rows)

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
                "value": typed_value(int(kind), value, text),
                "ts_us": int(ts),
                "quality": int(quality),
            }
        return out

    def reported(self, identity: str) -> dict[str, dict[str, Any]]:
        """signal -> {value (bool, float or str by kind), ts_us, quality}: what the
        identity last reported of each signal."""
        return self._latest([identity]).get(identity, {})

    # -- tags and definitions --------------------------------------------------------

    def tag_names(self, within: str | None = None) -> Names:
        return tags.tag_names(self.store, within)

    def tag_values(self, tag: str, within: str | None = None) -> Names:
        return tags.tag_values(self.store, tag, within)

    def definitions(self) -> dict[str, dict[str, Any]]:
        """name -> {definition, updated_us, updated_by} of the present definitions."""
        return definitions.definitions(self.store)

    # -- device metrics --------------------------------------------------------------

    def metrics(self, metric: str, window: str, fn: str, start_us: int, end_us: int) -> Dicts:
        """See :func:`millrace.projections.device_metrics.metrics`."""
        return device_metrics.metrics(self.store, metric, window, fn, start_us, end_us)


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
