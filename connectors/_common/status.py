"""What a connection reports about itself: its state, its endpoints', its buffer's drops.

:class:`StatusReport` decides *when* something is worth a ResourceStatus event (a
change of state or info; a store-and-forward overflow at its first drop, then at most
every ``overflow_report_s`` while it lasts, and once the buffer has drained, how many
events were lost, until the next change of state); the connector publishes. It does no
I/O: the spool's counters and the times are passed in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from .spool import Spool

log = logging.getLogger("millrace.connectors")

#: a spool overflow is reported at its first drop, then at most once per this many s
OVERFLOW_REPORT_S = 60.0

State = tuple[str, str]  # (current state, info)


@dataclass
class _Overflow:
    """Drops by the store-and-forward bound, from the first until the buffer drains."""

    since_us: int
    events: int  # the spool's dropped counts before the first drop
    bytes: int
    reported: float  # monotonic time of the last report


class StatusReport:
    """The state of one connection and of its endpoints (see the module doc)."""

    def __init__(self, resource_id: str, overflow_report_s: float = OVERFLOW_REPORT_S) -> None:
        self.resource_id = resource_id
        self.overflow_report_s = overflow_report_s
        self.current: State = ("stopped", "")
        self.endpoints: dict[tuple[str, str], State] = {}
        self._overflow: _Overflow | None = None
        self._dropped_seen = (0, 0)  # the spool's dropped (events, bytes) last looked at
        self._buffer_info = ""  # about the store-and-forward buffer, after the state's info

    @property
    def state(self) -> State:
        """(current state, info) of the connection, the buffer's report appended."""
        current, info = self.current
        if self._buffer_info:
            info = f"{info}; {self._buffer_info}" if info else self._buffer_info
        return current, info

    def set_state(self, current: str, info: str = "") -> bool:
        """Record the connection's state; True when it changed (to be published)."""
        if self.current == (current, info):
            return False
        self.current = (current, info)
        if self._overflow is None:  # a drained buffer's report lasts until a change
            self._buffer_info = ""
        log.info("%s: %s %s", self.resource_id, current, info)
        return True

    def set_endpoint(self, key: tuple[str, str], current: str, info: str = "") -> bool:
        """Record an endpoint's state; True when it changed."""
        if self.endpoints.get(key) == (current, info):
            return False
        self.endpoints[key] = (current, info)
        return True

    def buffer_opened(self, spool: Spool) -> None:
        """A new buffer: its drops before (a restart) are in the metrics, not reported."""
        self._dropped_seen = (spool.dropped_events, spool.dropped_bytes)
        self._overflow = None

    def buffer_changed(self, spool: Spool, now_us: int, monotonic: float) -> bool:
        """The spool changed; True when the connection's info changed (to publish)."""
        o = self._overflow
        changed = False
        if spool.dropped_bytes > self._dropped_seen[1]:
            if o is None:
                o = self._overflow = _Overflow(now_us, *self._dropped_seen, monotonic)
                changed |= self._report(spool, o, drained=False)
            elif monotonic - o.reported >= self.overflow_report_s:
                o.reported = monotonic
                changed |= self._report(spool, o, drained=False)
            self._dropped_seen = (spool.dropped_events, spool.dropped_bytes)
        if o is not None and not spool.size_bytes:
            self._overflow = None
            changed |= self._report(spool, o, drained=True)
        return changed

    def _report(self, spool: Spool, o: _Overflow, drained: bool) -> bool:
        lost = f"{spool.dropped_events - o.events} events ({_size(spool.dropped_bytes - o.bytes)})"
        since = datetime.fromtimestamp(o.since_us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if drained:
            text = f"store-and-forward buffer drained; {lost} were dropped since {since}"
        else:
            text = f"store-and-forward buffer full: {lost} dropped since {since}"
        # (buffer_dropped: the metric, which counts across outages and restarts)
        log.warning("%s: %s (buffer_dropped %d)", self.resource_id, text, spool.dropped_events)
        if text == self._buffer_info:
            return False
        self._buffer_info = text
        return True


class ReadingRate:
    """Readings per second, recomputed at most once a second."""

    def __init__(self, now: float) -> None:
        self._at = (now, 0.0, 0.0)  # (t, readings at t, readings/s)

    def __call__(self, readings: float, now: float) -> float:
        t0, n0, rate = self._at
        if now - t0 >= 1.0:
            rate = (readings - n0) / (now - t0)
            self._at = (now, readings, rate)
        return rate


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    exp = min((n.bit_length() - 1) // 10, 3)
    return f"{n / 1024**exp:.1f} {('KiB', 'MiB', 'GiB')[exp - 1]}"
