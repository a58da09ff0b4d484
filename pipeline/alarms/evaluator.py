"""The alarm evaluator: a pure fold of rule, telemetry, identity and status events into
RAISED and CLEARED AlarmEvents.

Why a fold with an explicit timer: the runner replays the log after a crash from its
last checkpoint (a :meth:`Evaluator.snapshot`), so the same inputs must give the same
alarms, byte for byte. Nothing here reads a clock; time is the events' time, and
time-based rules (delays, ``stale``, ``deviation``'s ``for_s``) complete either when a
later event of the same alarm key passes their deadline or when the runner calls
:meth:`Evaluator.advance` with its clock. Either way the emitted ``ts_us`` is the
*deadline*, never the clock, and alarm ids derive from (rule, rule generation, identity,
signal, onset), so a re-run emits identical events and the projection folds the
duplicate as a no-op.

The model, per alarm key (rule, identity, signal) — a rule watches one signal, so the key
is (rule id, identity); for ``resource_deviation`` the identity is the resource id and
the signal None:

* At most one active alarm, on one *side* (``high``/``low`` for limits, else the kind).
  Each judged input says which side it wants raised (or none) and whether the active
  alarm's clear condition holds. A wanted side starts a raise timer (``on_delay_s``;
  ``for_s`` for the deviation kinds) that any input not wanting it cancels; a holding
  clear condition starts a clear timer (``off_delay_s``; 0 for ``stale``) that any
  input breaking it cancels. "Held for d" means: no contrary input at a time before
  since + d; an input exactly at the deadline first fires the timer.
* limit: raise when value > high (< low); the active side clears only when value <=
  high - deadband (>= low + deadband); inside the deadband nothing changes, so a value
  flapping there never raises again. A jump from above high to below low clears the high
  alarm (after ``off_delay_s``) and then raises the low one (after ``on_delay_s`` counted
  from the first sample below low, but never before the clear): two alarms, one after
  the other, on the same key. Non-numeric, boolean and non-finite values are not judged.
* rate_of_change: |Δvalue/Δt| of consecutive good numeric samples; the trigger value is
  the rate (units/s). Two samples with the same time are not a pair (the later replaces
  the earlier as reference).
* equals: ``same_value(value, rule.value)`` (True is not 1; 1 == 1.0).
* stale: identities that sent the signal at least once; raised at last_ts + timeout
  (trigger value None), cleared by the next good sample (trigger value = that sample).
* deviation: STATE_SET gives the desired value, telemetry of the signal (and
  STATE_ACKNOWLEDGED) the reported one; deviated while a set value exists and no report
  equals it. resource_deviation: ResourceStatus desired_state != current_state.
* Order: an input older than the last one judged for its key (or than a deadline fired
  for it) is ignored and counted in ``stats["out_of_order"]``, so per key the events are
  in time order and RAISED/CLEARED alternate. Identity and rule events are commands
  stamped by the server, not measurements: an older one is applied at the key's current
  time instead of being dropped.
* Rules: a RULE_DEFINED identical to the rule in force changes nothing (config files
  re-publish their rules on every start). A redefinition keeps active alarms of keys the
  new rule still watches (same kind and signal, identity or resource still matching),
  cancels their pending timers (except ``stale``'s, recomputed from the last sample) and
  re-judges them on the next input; other keys are cleared. Disabling a rule, changing its
  kind or signal and deleting an identity clear the alarms concerned (a CLEARED with a
  note saying why, at the event's time or the key's when later) and reset their keys,
  keeping only the key's time and last onset so nothing older raises afterwards and no
  id repeats. Removing a rule clears its alarms the same way and forgets its keys; a rule
  defined again later is a new *generation* (the time of its RULE_DEFINED), part of its
  alarm ids, so none repeats an id of the removed one.

The timer is a heap of (deadline, rule, identity) holding at most one valid entry per
key, no later than the key's deadline (a later deadline is found when the entry pops),
so a sample costs no heap operation unless it moves a deadline earlier. The snapshot
holds the rules and, per key, only the fields above; the heap and the match caches are
rebuilt from it.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from pipeline.alarms.rules import AlarmRule, parse_rule
from pipeline.identities.resources import same_value
from pipeline.topics import ALARMS, IDENTITY, STATUS, TELEMETRY

SNAPSHOT_VERSION = 1
_US = 1_000_000
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
#: identities whose rule matches are cached; past this the cache starts over
_MATCH_CACHE_MAX = 200_000

Event = dict[str, Any]


#: readings are judged only inside the projections' time range (year 1970..2200) and
#: at most this far past the batch's receive time
MIN_TS_US = 0
MAX_TS_US = 7_258_118_400_000_000
FUTURE_SLACK_US = 86_400 * 1_000_000


def alarm_id(
    rule_id: str, generation: int, identity: str, signal: str | None, onset_us: int, n: int = 0
) -> str:
    """The id of the alarm of (rule, identity, signal) raised at ``onset_us``.

    ``generation`` is the time of the RULE_DEFINED that created the rule (a rule removed
    and defined again is a new generation: its alarms never reuse an old id); ``n``
    counts earlier alarms of the same key raised at the very same time (almost always 0).
    """
    parts: list[Any] = [rule_id, generation, identity, signal, onset_us]
    if n:
        parts.append(n)
    digest = hashlib.sha1(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()
    return "al_" + digest[:20]


def alarm_event(
    type_: str,
    rule: AlarmRule,
    identity: str,
    alarm: str,
    ts_us: int,
    message: str,
    trigger_value: Any,
    note: str | None = None,
) -> Event:
    """A RAISED or CLEARED AlarmEvent (schemas/alarms.avsc, every field)."""
    return {
        "alarm_id": alarm,
        "ts_us": ts_us,
        "type": type_,
        "rule_id": rule.id,
        "rule_type": rule.type_name,
        "identity": identity,
        "signal": None if rule.kind == "resource_deviation" else rule.signal,
        "priority": rule.priority,
        "message": message,
        "trigger_value": avro_scalar(trigger_value),
        "user": None,
        "note": note,
        "requires_ack": rule.requires_ack,
        "definition": None,
    }


def avro_scalar(value: Any) -> Any:
    """``value`` as the trigger_value union (null, boolean, long, double, string):
    lists, objects and integers beyond a long become JSON text."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if _LONG_MIN <= value <= _LONG_MAX else str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _number(v: Any) -> bool:
    """A value the numeric kinds judge: int or finite float, not bool."""
    t = v.__class__
    return t is int or (t is float and math.isfinite(v))


def _us(seconds: float) -> int:
    return round(seconds * _US)


class _Unset:
    """No value (distinct from a reported JSON null)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


class _Rule:
    """A rule with what evaluation needs precomputed."""

    __slots__ = (
        "db",
        "gen",
        "hi",
        "id",
        "kind",
        "lo",
        "max_rate",
        "off_us",
        "on_us",
        "rule",
        "timeout",
    )

    def __init__(self, rule: AlarmRule, gen: int) -> None:
        self.rule = rule
        self.gen = gen
        self.id = rule.id
        self.kind = rule.kind
        deviation = rule.kind in ("deviation", "resource_deviation")
        self.on_us = _us(rule.for_s if deviation else rule.on_delay_s)
        self.off_us = 0 if rule.kind == "stale" else _us(rule.off_delay_s)
        self.timeout = _us(rule.timeout_s or 0)
        self.hi = math.inf if rule.high is None else rule.high
        self.lo = -math.inf if rule.low is None else rule.low
        self.db = rule.deadband
        self.max_rate = rule.max_rate or 0


class _Track:
    """The state of one alarm key (see the module doc); bounded: no history."""

    __slots__ = (
        "alarm",
        "clear_since",
        "desired",
        "due",
        "n",
        "onset",
        "queued",
        "raise_side",
        "raise_since",
        "seen",
        "service",
        "shown",
        "side",
        "ts",
        "value",
    )

    def __init__(self, seen: int) -> None:
        self.seen = seen  # time of the last input judged or deadline fired
        self.ts: int | None = None  # time of the last sample (rate, stale)
        self.value: Any = UNSET  # last sample / reported value
        self.desired: Any = UNSET  # deviation kinds: the set / desired value
        self.shown: Any = None  # what a timer-fired event reports (value, rate)
        self.service = ""  # resource_deviation: the resource's service
        self.side: str | None = None  # side of the active alarm
        self.alarm: str | None = None  # id of the active alarm
        self.onset: int | None = None  # ts of the last RAISED
        self.n = 0  # alarms of this key raised at ``onset`` before the last one
        self.raise_side: str | None = None
        self.raise_since: int | None = None
        self.clear_since: int | None = None
        self.due: int | None = None  # next deadline (derived)
        self.queued: int | None = None  # deadline of this key's valid timer entry

    _SAVED = (
        "seen",
        "ts",
        "value",
        "desired",
        "shown",
        "service",
        "side",
        "alarm",
        "onset",
        "n",
        "raise_side",
        "raise_since",
        "clear_since",
    )

    def dump(self) -> dict[str, Any]:
        out = {}
        for name in self._SAVED:
            v = getattr(self, name)
            if v is UNSET or (v is None and name not in ("value", "desired")):
                continue  # value/desired: absent = unset, null = a JSON null
            if (name == "service" and v == "") or (name == "n" and v == 0):
                continue
            out[name] = v
        return out

    def reset(self) -> None:
        """Forget the alarm and the condition; keep what keeps ids unique and events in
        order (``seen``, ``onset``, ``n``)."""
        self.ts = self.raise_since = self.clear_since = self.due = None
        self.value = self.desired = UNSET
        self.shown = self.side = self.alarm = self.raise_side = None

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> _Track:
        tr = cls(int(data["seen"]))
        for name in cls._SAVED:
            if name in data:
                setattr(tr, name, data[name])
        return tr


Handler = Callable[[_Rule, str, _Track, int, Any, list[Event]], None]


class Evaluator:
    """The pure alarm evaluator (see the module doc).

    ``on_event(topic, value)`` takes decoded events of the ``alarms``, ``telemetry``,
    ``identity`` and ``status`` topics; ``advance(now_us)`` fires deadlines up to
    ``now_us``; both return AlarmEvent dicts. ``snapshot()`` is the whole state as JSON
    and ``Evaluator(snapshot)`` continues exactly where it was taken.
    """

    def __init__(self, snapshot: str | None = None) -> None:
        self._rules: dict[str, _Rule] = {}
        self._models: dict[str, AlarmRule] = {}
        #: rule id -> generation of its latest definition, kept after removal
        self._gens: dict[str, int] = {}
        #: identity (or resource id) -> rule id -> state
        self._tracks: dict[str, dict[str, _Track]] = {}
        #: (deadline, rule id, identity); lazily invalidated (see _queue)
        self._heap: list[tuple[int, str, str]] = []
        #: signal -> enabled rules watching it (every signal kind)
        self._by_signal: dict[str, tuple[_Rule, ...]] = {}
        self._resource_rules: tuple[_Rule, ...] = ()
        #: identity -> signal -> (rule, handler) of the rules matching it (a cache)
        self._matched: dict[str, dict[str, tuple[tuple[_Rule, Handler], ...]]] = {}
        self._resource_matched: dict[tuple[str, str], tuple[_Rule, ...]] = {}
        self._handlers: dict[str, Handler] = {
            "limit": self._limit,
            "rate_of_change": self._rate,
            "equals": self._equals,
            "stale": self._stale,
            "deviation": self._report,
        }
        self.stats: dict[str, int] = {
            "out_of_order": 0,
            "bad_quality": 0,
            "bad_rules": 0,
            "bad_states": 0,
        }
        if snapshot:
            self._restore(snapshot)

    # -- the interface ---------------------------------------------------------------

    @property
    def rules(self) -> Mapping[str, AlarmRule]:
        """The rules in force (disabled ones included), by id."""
        return MappingProxyType(self._models)

    @property
    def watches_telemetry(self) -> bool:
        """Whether any enabled rule judges telemetry (a runner may skip decoding it)."""
        return bool(self._by_signal)

    def on_event(self, topic: str, value: Mapping[str, Any]) -> list[Event]:
        if topic == TELEMETRY:
            return self._telemetry(value)
        if topic == ALARMS:
            return self._rule_event(value)
        if topic == IDENTITY:
            return self._identity(value)
        if topic == STATUS:
            return self._status(value)
        return []

    def advance(self, now_us: int) -> list[Event]:
        """Fire every deadline at or before ``now_us``, in (deadline, rule, identity)
        order; the events carry their deadline as ts_us."""
        out: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now_us:
            deadline, rule_id, identity = heapq.heappop(heap)
            tr = self._tracks.get(identity, {}).get(rule_id)
            if tr is None or tr.queued != deadline:
                continue  # superseded entry
            tr.queued = None
            if tr.due is None:
                continue
            if tr.due > deadline:  # the deadline moved on; wait for it in order
                self._queue(rule_id, identity, tr)
                continue
            self._fire(self._rules[rule_id], identity, tr, out)
            self._queue(rule_id, identity, tr)
        return out

    def snapshot(self) -> str:
        tracks = [
            [identity, rule_id, tr.dump()]
            for identity in sorted(self._tracks)
            for rule_id, tr in sorted(self._tracks[identity].items())
        ]
        return json.dumps(
            {
                "version": SNAPSHOT_VERSION,
                "rules": [self._models[k].model_dump(mode="json") for k in sorted(self._models)],
                "generations": dict(sorted(self._gens.items())),
                "tracks": tracks,
                "stats": self.stats,
            },
            separators=(",", ":"),
        )

    # -- snapshot --------------------------------------------------------------------

    def _restore(self, text: str) -> None:
        data = json.loads(text)
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown evaluator snapshot version {data.get('version')!r}")
        self._gens = {str(k): int(v) for k, v in data["generations"].items()}
        for raw in data["rules"]:
            rule = parse_rule(raw)
            self._models[rule.id] = rule
            self._rules[rule.id] = _Rule(rule, self._gens[rule.id])
        self._reindex()
        for identity, rule_id, fields in data["tracks"]:
            r = self._rules[rule_id]
            tr = _Track.load(fields)
            tr.due = self._deadline(r, tr)
            self._tracks.setdefault(identity, {})[rule_id] = tr
            self._queue(rule_id, identity, tr)
        self.stats.update(data.get("stats") or {})

    # -- rules -----------------------------------------------------------------------

    def _rule_event(self, ev: Mapping[str, Any]) -> list[Event]:
        kind = ev.get("type")
        ts = int(ev.get("ts_us") or 0)
        if kind == "RULE_DEFINED":
            try:
                rule = parse_rule(ev.get("definition") or "")
            except ValueError:  # RuleError, pydantic's ValidationError
                self.stats["bad_rules"] += 1
                return []
            if ev.get("rule_id") not in (None, rule.id):  # the projection refuses it too
                self.stats["bad_rules"] += 1
                return []
            return self._define(rule, ts)
        if kind == "RULE_REMOVED":
            rule_id = str(ev.get("rule_id") or ev.get("alarm_id") or "")
            old = self._rules.pop(rule_id, None)
            if old is None:
                return []
            del self._models[rule_id]
            self._reindex()
            return self._clear_keys(old, ts, f"rule {rule_id} removed", _every, forget=True)
        return []

    def _define(self, rule: AlarmRule, ts: int) -> list[Event]:
        old = self._rules.get(rule.id)
        if old is not None and old.rule == rule:
            return []
        if old is None:
            prev = self._gens.get(rule.id)
            self._gens[rule.id] = ts if prev is None else max(ts, prev + 1)
        new = _Rule(rule, self._gens[rule.id])
        self._rules[rule.id] = new
        self._models[rule.id] = rule
        self._reindex()
        if old is None:
            return []
        if not rule.enabled:
            return self._clear_keys(old, ts, f"rule {rule.id} disabled", _every)
        if old.kind != rule.kind or old.rule.signal != rule.signal:
            what = "signal" if old.kind == rule.kind else "kind"
            note = f"rule {rule.id} redefined: it watches another {what}"
            return self._clear_keys(old, ts, note, _every)

        def gone(identity: str, tr: _Track) -> bool:
            if rule.kind == "resource_deviation":
                return not rule.matches_resource(identity, tr.service)
            return not rule.matches_identity(identity)

        out = self._clear_keys(old, ts, f"rule {rule.id} redefined: no longer watches it", gone)
        for identity in sorted(self._tracks):
            tr = self._tracks[identity].get(rule.id)
            if tr is not None:
                if rule.kind != "stale":
                    tr.raise_side = tr.raise_since = tr.clear_since = None
                tr.due = self._deadline(new, tr)
                self._queue(rule.id, identity, tr)
        return out

    def _clear_keys(
        self,
        r: _Rule,
        ts: int,
        note: str,
        which: Callable[[str, _Track], bool],
        forget: bool = False,
    ) -> list[Event]:
        """Clear the active alarms of the keys of ``r`` that ``which`` selects, with
        ``note``, at ``ts`` (or the key's time when later); then reset those keys, or
        ``forget`` them (the rule is gone; its next generation has other alarm ids)."""
        out: list[Event] = []
        for identity in sorted(self._tracks):
            tracks = self._tracks[identity]
            tr = tracks.get(r.id)
            if tr is None or not which(identity, tr):
                continue
            out.extend(self._reset(r, identity, tr, ts, note))
            if forget:
                del tracks[r.id]
                if not tracks:
                    del self._tracks[identity]
        return out

    def _reset(self, r: _Rule, identity: str, tr: _Track, ts: int, note: str) -> list[Event]:
        out = []
        if tr.alarm is not None:
            tr.seen = max(ts, tr.seen)  # nothing older may raise after this CLEARED
            out.append(self._cleared(r, identity, tr, tr.seen, None, note))
        tr.reset()
        return out

    def _reindex(self) -> None:
        by_signal: dict[str, list[_Rule]] = {}
        resource: list[_Rule] = []
        for rule_id in sorted(self._rules):
            r = self._rules[rule_id]
            if not r.rule.enabled:
                continue
            if r.kind == "resource_deviation":
                resource.append(r)
            elif r.rule.signal:
                by_signal.setdefault(r.rule.signal, []).append(r)
        self._by_signal = {s: tuple(rs) for s, rs in by_signal.items()}
        self._resource_rules = tuple(resource)
        self._matched.clear()
        self._resource_matched.clear()

    def _watching(self, identity: str) -> dict[str, tuple[tuple[_Rule, Handler], ...]]:
        matched = self._matched.get(identity)
        if matched is None:
            if len(self._matched) >= _MATCH_CACHE_MAX:
                self._matched.clear()
            matched = self._matched[identity] = {}
        return matched

    def _match(
        self, identity: str, signal: str, matched: dict[str, tuple[tuple[_Rule, Handler], ...]]
    ) -> tuple[tuple[_Rule, Handler], ...]:
        found = tuple(
            (r, self._handlers[r.kind])
            for r in self._by_signal.get(signal, ())
            if r.rule.matches_identity(identity)
        )
        matched[signal] = found
        return found

    # -- inputs ----------------------------------------------------------------------

    def _telemetry(self, batch: Mapping[str, Any]) -> list[Event]:
        by_signal = self._by_signal
        identity = batch.get("identity")
        if not by_signal or not isinstance(identity, str):
            return []
        out: list[Event] = []
        matched = self._watching(identity)
        tracks: dict[str, _Track] | None = None
        received = batch.get("received_us")
        # a reading dated past the receive time (+ a day of clock skew) would hold
        # back every later reading of the device as "out of order": not judged
        latest = (received if received.__class__ is int else MAX_TS_US) + FUTURE_SLACK_US
        for sample in batch.get("samples") or ():
            if sample.get("quality", 0):
                self.stats["bad_quality"] += 1
                continue
            ts = sample.get("ts_us")
            if ts.__class__ is not int:
                continue
            if not MIN_TS_US <= ts < MAX_TS_US or ts > latest:
                self.stats["future_or_invalid_ts"] = self.stats.get("future_or_invalid_ts", 0) + 1
                continue
            for signal, value in (sample.get("values") or {}).items():
                if signal not in by_signal:
                    continue
                rules = matched.get(signal)
                if rules is None:
                    rules = self._match(identity, signal, matched)
                for r, handler in rules:
                    if tracks is None:
                        tracks = self._tracks.setdefault(identity, {})
                    tr = self._track_at(tracks, r, identity, ts, out)
                    if tr is not None:
                        handler(r, identity, tr, ts, value, out)
        return out

    def _track_at(
        self, tracks: dict[str, _Track], r: _Rule, key: str, ts: int, out: list[Event]
    ) -> _Track | None:
        """The key's track brought to event time ``ts`` (deadlines up to it fired into
        ``out``); None when ``ts`` is older than what the key has seen (ignored)."""
        tr = tracks.get(r.id)
        if tr is None:
            tr = tracks[r.id] = _Track(ts)
        elif ts < tr.seen:
            self.stats["out_of_order"] += 1
            return None
        if tr.due is not None and tr.due <= ts:
            self._settle(r, key, tr, ts, out)
        return tr

    def _identity(self, ev: Mapping[str, Any]) -> list[Event]:
        kind = ev.get("type")
        identity = ev.get("identity")
        if not isinstance(identity, str):
            return []
        ts = int(ev.get("ts_us") or 0)
        out: list[Event] = []
        if kind == "DELETED":
            tracks = self._tracks.get(identity, {})
            for rule_id in sorted(tracks):
                r = self._rules[rule_id]
                if r.kind != "resource_deviation":
                    out.extend(
                        self._reset(
                            r, identity, tracks[rule_id], ts, f"identity {identity} deleted"
                        )
                    )
            return out
        if kind not in ("STATE_SET", "STATE_ACKNOWLEDGED"):
            return out
        matched = self._watching(identity)
        for resource, text in sorted((ev.get("state") or {}).items()):
            if resource not in self._by_signal:
                continue
            rules = matched.get(resource)
            if rules is None:
                rules = self._match(identity, resource, matched)
            deviation = [r for r, _ in rules if r.kind == "deviation"]
            if not deviation:
                continue
            try:
                value = json.loads(text)
            except (TypeError, ValueError):
                self.stats["bad_states"] += 1
                continue
            tracks = self._tracks.setdefault(identity, {})
            for r in deviation:
                tr = tracks.get(r.id)
                if tr is None:
                    tr = tracks[r.id] = _Track(ts)
                at = max(ts, tr.seen)
                if tr.due is not None and tr.due <= at:
                    self._settle(r, identity, tr, at, out)
                if kind == "STATE_SET":
                    tr.desired = value
                else:
                    tr.value = value
                self._judge_deviation(r, identity, tr, at, out)
        return out

    def _status(self, ev: Mapping[str, Any]) -> list[Event]:
        if not self._resource_rules:
            return []
        resource = ev.get("resource_id")
        service = ev.get("service_id") or ""
        ts = ev.get("ts_us")
        if not isinstance(resource, str) or not isinstance(ts, int):
            return []
        rules = self._resource_matched.get((resource, service))
        if rules is None:
            if len(self._resource_matched) >= _MATCH_CACHE_MAX:
                self._resource_matched.clear()
            rules = tuple(
                r for r in self._resource_rules if r.rule.matches_resource(resource, service)
            )
            self._resource_matched[(resource, service)] = rules
        out: list[Event] = []
        for r in rules:
            tr = self._track_at(self._tracks.setdefault(resource, {}), r, resource, ts, out)
            if tr is None:
                continue
            tr.service = service
            tr.desired = ev.get("desired_state")
            tr.value = ev.get("current_state")
            deviated = tr.desired != tr.value
            side = "deviation" if deviated else None
            self._judge(r, resource, tr, ts, side, not deviated, tr.value, out)
        return out

    # -- the kinds -------------------------------------------------------------------

    def _limit(
        self, r: _Rule, identity: str, tr: _Track, ts: int, v: Any, out: list[Event]
    ) -> None:
        if not _number(v):
            return
        side = tr.side
        if side is None and tr.raise_side is None and r.lo <= v <= r.hi:
            tr.seen = ts  # the common case: nothing active, nothing pending, in range
            tr.shown = v
            return
        want = "high" if v > r.hi else "low" if v < r.lo else None
        if side == "high":
            clear_ok = v <= r.hi - r.db
        elif side == "low":
            clear_ok = v >= r.lo + r.db
        else:
            clear_ok = False
        self._judge(r, identity, tr, ts, want, clear_ok, v, out)

    def _rate(self, r: _Rule, identity: str, tr: _Track, ts: int, v: Any, out: list[Event]) -> None:
        if not _number(v):
            return
        prev_ts, prev = tr.ts, tr.value
        tr.ts, tr.value = ts, v
        if prev_ts is None or ts <= prev_ts:
            tr.seen = ts
            return
        rate = (v - prev) * _US / (ts - prev_ts)
        fast = abs(rate) > r.max_rate
        self._judge(r, identity, tr, ts, "rate" if fast else None, not fast, rate, out)

    def _equals(
        self, r: _Rule, identity: str, tr: _Track, ts: int, v: Any, out: list[Event]
    ) -> None:
        hit = same_value(v, r.rule.value)
        if not hit and tr.side is None and tr.raise_side is None:
            tr.seen = ts
            tr.shown = v
            return
        self._judge(r, identity, tr, ts, "equals" if hit else None, not hit, v, out)

    def _stale(
        self, r: _Rule, identity: str, tr: _Track, ts: int, v: Any, out: list[Event]
    ) -> None:
        tr.ts = ts
        tr.value = v
        self._judge(r, identity, tr, ts, None, True, v, out)

    def _report(
        self, r: _Rule, identity: str, tr: _Track, ts: int, v: Any, out: list[Event]
    ) -> None:
        tr.value = v
        self._judge_deviation(r, identity, tr, ts, out)

    def _judge_deviation(
        self, r: _Rule, identity: str, tr: _Track, ts: int, out: list[Event]
    ) -> None:
        deviated = tr.desired is not UNSET and (
            tr.value is UNSET or not same_value(tr.desired, tr.value)
        )
        shown = None if tr.value is UNSET else tr.value
        self._judge(
            r, identity, tr, ts, "deviation" if deviated else None, not deviated, shown, out
        )

    # -- the state machine -----------------------------------------------------------

    def _judge(
        self,
        r: _Rule,
        identity: str,
        tr: _Track,
        ts: int,
        want: str | None,
        clear_ok: bool,
        shown: Any,
        out: list[Event],
    ) -> None:
        """Apply one input at ``ts`` (due timers already fired): ``want`` is the side it
        would raise, ``clear_ok`` whether the active alarm's clear condition holds."""
        tr.seen = ts
        tr.shown = shown
        if tr.side is None or not clear_ok:
            tr.clear_since = None
        elif tr.clear_since is None:
            tr.clear_since = ts
        if want is None or want == tr.side:
            tr.raise_side = tr.raise_since = None
        elif want != tr.raise_side:
            tr.raise_side, tr.raise_since = want, ts
        tr.due = self._deadline(r, tr)
        if tr.due is not None:
            if tr.due <= ts:
                self._settle(r, identity, tr, ts, out)
            else:
                self._queue(r.id, identity, tr)

    @staticmethod
    def _deadline(r: _Rule, tr: _Track) -> int | None:
        if tr.side is not None:
            return None if tr.clear_since is None else tr.clear_since + r.off_us
        if r.kind == "stale":
            return None if tr.ts is None else tr.ts + r.timeout
        if tr.raise_side is not None and tr.raise_since is not None:
            return max(tr.raise_since + r.on_us, tr.seen)
        return None

    def _settle(self, r: _Rule, identity: str, tr: _Track, now: int, out: list[Event]) -> None:
        """Fire every transition of ``tr`` due at or before ``now``."""
        while tr.due is not None and tr.due <= now:
            self._fire(r, identity, tr, out)
        self._queue(r.id, identity, tr)

    def _queue(self, rule_id: str, identity: str, tr: _Track) -> None:
        """Make sure the timer holds an entry no later than ``tr.due``: entries are only
        added when the deadline moves earlier; a later one is found on pop (advance)."""
        due = tr.due
        if due is not None and (tr.queued is None or due < tr.queued):
            tr.queued = due
            heapq.heappush(self._heap, (due, rule_id, identity))

    def _fire(self, r: _Rule, identity: str, tr: _Track, out: list[Event]) -> None:
        """The transition due at ``tr.due``: clear the active alarm, or raise."""
        at = tr.due
        assert at is not None
        if tr.side is not None:
            out.append(self._cleared(r, identity, tr, at, tr.shown, None))
            tr.side = tr.alarm = tr.clear_since = None
        else:
            side = "stale" if r.kind == "stale" else tr.raise_side
            tr.n = tr.n + 1 if at == tr.onset else 0
            tr.onset = at
            signal = None if r.kind == "resource_deviation" else r.rule.signal
            tr.alarm = alarm_id(r.id, r.gen, identity, signal, at, tr.n)
            tr.side = side
            tr.raise_side = tr.raise_since = tr.clear_since = None
            trigger = None if r.kind == "stale" else tr.shown
            message = self._message(r, identity, tr, side, tr.shown)
            out.append(alarm_event("RAISED", r.rule, identity, tr.alarm, at, message, trigger))
        if at > tr.seen:
            tr.seen = at
        tr.due = self._deadline(r, tr)

    def _cleared(
        self, r: _Rule, identity: str, tr: _Track, ts: int, trigger: Any, note: str | None
    ) -> Event:
        assert tr.alarm is not None
        message = self._message(r, identity, tr, tr.side, tr.shown)
        return alarm_event("CLEARED", r.rule, identity, tr.alarm, ts, message, trigger, note)

    @staticmethod
    def _message(r: _Rule, identity: str, tr: _Track, side: str | None, value: Any) -> str:
        rule = r.rule
        limit: Any
        if r.kind == "limit":
            limit = rule.high if side == "high" else rule.low
        elif r.kind == "rate_of_change":
            limit = rule.max_rate
        elif r.kind == "stale":
            limit = rule.timeout_s
        elif r.kind == "equals":
            limit = rule.value
        else:
            limit = None if tr.desired is UNSET else tr.desired
        signal = None if r.kind == "resource_deviation" else rule.signal
        return rule.render(identity, signal, avro_scalar(value), avro_scalar(limit))


def _every(_identity: str, _tr: _Track) -> bool:
    return True
