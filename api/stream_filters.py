"""Subscription filters of the live stream (``/api/v1/stream``).

A subscription names a kind of stream item and filters with the names of the matching
list endpoint, so a dashboard uses one vocabulary for the page it loads and the updates
it follows. Filters are parsed once, when the subscription is created (a bad one is a
400 naming the field), and compiled into a predicate over an item's data.

Activities are alarm steps and audit records together, as in ``GET /api/v1/activities``:
a filter on a field one of them does not have excludes it (``identity=x`` keeps only
alarm steps of ``x``; ``actor=alice`` keeps only audits by alice), as a ``WHERE`` on the
union of both would. ``include_acknowledged``/``include_discarded`` = false only exclude
(an audit record is neither), = true keep only alarms that are acknowledged/discarded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from millrace.pipeline.errors import MillraceError

KINDS = ("alarm", "activity", "deviation", "latest")

Predicate = Callable[[Mapping[str, Any]], bool]
Parser = Callable[[str, Any], Any]

MAX_VALUES = 1000


class FilterError(MillraceError, ValueError):
    """A subscription that cannot be created; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Filters:
    """Parsed filters: as shown back to the client, and as a predicate."""

    shown: dict[str, Any]
    match: Predicate


def _names(field: str, value: Any) -> list[str]:
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = value
    else:
        raise FilterError(field, "must be a string (comma separated values) or a list of strings")
    names = list(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if not names:
        raise FilterError(field, "give at least one value")
    if len(names) > MAX_VALUES:
        raise FilterError(field, f"at most {MAX_VALUES} values")
    return names


def _bool(field: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise FilterError(field, "must be true or false")


def _priority_range(field: str, value: Any) -> list[int]:
    parts: list[Any] = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list) or len(parts) != 2:
        raise FilterError(field, "must be 'lo,hi' (two priorities 0-255)")
    bounds: list[int] = []
    for part in parts:
        if isinstance(part, str) and part.strip().isdigit():
            part = int(part.strip())
        if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part <= 255:
            raise FilterError(field, "must be 'lo,hi' with integers 0-255")
        bounds.append(part)
    if bounds[0] > bounds[1]:
        raise FilterError(field, "lo must not be above hi")
    return bounds


def _choice(*choices: str) -> Parser:
    def parse(field: str, value: Any) -> str:
        if value not in choices:
            raise FilterError(field, f"must be one of {', '.join(choices)}")
        return str(value)

    return parse


_ALARM: dict[str, Parser] = {
    "identity": _names,
    "signal": _names,
    "type": _names,
    "priority_range": _priority_range,
    "state": _choice("active", "cleared"),
    "include_acknowledged": _bool,
    "include_discarded": _bool,
}
_AUDIT: dict[str, Parser] = {"actor": _names, "target_type": _names, "action": _names}
SPECS: dict[str, dict[str, Parser]] = {
    "alarm": _ALARM,
    "activity": {**_ALARM, "activity_type": _choice("alarm", "audit"), **_AUDIT},
    "deviation": {"service_ids": _names, "resource_ids": _names, "deviated": _bool},
    "latest": {"identity": _names, "signal": _names},
}
#: the names ``GET /api/v1/signals/latest`` uses for the same filters
ALIASES: dict[str, dict[str, str]] = {"latest": {"identities": "identity", "signals": "signal"}}
#: include_* filter -> the item flag it tests
_FLAGS = {"include_acknowledged": "acknowledged", "include_discarded": "discarded"}


def compile_filters(kind: Any, raw: Mapping[str, Any] | None) -> Filters:
    """Parse ``raw`` for ``kind``; raises :class:`FilterError` naming the field."""
    if kind not in SPECS:
        raise FilterError("kind", f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    spec, aliases = SPECS[kind], ALIASES.get(kind, {})
    shown: dict[str, Any] = {}
    for name, value in (raw or {}).items():
        canonical = aliases.get(name, name)
        field = f"filters.{name}"
        if canonical not in spec:
            known = ", ".join([*spec, *aliases])
            raise FilterError(field, f"unknown filter for kind {kind!r}; known: {known}")
        if value is None:
            continue
        if canonical in shown:
            raise FilterError(field, f"given twice (also as {canonical!r})")
        shown[canonical] = spec[canonical](field, value)
    return Filters(shown, _predicate(kind, shown))


def _predicate(kind: str, f: dict[str, Any]) -> Predicate:
    checks: list[Predicate] = []
    if kind == "deviation":
        # resource ids win when both are given, as in GET /resources/states
        if "resource_ids" in f:
            checks.append(_member("resource_id", f["resource_ids"]))
        elif "service_ids" in f:
            checks.append(_member("service_id", f["service_ids"]))
        if "deviated" in f:
            checks.append(_equal("deviated", f["deviated"]))
    else:
        for name in ("signal", "type", "actor", "target_type", "action"):
            if name in f:
                checks.append(_member(name, f[name]))
        if "identity" in f:
            # as in GET /activities: audit records whose target is the identity match
            allowed = frozenset(f["identity"])
            checks.append(
                lambda d: (
                    d.get("identity") in allowed
                    or (d.get("activity_type") == "audit" and d.get("target_id") in allowed)
                )
            )
        for name in ("state", "activity_type"):
            if name in f:
                checks.append(_equal(name, f[name]))
        if "priority_range" in f:
            lo, hi = f["priority_range"]
            checks.append(lambda d: isinstance(p := d.get("priority"), int) and lo <= p <= hi)
        for name, flag in (
            ("include_acknowledged", "acknowledged"),
            ("include_discarded", "discarded"),
        ):
            if name in f:
                checks.append(_flag(flag, f[name]))
    return lambda d: all(check(d) for check in checks)


_IDENTITY_RESOURCE = "identity:"


def identity_of(kind: str, d: Mapping[str, Any]) -> str | None:
    """The identity an item is about, or None when it is about none (a connector's
    resource, an audit record of a key or user): what a scoped caller's subscriptions
    test (``api.users.scope.allows``). Alarm steps and readings name it; an audit record
    is about the identity it wrote to or the identity of the alarm it acted on (the
    rule of ``projections.audits.ABOUT_IDENTITY``); a deviation of an identity's desired
    state names it in its resource id (``identity:<identity>/<resource>``; identities
    hold no ``/``)."""
    if kind == "deviation":
        rid = d.get("resource_id")
        if d.get("resource_type") != "identity_state" or not isinstance(rid, str):
            return None
        if not rid.startswith(_IDENTITY_RESOURCE):
            return None
        return rid[len(_IDENTITY_RESOURCE) :].split("/", 1)[0]
    if d.get("activity_type") == "audit":
        if d.get("target_type") == "identity":
            found = d.get("target_id")
        elif d.get("target_type") == "alarm":
            alarm = d.get("after") or d.get("before")
            found = alarm.get("identity") if isinstance(alarm, Mapping) else None
        else:
            return None
    else:
        found = d.get("identity")
    return found if isinstance(found, str) else None


def _member(field: str, values: list[str]) -> Predicate:
    allowed = frozenset(values)
    return lambda d: d.get(field) in allowed


def _equal(field: str, value: Any) -> Predicate:
    return lambda d: d.get(field) == value


def _flag(field: str, only: bool) -> Predicate:
    """true = only items whose ``field`` is set; false = none of those."""
    return lambda d: bool(d.get(field)) is only
