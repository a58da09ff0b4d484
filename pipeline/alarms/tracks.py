"""The evaluator's per-key state: a rule compiled for evaluation and the track of one
alarm key (rule, identity); see ``pipeline.alarms.evaluator`` for the model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from millrace.pipeline.alarms.rules import AlarmRule

US = 1_000_000


def us(seconds: float) -> int:
    return round(seconds * US)


class _Unset:
    """No value (distinct from a reported JSON null)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


class CompiledRule:
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
        self.on_us = us(rule.for_s if deviation else rule.on_delay_s)
        self.off_us = 0 if rule.kind == "stale" else us(rule.off_delay_s)
        self.timeout = us(rule.timeout_s or 0)
        self.hi = math.inf if rule.high is None else rule.high
        self.lo = -math.inf if rule.low is None else rule.low
        self.db = rule.deadband
        self.max_rate = rule.max_rate or 0


class Track:
    """The state of one alarm key (see the evaluator's module doc); bounded: no history."""

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
    def load(cls, data: Mapping[str, Any]) -> Track:
        tr = cls(int(data["seen"]))
        for name in cls._SAVED:
            if name in data:
                setattr(tr, name, data[name])
        return tr
