"""Status processor: ResourceStatus events -> resource states, runner heartbeats and the
``connection_error`` device metric.

Every connector connection and endpoint (and every runner, see ``pipeline.heartbeat``)
reports a desired and a current state on the ``status`` topic, keyed by resource id, so
all events of a resource are in one partition, in order. Three projections follow:

* ``resource_states``: one row per resource, the fold of its events: the last
  observation, when ``current_state`` last changed (``since_us``) and when the resource
  last became deviated (``deviated_since_us``; 0 while desired == current). Rows carry
  ``version`` = log offset + 1 of the last event they include, so an event at or below
  it is skipped and a redone batch changes nothing. A connector publishes its status
  events concurrently, so one may land after a newer one: an observation older than
  the row's (``ts_us``) is late and changes nothing.
* ``resource_runners``: every event naming a ``runner`` is a sign of life of that
  runner; events of resource type ``runner`` are its explicit heartbeats and carry
  ``metrics["interval_s"]`` and the runner's own state. Rows depend on the event alone
  (no state), and the store keeps the latest per runner with max/argMax (no counts),
  so duplicated or re-ordered inserts agree.
* ``device_metrics``: connectors publish a status event only when (state, info)
  changes, so a connection failing the same way over and over shows once. Their
  cumulative ``connect_errors`` counter (in the connection events' metrics) shows
  every failure: the increase between consecutive events of a resource is counted as
  that many ``connection_error`` rows; a counter that went down means the connector
  restarted, and its new value is counted. The first event of a resource counts from 0.

Exactly once for the metric: a batch is redone over exactly the same offsets after a
crash, and its ``resource_states`` insert may have landed while the ``device_metrics``
one did not. The state row therefore also keeps where the count stood *before* the
batch that wrote it (``base_version``, ``base_connect_errors``, ``base_ts_us``): a redo
finds its own row and counts from that base again, giving the same rows as the first
attempt (whose insert, if it landed, the deduplication token drops).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from millrace.pipeline.errors import FoldError
from millrace.pipeline.processors.base import Event, Outputs, StatefulProcessor, dead_letter
from millrace.pipeline.processors.identity import metric_rows
from millrace.pipeline.tables import RUNNERS_SCHEMA, STATES_SCHEMA
from millrace.pipeline.topics import STATUS

#: resource type of an explicit runner heartbeat (pipeline.heartbeat)
RUNNER_TYPE = "runner"
#: the connectors' cumulative counter of failed connection attempts
CONNECT_ERRORS = "connect_errors"
CONNECTION_ERROR_METRIC = "connection_error"
#: at most this many connection_error rows for one event (a garbage counter jumping
#: by billions must not exhaust memory); real connectors fail a few times a second
MAX_ERRORS_PER_EVENT = 100_000
#: sorts below every real timestamp: "no observation yet"; a runner row that is not an
#: explicit heartbeat carries it as its heartbeat time, so it never wins the argMax of
#: the heartbeat fields
NOT_SEEN = -(2**63)

State = dict[str, Any]


class InvalidStatusError(FoldError):
    """A ResourceStatus that cannot be folded."""


def _counter(metrics: Mapping[str, Any]) -> float | None:
    v = metrics.get(CONNECT_ERRORS)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def errors_between(before: float, after: float) -> int:
    """Failed attempts between two readings of the cumulative counter: the increase,
    or the new value when the counter went down (the connector restarted)."""
    delta = after - before if after >= before else after
    return min(max(round(delta), 0), MAX_ERRORS_PER_EVENT)


@dataclass(frozen=True, slots=True)
class Tally:
    """Where the count of a resource's failed connections stands: the counter of its
    latest observation and that observation's time (:data:`NOT_SEEN` before any)."""

    counter: float = 0.0
    ts_us: int = NOT_SEEN

    def step(self, ev: Mapping[str, Any]) -> tuple[Tally, int]:
        """The tally after ``ev`` and the failures it reports. An observation older
        than the latest is a late delivery (connectors publish concurrently): it
        neither counts nor moves the tally."""
        ts = int(ev["ts_us"])
        if ts < self.ts_us:
            return self, 0
        now = _counter(ev.get("metrics") or {})
        if now is None:
            return Tally(self.counter, ts), 0
        return Tally(now, ts), errors_between(self.counter, now)


#: (version, tally) of the state before a batch
Base = tuple[int, Tally]


def fold(prev: State | None, ev: Mapping[str, Any], version: int, base: Base) -> State:
    """The state row after ``ev`` (a ResourceStatus dict) at log offset ``version - 1``;
    ``base`` is the state before the batch (see the module doc). An observation older
    than the row's leaves it as it is (only ``version`` moves on)."""
    resource = ev.get("resource_id")
    if not isinstance(resource, str) or not resource:
        raise InvalidStatusError("resource_id: must be a non-empty string")
    ts = int(ev["ts_us"])
    bases = {
        "base_version": base[0],
        "base_connect_errors": base[1].counter,
        "base_ts_us": base[1].ts_us,
    }
    if prev is not None and ts < prev["ts_us"]:
        return {**prev, "version": version, **bases}
    desired, current = str(ev["desired_state"]), str(ev["current_state"])
    metrics = {str(k): float(v) for k, v in (ev.get("metrics") or {}).items()}
    deviated = desired != current
    counter = _counter(metrics)
    if prev is None:
        since, deviated_since, last_counter = ts, ts if deviated else 0, 0.0
    else:
        since = prev["since_us"] if prev["current_state"] == current else ts
        kept = prev["deviated_since_us"] if prev["deviated"] else ts
        deviated_since = kept if deviated else 0
        last_counter = float(prev["connect_errors"])
    return {
        "resource_id": resource,
        "version": version,
        "service_id": str(ev["service_id"]),
        "resource_type": str(ev["resource_type"]),
        "desired_state": desired,
        "current_state": current,
        "deviated": int(deviated),
        "info": str(ev.get("info") or ""),
        "runner": str(ev.get("runner") or ""),
        "ts_us": ts,
        "since_us": since,
        "deviated_since_us": deviated_since,
        "metrics": metrics,
        "connect_errors": counter if counter is not None else last_counter,
        **bases,
    }


def _plain(row: Mapping[str, Any]) -> State:
    """A state row as read from the store: maps may come back as (key, value) pairs."""
    out = dict(row)
    m = out.get("metrics")
    out["metrics"] = dict(m) if m else {}
    for name in ("version", "base_version", "since_us", "deviated_since_us", "ts_us"):
        out[name] = int(out.get(name) or 0)
    out["base_ts_us"] = int(out.get("base_ts_us", NOT_SEEN))
    for name in ("connect_errors", "base_connect_errors"):
        out[name] = float(out.get(name) or 0.0)
    out["deviated"] = int(out.get("deviated") or 0)
    return out


def state_rows(states: Sequence[State]) -> pa.Table:
    cols: dict[str, list[Any]] = {f.name: [] for f in STATES_SCHEMA}
    for s in states:
        for name, values in cols.items():
            v = s[name]
            values.append(list(v.items()) if isinstance(v, dict) else v)
    return pa.Table.from_pydict(cols, schema=STATES_SCHEMA)


def runner_row(ev: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sign of life ``ev`` gives its runner, or None when it names none."""
    runner = ev.get("runner")
    if not isinstance(runner, str) or not runner:
        return None
    ts = int(ev["ts_us"])
    explicit = ev.get("resource_type") == RUNNER_TYPE
    interval = (ev.get("metrics") or {}).get("interval_s", 0.0) if explicit else 0.0
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        interval = 0.0
    interval = float(interval) if math.isfinite(interval) and interval > 0 else 0.0
    return {
        "runner": runner,
        "ts_us": ts,
        "service_id": str(ev.get("service_id") or ""),
        "heartbeat_ts": ts if explicit else NOT_SEEN,
        "interval_s": interval,
        "state": str(ev.get("current_state") or "") if explicit else "",
    }


class _Walk:
    """One resource's walk through a batch: its state row and its tally."""

    def __init__(self, state: State | None, first_offset: int) -> None:
        self.state = state
        #: events below this offset are already in ``state`` (a redone batch)
        self.applied_below = 0
        #: whether the failures of those events can be counted again
        self.recount = True
        if state is None:
            self.base: Base = (0, Tally())
        elif state["version"] <= first_offset:  # the usual case: the batch follows the row
            self.base = (state["version"], Tally(state["connect_errors"], state["ts_us"]))
        else:  # the row already holds events of this batch: a redo after a crash
            self.applied_below = state["version"]
            self.base = (
                state["base_version"],
                Tally(state["base_connect_errors"], state["base_ts_us"]),
            )
            # the row's base is before this batch unless it came from a later one
            # (impossible with the sink's protocol: a redo covers the same offsets)
            self.recount = self.base[0] <= first_offset
        self.tally = self.base[1]
        if not self.recount and state is not None:
            self.tally = Tally(state["connect_errors"], state["ts_us"])

    def step(self, ev: Event) -> int:
        """Folds ``ev`` (unless the row holds it) and returns the failures it reports."""
        if ev.offset < self.applied_below and not self.recount:
            return 0
        if ev.offset >= self.applied_below:  # may raise: then nothing moved
            self.state = fold(self.state, ev.value, ev.offset + 1, self.base)
        self.tally, failures = self.tally.step(ev.value)
        return failures


class StatusProcessor(StatefulProcessor):
    """Resource states, runner heartbeats and connection errors (see the module doc)."""

    topics = (STATUS,)
    state_table = "resource_states"
    state_key = "resource_id"

    def state_keys(self, events: Sequence[Event]) -> list[str]:
        keys = {e.value.get("resource_id") for e in events}
        return sorted(k for k in keys if isinstance(k, str) and k)

    def process_with_state(
        self, events: Sequence[Event], state: Mapping[str, Mapping[str, Any]]
    ) -> Outputs:
        out = Outputs()
        walks: dict[str, _Walk] = {}
        changed: dict[str, State] = {}
        runners: list[dict[str, Any]] = []
        errors: list[tuple[str, int, float]] = []
        for ev in events:
            value = ev.value
            try:
                resource = value.get("resource_id")
                if not isinstance(resource, str) or not resource:
                    raise InvalidStatusError("resource_id: must be a non-empty string")
                walk = walks.get(resource)
                if walk is None:
                    prev = state.get(resource)
                    walk = walks[resource] = _Walk(
                        _plain(prev) if prev is not None else None, ev.offset
                    )
                row = runner_row(value)
                failures = walk.step(ev)
                if ev.offset >= walk.applied_below and walk.state is not None:
                    changed[resource] = walk.state
            except (InvalidStatusError, ValueError, KeyError, TypeError) as exc:
                out.deadletters.append(
                    dead_letter(
                        ev,
                        reason=str(exc),
                        error_type="InvalidStatus",
                        stage="apply",
                        ts_us=ev.timestamp_us,
                        payload=repr(dict(value)).encode()[:65536],
                    )
                )
                continue
            if row is not None:
                runners.append(row)
            if failures:
                errors.extend([(CONNECTION_ERROR_METRIC, int(value["ts_us"]), 1.0)] * failures)
        if changed:
            out.tables["resource_states"] = state_rows(list(changed.values()))
        if runners:
            out.tables["resource_runners"] = pa.Table.from_pylist(runners, schema=RUNNERS_SCHEMA)
        if errors:
            out.tables["device_metrics"] = metric_rows(errors)
        return out
