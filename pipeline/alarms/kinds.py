"""The rule kinds: how one input of an alarm key is judged.

A kind looks at one input (a sample's value, or a reported/desired state already stored
on the track) and returns a *verdict* ``(want, clear_ok, shown)``: the side the input
would raise (or None), whether the active alarm's clear condition holds, and the value a
later timer-fired event reports. None means the input changes nothing but the key's
time (the common case, decided without the state machine). The timer
(``pipeline.alarms.timer``) applies verdicts; the evaluator's module doc has the model.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from millrace.pipeline.alarms.ids import avro_scalar
from millrace.pipeline.alarms.tracks import UNSET, US, CompiledRule, Track
from millrace.pipeline.identities.resources import same_value

Verdict = tuple[str | None, bool, Any]
#: judges one sample value of a signal the rule watches
Kind = Callable[[CompiledRule, Track, int, Any], Verdict | None]


def _number(v: Any) -> bool:
    """A value the numeric kinds judge: int or finite float, not bool."""
    t = v.__class__
    return t is int or (t is float and math.isfinite(v))


def limit(r: CompiledRule, tr: Track, ts: int, v: Any) -> Verdict | None:
    if not _number(v):
        return None
    side = tr.side
    if side is None and tr.raise_side is None and r.lo <= v <= r.hi:
        tr.seen = ts  # the common case: nothing active, nothing pending, in range
        tr.shown = v
        return None
    want = "high" if v > r.hi else "low" if v < r.lo else None
    if side == "high":
        clear_ok = v <= r.hi - r.db
    elif side == "low":
        clear_ok = v >= r.lo + r.db
    else:
        clear_ok = False
    return want, clear_ok, v


def rate_of_change(r: CompiledRule, tr: Track, ts: int, v: Any) -> Verdict | None:
    if not _number(v):
        return None
    prev_ts, prev = tr.ts, tr.value
    tr.ts, tr.value = ts, v
    if prev_ts is None or ts <= prev_ts:
        tr.seen = ts
        return None
    rate = (v - prev) * US / (ts - prev_ts)
    fast = abs(rate) > r.max_rate
    return "rate" if fast else None, not fast, rate


def equals(r: CompiledRule, tr: Track, ts: int, v: Any) -> Verdict | None:
    hit = same_value(v, r.rule.value)
    if not hit and tr.side is None and tr.raise_side is None:
        tr.seen = ts
        tr.shown = v
        return None
    return "equals" if hit else None, not hit, v


def stale(r: CompiledRule, tr: Track, ts: int, v: Any) -> Verdict | None:
    tr.ts = ts
    tr.value = v
    return None, True, v


def reported(r: CompiledRule, tr: Track, ts: int, v: Any) -> Verdict | None:
    """deviation: telemetry of the signal is the reported value."""
    tr.value = v
    return deviation(tr)


def deviation(tr: Track) -> Verdict:
    """deviation: deviated while a set value exists and no report equals it."""
    deviated = tr.desired is not UNSET and (
        tr.value is UNSET or not same_value(tr.desired, tr.value)
    )
    shown = None if tr.value is UNSET else tr.value
    return "deviation" if deviated else None, not deviated, shown


def resource_deviation(tr: Track) -> Verdict:
    """resource_deviation: the status's desired state differs from its current one."""
    deviated = tr.desired != tr.value
    return "deviation" if deviated else None, not deviated, tr.value


#: the kinds judged on telemetry, by rule kind
SIGNAL_KINDS: dict[str, Kind] = {
    "limit": limit,
    "rate_of_change": rate_of_change,
    "equals": equals,
    "stale": stale,
    "deviation": reported,
}


def message(r: CompiledRule, identity: str, tr: Track, side: str | None, value: Any) -> str:
    """The rule's message for the alarm of ``identity`` on ``side``."""
    rule = r.rule
    bound: Any
    if r.kind == "limit":
        bound = rule.high if side == "high" else rule.low
    elif r.kind == "rate_of_change":
        bound = rule.max_rate
    elif r.kind == "stale":
        bound = rule.timeout_s
    elif r.kind == "equals":
        bound = rule.value
    else:
        bound = None if tr.desired is UNSET else tr.desired
    signal = None if r.kind == "resource_deviation" else rule.signal
    return rule.render(identity, signal, avro_scalar(value), avro_scalar(bound))
