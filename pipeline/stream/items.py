"""Live-stream items: decoded log events in, ``(kind, data)`` items out.

Pure: no I/O, no clock; the only state is what the items need from earlier events
(each alarm's state, each resource's deviated flag), bounded. ``api.stream_tail.LogTail``
reads the log and hands every decoded event to :meth:`ItemBuilder.items`. Items:

- ``alarm``: every AlarmEvent step but rule definitions (RULE_DEFINED / RULE_REMOVED are
  no alarms; rule changes through the API show up as ``audit`` activities). ``event``
  is the step, ``type`` the rule's type name, ``state`` active/cleared, and
  ``acknowledged``/``discarded`` the alarm's management status, as far as the builder saw
  the alarm (``state`` is null for an alarm raised before the tail started, until its
  next raise or clear);
- ``activity``: the same alarm steps with ``activity_type`` "alarm", and every
  AuditEvent with ``activity_type`` "audit";
- ``deviation``: a ResourceStatus whose deviated flag (desired != current state)
  changed since the last status of that resource the builder saw; the first status of a
  resource only when it is deviated. ``deviated`` false is the recovery;
- ``deviation`` also for identities' desired state: a STATE_SET of a synced resource
  deviates (``identity:<identity>/<resource>``, service ``identities``) until its
  STATE_ACKNOWLEDGED;
- ``latest``: one item per (identity, signal) value of each TelemetryBatch sample.

A malformed event raises ``KeyError``/``TypeError``/``AttributeError``; the driver
skips it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from millrace.pipeline.telemetry_columns import iter_samples, problem
from millrace.pipeline.topics import ALARMS, AUDIT, IDENTITY, STATUS, TELEMETRY

Item = tuple[str, dict[str, Any]]
#: topics whose events the builder must see even when nobody wants their items
STATEFUL = frozenset({ALARMS, STATUS, IDENTITY})
#: the item kinds each topic feeds
KINDS: dict[str, tuple[str, ...]] = {
    ALARMS: ("alarm", "activity"),
    AUDIT: ("activity",),
    STATUS: ("deviation",),
    TELEMETRY: ("latest",),
    IDENTITY: ("deviation",),
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class _AlarmState:
    state: str | None = None
    acknowledged: bool = False
    discarded: bool = False


class _Lru(OrderedDict[str, Any]):
    """A dict that forgets its least recently written keys beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.limit:
            self.popitem(last=False)


def _time(ts_us: int) -> str:
    """ISO-8601 UTC with microseconds when there are any, as the API writes times."""
    return (_EPOCH + timedelta(microseconds=ts_us)).isoformat().replace("+00:00", "Z")


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class ItemBuilder:
    """Events in, stream items out; remembers alarm states and deviated flags (each
    bounded to the ``max_tracked`` most recently written ids)."""

    def __init__(self, max_tracked: int = 100_000) -> None:
        self._alarms = _Lru(max_tracked)
        self._deviated = _Lru(max_tracked)

    def items(self, topic: str, event: dict[str, Any]) -> list[Item]:
        if topic == ALARMS:
            return self.alarm(event)
        if topic == AUDIT:
            return [("activity", self.audit(event))]
        if topic == STATUS:
            found = self.deviation(event)
            return [] if found is None else [("deviation", found)]
        if topic == TELEMETRY:
            return self.latest(event)
        if topic == IDENTITY:
            return [("deviation", d) for d in self.desired_state(event)]
        return []

    def desired_state(self, e: dict[str, Any]) -> list[dict[str, Any]]:
        """Identities' desired state as resources (``identity:<identity>/<resource>``,
        service ``identities``, as GET /resources/states lists them): a set value is a
        deviation until the device reports it back (STATE_ACKNOWLEDGED: the recovery;
        a sync-off resource is acknowledged at once)."""
        kind = e.get("type")
        if kind not in ("STATE_SET", "STATE_ACKNOWLEDGED") or not e.get("state"):
            return []
        identity = e["identity"]
        out = []
        for resource, value in e["state"].items():
            rid = f"identity:{identity}/{resource}"
            deviated = kind == "STATE_SET"
            before = self._deviated.get(rid)
            self._deviated.put(rid, deviated)
            if before == deviated or (before is None and not deviated and kind == "STATE_SET"):
                continue
            out.append(
                {
                    "resource_id": rid,
                    "service_id": "identities",
                    "resource_type": "identity_state",
                    "desired_state": value if kind == "STATE_SET" else None,
                    "current_state": value if kind == "STATE_ACKNOWLEDGED" else None,
                    "deviated": deviated,
                    "info": "pending" if deviated else "acknowledged",
                    "runner": None,
                    "timestamp": _time(e["ts_us"]),
                }
            )
        return out

    def alarm(self, e: dict[str, Any]) -> list[Item]:
        step = e["type"]
        if step in ("RULE_DEFINED", "RULE_REMOVED"):
            return []
        known: _AlarmState | None = self._alarms.get(e["alarm_id"])
        st = _AlarmState() if known is None else replace(known)
        if step == "RAISED":
            st = _AlarmState("active")
        elif step == "CLEARED":
            st.state = "cleared"
        elif step == "ACKNOWLEDGED":
            st.acknowledged = True
        elif step == "DISCARDED":
            st.discarded = True
        self._alarms.put(e["alarm_id"], st)
        data = {
            "alarm_id": e["alarm_id"],
            "event": step,
            "state": st.state,
            "acknowledged": st.acknowledged,
            "discarded": st.discarded,
            "rule_id": e["rule_id"],
            "type": e["rule_type"],
            "identity": e["identity"],
            "signal": e.get("signal"),
            "priority": e["priority"],
            "message": e["message"],
            "trigger_value": e.get("trigger_value"),
            "user": e.get("user"),
            "note": e.get("note"),
            "requires_ack": e.get("requires_ack", False),
            "timestamp": _time(e["ts_us"]),
        }
        return [("alarm", data), ("activity", {"activity_type": "alarm", **data})]

    @staticmethod
    def audit(e: dict[str, Any]) -> dict[str, Any]:
        return {
            "activity_type": "audit",
            "audit_id": e["audit_id"],
            "timestamp": _time(e["ts_us"]),
            "actor": e["actor"],
            "actor_role": e["actor_role"],
            "action": e["action"],
            "target_type": e["target_type"],
            "target_id": e["target_id"],
            "before": _json(e.get("before")),
            "after": _json(e.get("after")),
            "status": e.get("status", "ok"),
            "request_id": e.get("request_id"),
            "source_ip": e.get("source_ip"),
        }

    def deviation(self, e: dict[str, Any]) -> dict[str, Any] | None:
        deviated = e["desired_state"] != e["current_state"]
        before = self._deviated.get(e["resource_id"])
        self._deviated.put(e["resource_id"], deviated)
        if before == deviated or (before is None and not deviated):
            return None
        return {
            "resource_id": e["resource_id"],
            "service_id": e["service_id"],
            "resource_type": e["resource_type"],
            "desired_state": e["desired_state"],
            "current_state": e["current_state"],
            "deviated": deviated,
            "info": e.get("info", ""),
            "runner": e.get("runner"),
            "timestamp": _time(e["ts_us"]),
        }

    @staticmethod
    def latest(e: dict[str, Any]) -> list[Item]:
        identity = e["identity"]
        out: list[Item] = []
        if problem(e) is not None:  # the fold dead-letters it; nothing to show
            return out
        for ts_us, quality, values in iter_samples(e):
            ts = _time(ts_us)
            for signal, value in values.items():
                out.append(
                    (
                        "latest",
                        {
                            "identity": identity,
                            "signal": signal,
                            "timestamp": ts,
                            "value": value,
                            "quality": quality,
                        },
                    )
                )
        return out
