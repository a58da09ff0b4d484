"""Identity watch decisions: what the passage of time does to the registry.

Processors are pure and have no clock, so nothing in the identity fold can notice that
a provisioning window passed, a credential expired, a command was never reported back,
a resource went silent or a device stopped sending. The watch stage
(:mod:`millrace.pipeline.identities.watch_stage`) reads what the projections show every
``interval_s`` and hands it, with the time, to the functions here; they decide which
IdentityEvents that is. Pure: no I/O, no clock (``now`` is passed in), the memory of
what was emitted is an explicit :class:`WatchMemory`. The IdentityProcessor folds the
events like any other, so a replay gives the same registry without the watch running.

Rules (the stage reads present identities only):

1. whitelisted past ``provision_until_us`` -> EXPIRED ``{"what": "window"}``;
2. provisioned past ``credential_expires_us`` -> EXPIRED ``{"what": "credentials"}``;
3. a pending set value (no ack, no timeout) whose resource reported an equal value at or
   after ``set_ts`` -> STATE_ACKNOWLEDGED; else, with sync on, older than
   ``command_timeout_s`` -> STATE_TIMED_OUT;
4. a resource silent longer than its definition's ``timeout_s`` -> RESOURCE_STALE;
5. connected but silent longer than the inactivity timeout -> DISCONNECTED; not
   connected but sending telemetry -> CONNECTED (never for a locked identity);
6. ``retention_months`` of the definitions -> the readings TTL (:func:`retention_rules`;
   the DDL is ``projections``').

The projections follow the log asynchronously, so the next tick may still see the state
an event of this tick is about to change. The memory keys each finding by the timestamp
that triggered it (set_ts, the latest reading's ts, lastseen, ...) and the same key is
not emitted again; it is bounded (10 minutes, 100k keys), after which a condition the
log refused to change is simply reported again.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from millrace.pipeline.errors import ConfigError
from millrace.pipeline.events import identity_event
from millrace.pipeline.identities.resources import ResourceDefinition, same_value
from millrace.pipeline.values import typed_value

ACTOR = "millrace:watch"
#: how long an emitted key is remembered (the projections catch up well within it)
FORGET_AFTER_US = 600_000_000
#: at most this many remembered keys
MAX_REMEMBERED = 100_000
#: event types whose per-resource findings of one identity share one event
GROUPED = ("STATE_ACKNOWLEDGED", "STATE_TIMED_OUT", "RESOURCE_STALE")
CONNECTIVITY = ("CONNECTED", "DISCONNECTED")

Key = tuple[str, str, str, int]
IdentityEventPair = tuple[str, dict[str, Any]]


class WatchSettingsError(ConfigError, ValueError):
    """A watch setting out of range."""


@dataclass
class WatchSettings:
    """How the watch judges time; all durations in seconds."""

    default_inactivity_timeout_s: int = 300
    #: a pending set value (sync on) not reported back in time -> STATE_TIMED_OUT
    command_timeout_s: int = 300
    interval_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("default_inactivity_timeout_s", "command_timeout_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise WatchSettingsError(f"watch.{name}: expected a whole number >= 1, got {v!r}")
        v = self.interval_s
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 3600:
            raise WatchSettingsError(f"watch.interval_s: expected a number in (0, 3600], got {v!r}")


# -- what the stage reads (one row type per rule) ----------------------------------------


class ExpiryRow(NamedTuple):
    """An identity whose window or credential ran out (rules 1 and 2)."""

    identity: str
    status: str
    provision_until_us: int
    credential_expires_us: int


class PendingRow(NamedTuple):
    """A set value with neither ack nor timeout, and the resource's latest reading
    (``found`` false: none)."""

    identity: str
    resource: str
    set_text: str
    set_us: int
    found: bool
    ts_us: int
    kind: int
    value: float | None
    text: str


class StaleRow(NamedTuple):
    """A resource silent past its timeout, not yet reported stale for this reading."""

    identity: str
    signal: str
    ts_us: int
    kind: int
    value: float | None
    text: str


class ConnectivityRow(NamedTuple):
    """An identity whose connected flag disagrees with its telemetry (rule 5)."""

    identity: str
    connected: bool
    updated_us: int
    lastseen: int
    lastip: str
    active_us: int


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=False)


@dataclass
class Finding:
    """One thing a rule found: the event it becomes and the key that marks it emitted."""

    identity: str
    type: str
    key: Key
    state: dict[str, str] | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    ip: str | None = None


# -- the rules -----------------------------------------------------------------------------


def expiry(rows: Iterable[ExpiryRow]) -> list[Finding]:
    """Rules 1 and 2: provisioning windows and credentials that ran out."""
    out = []
    for r in rows:
        if r.status == "whitelisted":
            what, trigger = "window", r.provision_until_us
        else:
            what, trigger = "credentials", r.credential_expires_us
        key: Key = (r.identity, "EXPIRED", what, int(trigger))
        out.append(Finding(r.identity, "EXPIRED", key, attributes={"what": what}))
    return out


def control(
    rows: Iterable[PendingRow],
    now: int,
    definitions: Mapping[str, ResourceDefinition],
    command_timeout_s: int,
) -> tuple[list[Finding], list[PendingRow]]:
    """Rule 3: pending set values acknowledged by a report, or timed out. Both are
    keyed by the command (set_ts): a command settles once, either way. Also returns the
    rows whose set value is not JSON (skipped; the stage logs them)."""
    timeout_us = command_timeout_s * 1_000_000
    out, unreadable = [], []
    for r in rows:
        key: Key = (r.identity, "STATE", r.resource, int(r.set_us))
        try:
            desired = json.loads(r.set_text)
        except ValueError:
            unreadable.append(r)
            continue
        if r.found and int(r.ts_us) >= r.set_us:
            reported = typed_value(int(r.kind), r.value, r.text)
            if same_value(desired, reported):
                state = {r.resource: _json(reported)}
                out.append(Finding(r.identity, "STATE_ACKNOWLEDGED", key, state=state))
                continue
        definition = definitions.get(r.resource)
        sync = definition is None or definition.sync
        if sync and now - r.set_us > timeout_us:
            state = {r.resource: r.set_text}
            out.append(Finding(r.identity, "STATE_TIMED_OUT", key, state=state))
    return out, unreadable


def stale_timeouts(definitions: Mapping[str, ResourceDefinition]) -> dict[str, int]:
    """Rule 4's input: resource -> timeout in microseconds, for resources that have one."""
    return {n: d.timeout_s * 1_000_000 for n, d in sorted(definitions.items()) if d.timeout_s}


def stale(rows: Iterable[StaleRow]) -> list[Finding]:
    """Rule 4: resources silent longer than their definition's timeout (once per last
    reading: stale_ts records that it was reported)."""
    out = []
    for r in rows:
        last = typed_value(int(r.kind), r.value, r.text)
        key: Key = (r.identity, "RESOURCE_STALE", r.signal, int(r.ts_us))
        out.append(Finding(r.identity, "RESOURCE_STALE", key, state={r.signal: _json(last)}))
    return out


def connectivity(rows: Iterable[ConnectivityRow], memory: WatchMemory) -> list[Finding]:
    """Rule 5: online/offline from telemetry. Besides the key, a transition this
    instance published is not repeated until the identity's row has caught up with it
    (updated_us reaches its ts): new telemetry would otherwise give CONNECTED a new key
    every tick while the first one is still on its way."""
    out = []
    for r in rows:
        if r.connected:
            kind, trigger = "DISCONNECTED", int(r.active_us)
            attrs, ip = {"reason": "inactivity"}, None
        else:
            kind, trigger = "CONNECTED", int(r.lastseen)
            attrs, ip = {"reason": "telemetry"}, r.lastip or None
        if memory.in_flight(r.identity, kind, int(r.updated_us)):
            continue
        key: Key = (r.identity, kind, "", trigger)
        out.append(Finding(r.identity, kind, key, attributes=attrs, ip=ip))
    return out


def retention_rules(definitions: Mapping[str, ResourceDefinition]) -> frozenset[tuple[str, int]]:
    """Rule 6: (resource, months) of every definition that limits its readings."""
    return frozenset(
        (name, d.retention_months) for name, d in definitions.items() if d.retention_months
    )


# -- memory and events ---------------------------------------------------------------------


class WatchMemory:
    """What this watch emitted (key -> when), bounded, and the connect/disconnect
    events still on their way to the projections."""

    def __init__(self, max_remembered: int = MAX_REMEMBERED) -> None:
        self.max_remembered = max_remembered
        # insertion order is (about) time order
        self.emitted: OrderedDict[Key, int] = OrderedDict()
        # (identity, CONNECTED|DISCONNECTED) -> ts_us of the event still on its way
        self.inflight: dict[tuple[str, str], int] = {}

    def forget(self, now: int) -> None:
        """Drop keys older than FORGET_AFTER_US, and the oldest beyond the bound."""
        horizon = now - FORGET_AFTER_US
        emitted = self.emitted
        while emitted:
            first = next(iter(emitted))
            if emitted[first] >= horizon and len(emitted) <= self.max_remembered:
                break
            emitted.popitem(last=False)
        for k in [k for k, t in self.inflight.items() if t < horizon]:
            del self.inflight[k]

    def in_flight(self, identity: str, kind: str, updated_us: int) -> bool:
        """Whether ``kind`` of ``identity`` was published and its row has not caught up
        (``updated_us`` still before it); a caught-up one is dropped."""
        sent = self.inflight.get((identity, kind))
        if sent is None:
            return False
        if updated_us < sent:
            return True
        del self.inflight[(identity, kind)]
        return False

    def fresh(self, findings: Iterable[Finding]) -> list[Finding]:
        """The findings not emitted before."""
        return [f for f in findings if f.key not in self.emitted]

    def remember(self, findings: Iterable[Finding], now: int) -> None:
        """Mark ``findings`` emitted at ``now`` (after their publish succeeded)."""
        for f in findings:
            self.emitted[f.key] = now
            if f.type in CONNECTIVITY:
                self.inflight[(f.identity, f.type)] = now


def events(findings: Sequence[Finding], now: int) -> list[IdentityEventPair]:
    """One IdentityEvent per finding, except per-resource findings of one identity and
    type, which share one event (their states merged)."""
    out: list[IdentityEventPair] = []
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for f in findings:
        if f.type in GROUPED:
            ev = grouped.get((f.identity, f.type))
            if ev is not None:
                ev["state"].update(f.state or {})
                continue
        ev = identity_event(
            f.identity,
            f.type,
            now,
            actor=ACTOR,
            ip=f.ip,
            state=dict(f.state) if f.state is not None else None,
            attributes=dict(f.attributes),
        )
        if f.type in GROUPED:
            grouped[(f.identity, f.type)] = ev
        out.append((f.identity, ev))
    return out
