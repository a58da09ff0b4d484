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
* The kinds (when an input wants a side, when the clear condition holds) are described
  in ``pipeline.alarms.kinds``.
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

The snapshot holds the rules and, per key, only the fields above; the timer's heap and
the match caches are rebuilt from it. The parts: ``ids`` (alarm ids, the AlarmEvent),
``tracks`` (a key's state), ``kinds`` (judging one input), ``timer`` (the state machine
and its deadlines); this module routes inputs to keys and handles rule lifecycles. It
is a little over 400 lines because this docstring carries the whole model in one place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from millrace.pipeline.alarms import kinds
from millrace.pipeline.alarms.ids import Event, alarm_event, alarm_id, avro_scalar
from millrace.pipeline.alarms.kinds import SIGNAL_KINDS, Kind
from millrace.pipeline.alarms.rules import AlarmRule, parse_rule
from millrace.pipeline.alarms.timer import AlarmTimer, cleared, deadline
from millrace.pipeline.alarms.tracks import UNSET, CompiledRule, Track
from millrace.pipeline.telemetry_columns import iter_samples, problem
from millrace.pipeline.timestamps import MAX_TS_US, MIN_TS_US
from millrace.pipeline.topics import ALARMS, IDENTITY, STATUS, TELEMETRY

__all__ = ["UNSET", "Evaluator", "alarm_event", "alarm_id", "avro_scalar"]

SNAPSHOT_VERSION = 1
#: identities whose rule matches are cached; past this the cache starts over
_MATCH_CACHE_MAX = 200_000

#: readings are judged only inside the events' time range (``pipeline.timestamps``) and
#: at most this far past the batch's receive time
FUTURE_SLACK_US = 86_400 * 1_000_000


class Evaluator:
    """The pure alarm evaluator (see the module doc).

    ``on_event(topic, value)`` takes decoded events of the ``alarms``, ``telemetry``,
    ``identity`` and ``status`` topics; ``advance(now_us)`` fires deadlines up to
    ``now_us``; both return AlarmEvent dicts. ``snapshot()`` is the whole state as JSON
    and ``Evaluator(snapshot)`` continues exactly where it was taken.
    """

    def __init__(self, snapshot: str | None = None) -> None:
        self._rules: dict[str, CompiledRule] = {}
        self._models: dict[str, AlarmRule] = {}
        #: rule id -> generation of its latest definition, kept after removal
        self._gens: dict[str, int] = {}
        #: identity (or resource id) -> rule id -> state
        self._tracks: dict[str, dict[str, Track]] = {}
        self._timer = AlarmTimer()
        #: signal -> enabled rules watching it (every signal kind)
        self._by_signal: dict[str, tuple[CompiledRule, ...]] = {}
        self._resource_rules: tuple[CompiledRule, ...] = ()
        #: identity -> signal -> (rule, handler) of the rules matching it (a cache)
        self._matched: dict[str, dict[str, tuple[tuple[CompiledRule, Kind], ...]]] = {}
        self._resource_matched: dict[tuple[str, str], tuple[CompiledRule, ...]] = {}
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
        return self._timer.advance(now_us, self._tracks, self._rules)

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
            self._rules[rule.id] = CompiledRule(rule, self._gens[rule.id])
        self._reindex()
        for identity, rule_id, fields in data["tracks"]:
            r = self._rules[rule_id]
            tr = Track.load(fields)
            tr.due = deadline(r, tr)
            self._tracks.setdefault(identity, {})[rule_id] = tr
            self._timer.queue(rule_id, identity, tr)
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
        new = CompiledRule(rule, self._gens[rule.id])
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

        def gone(identity: str, tr: Track) -> bool:
            if rule.kind == "resource_deviation":
                return not rule.matches_resource(identity, tr.service)
            return not rule.matches_identity(identity)

        out = self._clear_keys(old, ts, f"rule {rule.id} redefined: no longer watches it", gone)
        for identity in sorted(self._tracks):
            tr = self._tracks[identity].get(rule.id)
            if tr is not None:
                if rule.kind != "stale":
                    tr.raise_side = tr.raise_since = tr.clear_since = None
                tr.due = deadline(new, tr)
                self._timer.queue(rule.id, identity, tr)
        return out

    def _clear_keys(
        self,
        r: CompiledRule,
        ts: int,
        note: str,
        which: Callable[[str, Track], bool],
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

    def _reset(self, r: CompiledRule, identity: str, tr: Track, ts: int, note: str) -> list[Event]:
        out = []
        if tr.alarm is not None:
            tr.seen = max(ts, tr.seen)  # nothing older may raise after this CLEARED
            out.append(cleared(r, identity, tr, tr.seen, None, note))
        tr.reset()
        return out

    def _reindex(self) -> None:
        by_signal: dict[str, list[CompiledRule]] = {}
        resource: list[CompiledRule] = []
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

    def _watching(self, identity: str) -> dict[str, tuple[tuple[CompiledRule, Kind], ...]]:
        matched = self._matched.get(identity)
        if matched is None:
            if len(self._matched) >= _MATCH_CACHE_MAX:
                self._matched.clear()
            matched = self._matched[identity] = {}
        return matched

    def _match(
        self,
        identity: str,
        signal: str,
        matched: dict[str, tuple[tuple[CompiledRule, Kind], ...]],
    ) -> tuple[tuple[CompiledRule, Kind], ...]:
        found = tuple(
            (r, SIGNAL_KINDS[r.kind])
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
        judge = self._timer.judge
        tracks: dict[str, Track] | None = None
        received = batch.get("received_us")
        # a reading dated past the receive time (+ a day of clock skew) would hold
        # back every later reading of the device as "out of order": not judged
        latest = (received if received.__class__ is int else MAX_TS_US) + FUTURE_SLACK_US
        if problem(batch) is not None:  # the telemetry fold dead-letters it
            return []
        for ts, quality, values in iter_samples(batch):
            if quality:
                self.stats["bad_quality"] += 1
                continue
            if not MIN_TS_US <= ts < MAX_TS_US or ts > latest:
                self.stats["future_or_invalid_ts"] = self.stats.get("future_or_invalid_ts", 0) + 1
                continue
            for signal, value in values.items():
                if signal not in by_signal:
                    continue
                rules = matched.get(signal)
                if rules is None:
                    rules = self._match(identity, signal, matched)
                for r, kind in rules:
                    if tracks is None:
                        tracks = self._tracks.setdefault(identity, {})
                    tr = self._track_at(tracks, r, identity, ts, out)
                    if tr is not None:
                        verdict = kind(r, tr, ts, value)
                        if verdict is not None:
                            judge(r, identity, tr, ts, verdict, out)
        return out

    def _track_at(
        self, tracks: dict[str, Track], r: CompiledRule, key: str, ts: int, out: list[Event]
    ) -> Track | None:
        """The key's track brought to event time ``ts`` (deadlines up to it fired into
        ``out``); None when ``ts`` is older than what the key has seen (ignored)."""
        tr = tracks.get(r.id)
        if tr is None:
            tr = tracks[r.id] = Track(ts)
        elif ts < tr.seen:
            self.stats["out_of_order"] += 1
            return None
        if tr.due is not None and tr.due <= ts:
            self._timer.settle(r, key, tr, ts, out)
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
                    tr = tracks[r.id] = Track(ts)
                at = max(ts, tr.seen)
                if tr.due is not None and tr.due <= at:
                    self._timer.settle(r, identity, tr, at, out)
                if kind == "STATE_SET":
                    tr.desired = value
                else:
                    tr.value = value
                self._timer.judge(r, identity, tr, at, kinds.deviation(tr), out)
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
            self._timer.judge(r, resource, tr, ts, kinds.resource_deviation(tr), out)
        return out


def _every(_identity: str, _tr: Track) -> bool:
    return True
