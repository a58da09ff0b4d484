"""The wall clock, in the unit every event carries: microseconds since the Unix epoch.

The one definition of "now" in millrace. Processors never call it (they are pure; time
comes with the event); drivers, stages, connectors and the API take a ``clock``
argument that defaults to :func:`now_us`, so a test passes its own.
"""

from __future__ import annotations

import time


def now_us() -> int:
    """Microseconds since 1970-01-01T00:00:00Z by the system's wall clock (which NTP
    may step: use it for event times, not to measure durations)."""
    return time.time_ns() // 1000
