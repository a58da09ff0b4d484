"""The times millrace accepts, in microseconds since 1970-01-01T00:00:00Z: one rule.

**Events** (a reading's ``ts_us``, an alarm step's time) carry a time in
``[MIN_TS_US, MAX_TS_US)``: from 1970-01-01 (inclusive) to 2200-01-01 (exclusive).
HTTP ingest, every connector, the telemetry processor and the alarm evaluator check
this same range (:func:`ts_problem`), so a reading is refused where it enters — with
the field named — rather than passing a connector and sinking a whole batch into the
dead letters at the processor.

Why these bounds and not 9999 (what two connectors allowed) or the store's type range:

- The projections keep times as ClickHouse ``DateTime64(6)``, whose range is
  1900-01-01..2299-12-31; a time past it is not refused by ClickHouse but clamped or
  wrapped, so a year-9999 reading would land at the wrong time. The bound must be
  inside the store's range.
- Below 1970: a time of 0 or less is what devices send when they have no clock
  (OPC UA's minimum DateTime, an unset RTC), and telemetry from before the epoch does
  not exist; the epoch is the natural floor.
- 2200 leaves a century of headroom under the type's ceiling for bucket arithmetic
  (``toStartOfInterval``, ``+ INTERVAL``) and is far beyond any real device clock, yet
  catches the usual unit errors (nanoseconds or milliseconds sent as microseconds).

**Query parameters** (``from``/``to``/``before`` of the API) may span the store's whole
type range, ``[MIN_QUERY_US, MAX_QUERY_US)`` = years 1900..2299: asking for a window
that holds no event is not an error.

HTTP ingest additionally bounds times relative to now (``max_past_us``,
``max_future_us`` in its settings): a policy window inside this range, not a second rule.
"""

from __future__ import annotations

#: 1970-01-01T00:00:00Z: the earliest time an event may carry
MIN_TS_US = 0
#: 2200-01-01T00:00:00Z: events carry times before it
MAX_TS_US = 7_258_118_400_000_000
#: how the event range reads in messages
TS_RANGE_TEXT = "[1970, 2200)"

#: 1900-01-01T00:00:00Z .. 2300-01-01T00:00:00Z: ClickHouse DateTime64's range
MIN_QUERY_US = -2_208_988_800_000_000
MAX_QUERY_US = 10_413_792_000_000_000


def valid_ts(ts: object) -> bool:
    """Whether ``ts`` is an int (not a bool) in the event range."""
    return ts.__class__ is int and MIN_TS_US <= ts < MAX_TS_US


def ts_problem(ts: object) -> str | None:
    """Why ``ts`` cannot be an event's time (to follow the field name), or None."""
    if valid_ts(ts):
        return None
    if ts.__class__ is not int:
        return f"{ts!r} is not an integer number of microseconds"
    return f"{ts!r} is outside {TS_RANGE_TEXT} (expects epoch microseconds)"
