"""The state machine of one alarm key and the timer of its deadlines.

Per key, a judged input (a verdict of ``pipeline.alarms.kinds``) starts or cancels the
raise timer (``on_delay_s``; ``for_s`` for the deviation kinds) and the clear timer
(``off_delay_s``; 0 for ``stale``); a timer whose deadline passes fires a RAISED or a
CLEARED stamped with the *deadline*, never the clock.

The timer is a heap of (deadline, rule, identity) holding at most one valid entry per
key, no later than the key's deadline (a later deadline is found when the entry pops),
so a sample costs no heap operation unless it moves a deadline earlier. The heap is not
saved: the evaluator rebuilds it from the tracks (``queue``) when it restores.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import Any

from millrace.pipeline.alarms.ids import Event, alarm_event, alarm_id
from millrace.pipeline.alarms.kinds import Verdict, message
from millrace.pipeline.alarms.tracks import CompiledRule, Track


def deadline(r: CompiledRule, tr: Track) -> int | None:
    """The key's next transition time, or None when nothing is pending."""
    if tr.side is not None:
        return None if tr.clear_since is None else tr.clear_since + r.off_us
    if r.kind == "stale":
        return None if tr.ts is None else tr.ts + r.timeout
    if tr.raise_side is not None and tr.raise_since is not None:
        return max(tr.raise_since + r.on_us, tr.seen)
    return None


class AlarmTimer:
    """The deadlines of every key and the transitions they fire."""

    def __init__(self) -> None:
        #: (deadline, rule id, identity); lazily invalidated (see queue)
        self.heap: list[tuple[int, str, str]] = []

    def advance(
        self,
        now_us: int,
        tracks: Mapping[str, Mapping[str, Track]],
        rules: Mapping[str, CompiledRule],
    ) -> list[Event]:
        """Fire every deadline at or before ``now_us``, in (deadline, rule, identity)
        order; the events carry their deadline as ts_us."""
        out: list[Event] = []
        heap = self.heap
        while heap and heap[0][0] <= now_us:
            due, rule_id, identity = heapq.heappop(heap)
            tr = tracks.get(identity, {}).get(rule_id)
            if tr is None or tr.queued != due:
                continue  # superseded entry
            tr.queued = None
            if tr.due is None:
                continue
            if tr.due > due:  # the deadline moved on; wait for it in order
                self.queue(rule_id, identity, tr)
                continue
            self.fire(rules[rule_id], identity, tr, out)
            self.queue(rule_id, identity, tr)
        return out

    def judge(
        self,
        r: CompiledRule,
        identity: str,
        tr: Track,
        ts: int,
        verdict: Verdict,
        out: list[Event],
    ) -> None:
        """Apply one input at ``ts`` (due timers already fired): ``want`` is the side it
        would raise, ``clear_ok`` whether the active alarm's clear condition holds."""
        want, clear_ok, shown = verdict
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
        tr.due = deadline(r, tr)
        if tr.due is not None:
            if tr.due <= ts:
                self.settle(r, identity, tr, ts, out)
            else:
                self.queue(r.id, identity, tr)

    def settle(self, r: CompiledRule, identity: str, tr: Track, now: int, out: list[Event]) -> None:
        """Fire every transition of ``tr`` due at or before ``now``."""
        while tr.due is not None and tr.due <= now:
            self.fire(r, identity, tr, out)
        self.queue(r.id, identity, tr)

    def queue(self, rule_id: str, identity: str, tr: Track) -> None:
        """Make sure the heap holds an entry no later than ``tr.due``: entries are only
        added when the deadline moves earlier; a later one is found on pop (advance)."""
        due = tr.due
        if due is not None and (tr.queued is None or due < tr.queued):
            tr.queued = due
            heapq.heappush(self.heap, (due, rule_id, identity))

    def fire(self, r: CompiledRule, identity: str, tr: Track, out: list[Event]) -> None:
        """The transition due at ``tr.due``: clear the active alarm, or raise."""
        at = tr.due
        assert at is not None
        if tr.side is not None:
            out.append(cleared(r, identity, tr, at, tr.shown, None))
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
            text = message(r, identity, tr, side, tr.shown)
            out.append(alarm_event("RAISED", r.rule, identity, tr.alarm, at, text, trigger))
        if at > tr.seen:
            tr.seen = at
        tr.due = deadline(r, tr)


def cleared(
    r: CompiledRule, identity: str, tr: Track, ts: int, trigger: Any, note: str | None
) -> Event:
    """The CLEARED of the key's active alarm at ``ts``."""
    assert tr.alarm is not None
    text = message(r, identity, tr, tr.side, tr.shown)
    return alarm_event("CLEARED", r.rule, identity, tr.alarm, ts, text, trigger, note)
