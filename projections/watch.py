"""Identity watch: the time-driven half of the identity registry.

Processors are pure and have no clock, so nothing in the fold can notice that a
provisioning window passed, a credential expired, a command was never reported back,
a resource went silent or a device stopped sending. This service runs beside the
runtime, reads the projections every ``interval_s`` and turns the passage of time into
IdentityEvents on the log; the IdentityProcessor folds them like any other event, so a
replay gives the same registry without the watch running.

Rules, each one query against the projections (FINAL, present identities only):

1. whitelisted past ``provision_until_us`` -> EXPIRED ``{"what": "window"}``;
2. provisioned past ``credential_expires_us`` -> EXPIRED ``{"what": "credentials"}``;
3. a pending set value (no ack, no timeout) whose resource reported an equal value at or
   after ``set_ts`` -> STATE_ACKNOWLEDGED; else, with sync on, older than
   ``command_timeout_s`` -> STATE_TIMED_OUT;
4. a resource silent longer than its definition's ``timeout_s`` -> RESOURCE_STALE;
5. connected but silent longer than the inactivity timeout -> DISCONNECTED; not
   connected but sending telemetry -> CONNECTED (never for a locked identity);
6. ``retention_months`` of the definitions applied as the TTL of ``millrace.readings``.

The projections follow the log asynchronously, so the next tick may still see the state
an event of this tick is about to change. The watch remembers what it emitted, keyed by
the timestamp that triggered it (set_ts, the latest reading's ts, lastseen, ...), and
does not emit the same again; the memory is bounded (10 minutes, 100k keys), after
which a condition the log refused to change is simply reported again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from pipeline.connector import EventPublisher
from pipeline.errors import ConfigError
from pipeline.identities.events import identity_event
from pipeline.identities.resources import ResourceDefinition, same_value
from pipeline.topics import IDENTITY
from projections.store.base import ProjectionStore

log = logging.getLogger("millrace.watch")

ACTOR = "millrace:watch"
#: how long an emitted key is remembered (the projections catch up well within it)
FORGET_AFTER_US = 600_000_000
#: at most this many remembered keys
MAX_REMEMBERED = 100_000
#: event types whose per-resource findings of one identity share one event
GROUPED = ("STATE_ACKNOWLEDGED", "STATE_TIMED_OUT", "RESOURCE_STALE")

KIND_NUMBER, KIND_BOOL, KIND_STRING = 0, 1, 2

Key = tuple[str, str, str, int]


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


def _now_us() -> int:
    return time.time_ns() // 1000


def quote_literal(text: str) -> str:
    """``text`` as a single-quoted ClickHouse string literal, for DDL where query
    parameters are not allowed: backslash and quote escaped (and NUL, which would end
    the query text early for some clients), everything else literal."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0")
    return f"'{escaped}'"


def retention_sql(rules: Iterable[tuple[str, int]]) -> str:
    """The ALTER that keeps each resource's raw readings ``months`` months: one TTL rule
    per resource (sorted, so the same set gives the same statement)."""
    parts = []
    for name, months in sorted(rules):
        if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 1200:
            raise ValueError(f"retention of {name!r}: months must be 1..1200, got {months!r}")
        parts.append(
            f"toDateTime(ts) + INTERVAL {months} MONTH DELETE WHERE signal = {quote_literal(name)}"
        )
    if not parts:
        raise ValueError("retention_sql needs at least one rule")
    return "ALTER TABLE millrace.readings MODIFY TTL " + ", ".join(parts)


REMOVE_TTL_SQL = "ALTER TABLE millrace.readings REMOVE TTL"


def reported_value(kind: int, value: float | None, text: str) -> Any:
    """A ``millrace.latest`` row's value as JSON would carry it (non-finite: None)."""
    if kind == KIND_BOOL:
        return bool(value)
    if kind == KIND_STRING:
        return text
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=False)


@dataclass
class _Finding:
    """One thing a rule found: the event it becomes and the key that marks it emitted."""

    identity: str
    type: str
    key: Key
    state: dict[str, str] | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    ip: str | None = None


_EXPIRY_SQL = """SELECT identity, status, provision_until_us, credential_expires_us
FROM millrace.identities FINAL
WHERE present = 1 AND (
    (status = 'whitelisted' AND provision_until_us > 0 AND provision_until_us < {now:Int64})
 OR (status = 'provisioned' AND credential_expires_us > 0 AND credential_expires_us < {now:Int64}))
ORDER BY identity"""

# pending = a set value with neither an ack nor a timeout (STATE_SET clears both); only
# the latest rows of identities with something pending are read (ORDER BY prefix)
_PENDING_SQL = """WITH pending AS (
    SELECT identity, resource, set_values[resource] AS set_text, set_ts[resource] AS set_us
    FROM millrace.identities FINAL
    ARRAY JOIN mapKeys(set_values) AS resource
    WHERE present = 1 AND NOT mapContains(acked_ts, resource)
      AND NOT mapContains(timed_out_ts, resource)
)
SELECT p.identity, p.resource, p.set_text, p.set_us, l.found, l.ts_us, l.kind, l.value, l.text
FROM pending AS p
LEFT JOIN (
    SELECT identity, signal, toUnixTimestamp64Micro(ts) AS ts_us, kind, value, text,
           toUInt8(1) AS found
    FROM millrace.latest FINAL
    WHERE identity IN (SELECT identity FROM pending)
) AS l ON l.identity = p.identity AND l.signal = p.resource
ORDER BY p.identity, p.resource"""

_STALE_SQL = """SELECT l.identity, l.signal, l.ts_us, l.kind, l.value, l.text
FROM (
    SELECT identity, signal, toUnixTimestamp64Micro(ts) AS ts_us, kind, value, text
    FROM millrace.latest FINAL
    WHERE signal IN {signals:Array(String)}
) AS l
INNER JOIN (
    SELECT identity, stale_ts FROM millrace.identities FINAL WHERE present = 1
) AS i ON i.identity = l.identity
WHERE l.ts_us < {now:Int64} - transform(toString(l.signal), {signals:Array(String)},
                                        {timeouts_us:Array(Int64)}, toInt64(0))
  AND i.stale_ts[toString(l.signal)] < l.ts_us
ORDER BY l.identity, l.signal"""

_CONNECTIVITY_SQL = """SELECT i.identity, i.connected, i.updated_us, s.lastseen, s.lastip,
       greatest(s.lastseen, i.connected_us) AS active_us
FROM (
    SELECT identity, connected, connected_us, disconnected_us, updated_us, status,
           if(inactivity_timeout_s > 0, toInt64(inactivity_timeout_s), {default_s:Int64})
               * 1000000 AS timeout_us
    FROM millrace.identities FINAL
    WHERE present = 1
) AS i
LEFT JOIN (
    SELECT identity, max(lastseen) AS lastseen, argMaxMerge(lastip) AS lastip
    FROM millrace.identity_seen
    GROUP BY identity
) AS s ON s.identity = i.identity
WHERE (i.connected = 1 AND greatest(s.lastseen, i.connected_us) < {now:Int64} - i.timeout_us)
   OR (i.connected = 0 AND i.status != 'locked'
       AND s.lastseen > greatest(i.connected_us, i.disconnected_us)
       AND {now:Int64} - s.lastseen < i.timeout_us)
ORDER BY i.identity"""

_DEFINITIONS_SQL = """SELECT name, definition FROM millrace.resource_defs FINAL
WHERE present = 1 ORDER BY name"""


class IdentityWatch:
    """Evaluates the time rules every ``interval_s`` and publishes what they find."""

    def __init__(
        self,
        store: ProjectionStore,
        publisher: EventPublisher,
        settings: WatchSettings | None = None,
        clock: Callable[[], int] = _now_us,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.settings = settings or WatchSettings()
        self.clock = clock
        self.stats: dict[str, Any] = {"ticks": 0, "published": {}, "errors": 0, "last_error": None}
        # key -> when it was emitted; insertion order is (about) time order
        self._emitted: OrderedDict[Key, int] = OrderedDict()
        # (identity, CONNECTED|DISCONNECTED) -> ts_us of the event still on its way
        self._inflight: dict[tuple[str, str], int] = {}
        # the retention rules this instance last applied (None: not yet)
        self._retention: frozenset[tuple[str, int]] | None = None

    # -- loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``interval_s`` until ``stop``; a failed tick is logged and the
        next one tries again (nothing it found was marked emitted)."""
        while not stop.is_set():
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._error("tick", exc)
            try:
                await asyncio.wait_for(stop.wait(), self.settings.interval_s)
            except TimeoutError:
                pass

    async def tick(self) -> list[tuple[str, dict[str, Any]]]:
        """Evaluate every rule once; publish and return the new events. A rule whose
        query fails is logged and skipped (the others still run); a failed publish
        raises and nothing is remembered, so the next tick publishes it again."""
        now = self.clock()
        self.stats["ticks"] += 1
        self._forget(now)
        findings: list[_Finding] = []
        findings += await self._guarded("expiry", self._expiry, now)
        definitions = await self._guarded_defs()
        if definitions is not None:
            findings += await self._guarded("control", self._control, now, definitions)
            findings += await self._guarded("stale", self._stale, now, definitions)
        findings += await self._guarded("connectivity", self._connectivity, now)
        if definitions is not None:
            await self._guarded("retention", self._apply_retention, definitions)
        fresh = [f for f in findings if f.key not in self._emitted]
        events = self._events(fresh, now)
        if events:
            await self.publisher.publish(IDENTITY, events)
        for f in fresh:
            self._emitted[f.key] = now
            if f.type in ("CONNECTED", "DISCONNECTED"):
                self._inflight[(f.identity, f.type)] = now
        published = self.stats["published"]
        for _, ev in events:
            published[ev["type"]] = published.get(ev["type"], 0) + 1
        return events

    # -- plumbing --------------------------------------------------------------------

    def _error(self, what: str, exc: BaseException) -> None:
        self.stats["errors"] += 1
        self.stats["last_error"] = f"{what}: {type(exc).__name__}: {exc}"
        log.error("identity watch: %s failed: %s", what, exc, exc_info=exc)

    async def _guarded(self, what: str, rule: Callable[..., Any], *args: Any) -> list[_Finding]:
        try:
            return list(await rule(*args) or ())
        except Exception as exc:
            self._error(what, exc)
            return []

    async def _guarded_defs(self) -> dict[str, ResourceDefinition] | None:
        try:
            return await self._definitions()
        except Exception as exc:
            self._error("definitions", exc)
            return None

    async def _query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        res = await asyncio.to_thread(self.store.execute, sql, params)
        return res.rows

    def _forget(self, now: int) -> None:
        horizon = now - FORGET_AFTER_US
        emitted = self._emitted
        while emitted:
            first = next(iter(emitted))
            if emitted[first] >= horizon and len(emitted) <= MAX_REMEMBERED:
                break
            emitted.popitem(last=False)
        for k in [k for k, t in self._inflight.items() if t < horizon]:
            del self._inflight[k]

    def _events(self, findings: list[_Finding], now: int) -> list[tuple[str, dict[str, Any]]]:
        """One event per finding, except per-resource findings of one identity and type,
        which share one event (their states merged)."""
        events: list[tuple[str, dict[str, Any]]] = []
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
            events.append((f.identity, ev))
        return events

    # -- rules -----------------------------------------------------------------------

    async def _definitions(self) -> dict[str, ResourceDefinition]:
        out: dict[str, ResourceDefinition] = {}
        for name, text in await self._query(_DEFINITIONS_SQL):
            try:
                out[str(name)] = ResourceDefinition.model_validate_json(text)
            except ValidationError as exc:
                # the processor validated it; a definition this version cannot read is
                # skipped rather than stopping every rule
                log.warning("identity watch: resource %r: unreadable definition: %s", name, exc)
        return out

    async def _expiry(self, now: int) -> list[_Finding]:
        """Rules 1 and 2: provisioning windows and credentials that ran out."""
        out = []
        for identity, status, until, expires in await self._query(_EXPIRY_SQL, {"now": now}):
            what, trigger = (
                ("window", until) if status == "whitelisted" else ("credentials", expires)
            )
            out.append(
                _Finding(
                    identity,
                    "EXPIRED",
                    (identity, "EXPIRED", what, int(trigger)),
                    attributes={"what": what},
                )
            )
        return out

    async def _control(
        self, now: int, definitions: Mapping[str, ResourceDefinition]
    ) -> list[_Finding]:
        """Rule 3: pending set values acknowledged by a report, or timed out. Both are
        keyed by the command (set_ts): a command settles once, either way."""
        timeout_us = self.settings.command_timeout_s * 1_000_000
        out = []
        for row in await self._query(_PENDING_SQL):
            identity, resource, set_text, set_us, found, ts_us, kind, value, text = row
            set_us = int(set_us)
            key: Key = (identity, "STATE", resource, set_us)
            try:
                desired = json.loads(set_text)
            except ValueError:
                log.warning("identity watch: %s.%s: set value is not JSON", identity, resource)
                continue
            if found and int(ts_us) >= set_us:
                reported = reported_value(int(kind), value, text)
                if same_value(desired, reported):
                    state = {resource: _json(reported)}
                    out.append(_Finding(identity, "STATE_ACKNOWLEDGED", key, state=state))
                    continue
            definition = definitions.get(resource)
            sync = definition is None or definition.sync
            if sync and now - set_us > timeout_us:
                state = {resource: set_text}
                out.append(_Finding(identity, "STATE_TIMED_OUT", key, state=state))
        return out

    async def _stale(
        self, now: int, definitions: Mapping[str, ResourceDefinition]
    ) -> list[_Finding]:
        """Rule 4: resources silent longer than their definition's timeout (once per
        last reading: stale_ts records that it was reported)."""
        timed = sorted((n, d.timeout_s) for n, d in definitions.items() if d.timeout_s)
        if not timed:
            return []
        params = {
            "now": now,
            "signals": [n for n, _ in timed],
            "timeouts_us": [t * 1_000_000 for _, t in timed],
        }
        out = []
        for identity, signal, ts_us, kind, value, text in await self._query(_STALE_SQL, params):
            last = reported_value(int(kind), value, text)
            key: Key = (identity, "RESOURCE_STALE", signal, int(ts_us))
            out.append(_Finding(identity, "RESOURCE_STALE", key, state={signal: _json(last)}))
        return out

    async def _connectivity(self, now: int) -> list[_Finding]:
        """Rule 5: online/offline from telemetry. Besides the key, a transition this
        instance published is not repeated until the identity's row has caught up with
        it (updated_us reaches its ts): new telemetry would otherwise give CONNECTED a
        new key every tick while the first one is still on its way."""
        params = {"now": now, "default_s": self.settings.default_inactivity_timeout_s}
        out = []
        for identity, connected, updated_us, lastseen, lastip, active_us in await self._query(
            _CONNECTIVITY_SQL, params
        ):
            if int(connected):
                kind, trigger = "DISCONNECTED", int(active_us)
                attrs = {"reason": "inactivity"}
                ip = None
            else:
                kind, trigger = "CONNECTED", int(lastseen)
                attrs = {"reason": "telemetry"}
                ip = lastip or None
            inflight = self._inflight.get((identity, kind))
            if inflight is not None:
                if int(updated_us) < inflight:
                    continue
                del self._inflight[(identity, kind)]
            key: Key = (identity, kind, "", trigger)
            out.append(_Finding(identity, kind, key, attributes=attrs, ip=ip))
        return out

    async def _apply_retention(self, definitions: Mapping[str, ResourceDefinition]) -> None:
        """Rule 6: the readings TTL follows the definitions' retention_months. Applied
        when the set changes, and once at the first tick (another instance, or this one
        before a restart, may have left a different TTL)."""
        rules = frozenset(
            (name, d.retention_months) for name, d in definitions.items() if d.retention_months
        )
        if rules == self._retention:
            return
        if rules:
            await self._query(retention_sql(rules))
        elif self._retention or await self._has_ttl():
            await self._query(REMOVE_TTL_SQL)
        self._retention = rules
        log.info("identity watch: readings retention now %s", sorted(rules) or "unlimited")

    async def _has_ttl(self) -> bool:
        rows = await self._query("SHOW CREATE TABLE millrace.readings")
        return any("\nTTL " in str(r[0]) for r in rows)
