"""Follows the end of the log and turns its events into live-stream items.

:class:`ItemBuilder` maps one decoded event to items (and remembers what it needs for
that: each alarm's state, each resource's deviated flag); :class:`LogTail` reads every
partition of the followed topics from their end offsets at startup on and hands the
items to the hub (:class:`~api.stream.StreamHub`). Undecodable records are skipped (the
pipeline dead-letters them). Items:

- ``alarm``: every AlarmEvent step but rule definitions (RULE_DEFINED / RULE_REMOVED are
  no alarms; rule changes through the API show up as ``audit`` activities). ``event``
  is the step, ``type`` the rule's type name, ``state`` active/cleared, and
  ``acknowledged``/``discarded`` the alarm's management status, as far as the tail saw
  the alarm (``state`` is null for an alarm raised before the tail started, until its
  next raise or clear);
- ``activity``: the same alarm steps with ``activity_type`` "alarm", and every
  AuditEvent with ``activity_type`` "audit";
- ``deviation``: a ResourceStatus whose deviated flag (desired != current state)
  changed since the last status of that resource the tail saw; the first status of a
  resource only when it is deviated. ``deviated`` false is the recovery;
- ``deviation`` also for identities' desired state: a STATE_SET of a synced resource
  deviates (``identity:<identity>/<resource>``, service ``identities``) until its
  STATE_ACKNOWLEDGED;
- ``latest``: one item per (identity, signal) value of each TelemetryBatch sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from api.timeparams import format_time
from pipeline.codec import AvroCodec
from pipeline.errors import DecodeError
from pipeline.log.base import EventLog, TopicPartition
from pipeline.topics import ALARMS, AUDIT, IDENTITY, STATUS, TELEMETRY

log = logging.getLogger("millrace.api.stream")

DEFAULT_TOPICS = (ALARMS, AUDIT, STATUS, TELEMETRY, IDENTITY)
Item = tuple[str, dict[str, Any]]


class ItemSink(Protocol):
    """What the tail needs from the hub."""

    def wants(self, kind: str) -> bool: ...

    def publish(self, kind: str, data: dict[str, Any]) -> int | None: ...


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
    return str(format_time(ts_us, None))


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class ItemBuilder:
    """Events in, stream items out; remembers alarm states and deviated flags."""

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
        for sample in e["samples"]:
            ts, quality = _time(sample["ts_us"]), sample.get("quality", 0)
            for signal, value in sample["values"].items():
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


#: which item kinds each topic feeds; a topic whose items nobody wants is not even read,
#: unless the builder must remember something from it (alarm states, deviated flags)
_STATEFUL = {ALARMS, STATUS, IDENTITY}
_KINDS = {ALARMS: ("alarm", "activity"), AUDIT: ("activity",), TELEMETRY: ("latest",)}


class LogTail:
    """Follows the end of ``topics`` in ``log`` and publishes items to ``hub``."""

    def __init__(
        self,
        log: EventLog,
        codec: AvroCodec,
        hub: ItemSink,
        topics: Sequence[str] = DEFAULT_TOPICS,
        poll_s: float = 0.1,
        max_records: int = 1000,
        builder: ItemBuilder | None = None,
    ) -> None:
        self.log = log
        self.codec = codec
        self.hub = hub
        self.topics = tuple(topics)
        self.poll_s = poll_s
        self.max_records = max_records
        self.builder = builder or ItemBuilder()
        self.positions: dict[TopicPartition, int] = {}
        self.skipped = 0  # undecodable or malformed records
        self._started = False
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New records are there: poll now instead of after ``poll_s``."""
        self._wake.set()

    async def start(self) -> None:
        """Position at the current end of every partition (later events only)."""
        positions = {}
        for topic in self.topics:
            for p in range(self.log.partitions(topic)):
                positions[TopicPartition(topic, p)] = (await self.log.offsets(topic, p))[1]
        self.positions, self._started = positions, True

    async def step(self) -> int:
        """Read what is new in every partition (up to ``max_records`` each); the
        number of records read."""
        if not self._started:
            await self.start()
        total = 0
        for tp, position in self.positions.items():
            start, end = await self.log.offsets(tp.topic, tp.partition)
            if end <= position:
                continue
            if not self._wanted(tp.topic):  # skip without reading
                self.positions[tp] = end
                total += end - max(position, start)
                continue
            records = await self.log.read(
                tp.topic, tp.partition, max(position, start), self.max_records
            )
            if not records:
                continue
            self.positions[tp] = records[-1].offset + 1
            total += len(records)
            for record in records:
                self._publish(tp.topic, record.value)
        return total

    def _wanted(self, topic: str) -> bool:
        return topic in _STATEFUL or any(self.hub.wants(k) for k in _KINDS.get(topic, ()))

    def _publish(self, topic: str, value: bytes) -> None:
        try:
            items = self.builder.items(topic, self.codec.decode(topic, value))
        except (DecodeError, KeyError, TypeError, AttributeError):
            self.skipped += 1
            return
        for kind, data in items:
            self.hub.publish(kind, data)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the log until ``stop``; errors are logged and retried."""
        relay = asyncio.create_task(self._wake_on(stop))
        backoff = self.poll_s
        try:
            while not stop.is_set():
                try:
                    n = await self.step()
                    backoff = self.poll_s
                except Exception:
                    log.exception("live stream tail failed; retrying in %.1f s", backoff)
                    n, backoff = 0, min(backoff * 2, 5.0)
                if n:
                    await asyncio.sleep(0)  # let clients drain between batches
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), backoff)
        finally:
            relay.cancel()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()
