"""The overview's ingest rate: readings folded per second over a window, from a counter
sampled at known times (no NiceGUI here: tested on its own).

``millrace run`` reports its counter as it is now, so a sample is (the poll's time,
the counter). ``millrace api`` knows the workers' counters only from their heartbeats
(every 10 s, ``pipeline.heartbeat``): a sample is (the newest heartbeat's time, the
counter it carried), and between two heartbeats the same sample comes again — it adds
nothing, and the rate stays the last one measured instead of dropping to zero.
"""

from __future__ import annotations

from typing import Any

WINDOW_S = 10.0


class IngestRate:
    """Readings per second over at least ``window_s`` (once two samples span time)."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self.samples: list[tuple[float, float]] = []  # (time s, counter), oldest first

    def add(self, at_s: float, counter: float) -> float | None:
        """The rate after the sample ``(at_s, counter)``; None while it is unknown."""
        if self.samples and at_s <= self.samples[-1][0]:
            at_s, counter = self.samples[-1]  # a repeated heartbeat: nothing new
        else:
            self.samples.append((at_s, counter))
        # keep one sample at or before the window's start: the rate spans the window
        while len(self.samples) > 2 and at_s - self.samples[1][0] >= self.window_s:
            self.samples.pop(0)
        t0, c0 = self.samples[0]
        if at_s <= t0:
            return None
        return max(0.0, (counter - c0) / (at_s - t0))


def sampled_at(status: dict[str, Any], now_s: float) -> float:
    """When ``/status``'s counters were true: the newest worker heartbeat's time (the
    distributed deployment), else ``now_s``."""
    heard = [int(w.get("ts_us", 0)) for w in status.get("workers") or []]
    return max(heard) / 1e6 if heard and status.get("mode") == "distributed" else now_s
