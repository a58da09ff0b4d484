"""The live stream's log tail: real encoded events on an in-memory log become the
right stream items, from the end of the log at startup on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from millrace.api.stream import StreamHub
from millrace.api.stream_filters import KINDS
from millrace.api.stream_tail import LogTail
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import Message
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.topics import ALARMS, AUDIT, STATUS, TELEMETRY

#: 2025-06-01T12:00:00.123456Z
T0 = 1_748_779_200_123_456
ISO0 = "2025-06-01T12:00:00.123456Z"
ISO1 = "2025-06-01T12:00:01.123456Z"


class Recorder:
    """A hub that wants ``wanted`` kinds and records what it is given."""

    def __init__(self, wanted: tuple[str, ...] = KINDS) -> None:
        self.wanted = wanted
        self.items: list[tuple[str, dict[str, Any]]] = []

    def wants(self, kind: str) -> bool:
        return kind in self.wanted

    def publish(self, kind: str, data: dict[str, Any]) -> int | None:
        self.items.append((kind, data))
        return len(self.items)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data in self.items if k == kind]


async def append(
    log: MemoryEventLog, topic: str, *events: dict[str, Any], key: bytes = b"k"
) -> None:
    codec = default_codec()
    await log.append(topic, [Message(codec.encode(topic, e), key=key) for e in events])


def alarm(step: str, alarm_id: str = "a1", ts_us: int = T0, **extra: Any) -> dict[str, Any]:
    return {
        "alarm_id": alarm_id,
        "ts_us": ts_us,
        "type": step,
        "rule_id": "r-high",
        "rule_type": "high_limit",
        "identity": "press-1",
        "signal": "temp",
        "priority": 200,
        "message": "temp above 90",
        "trigger_value": 91.5,
        "requires_ack": True,
        **extra,
    }


def status(resource_id: str, desired: str, current: str, ts_us: int = T0) -> dict[str, Any]:
    return {
        "resource_id": resource_id,
        "service_id": "opcua",
        "resource_type": "connection",
        "desired_state": desired,
        "current_state": current,
        "info": "" if desired == current else "connection refused",
        "ts_us": ts_us,
    }


AUDIT_EVENT = {
    "audit_id": "au1",
    "ts_us": T0,
    "actor": "ops (k1)",
    "actor_role": "operator",
    "action": "acknowledge",
    "target_type": "alarm",
    "target_id": "a1",
    "before": json.dumps({"acknowledged": False}),
    "after": "not json",
    "status": "ok",
    "request_id": "req-1",
    "source_ip": "10.0.0.7",
}

TELEMETRY_BATCH = {
    "identity": "press-1",
    "source": "simulator",
    "received_us": T0,
    "samples": [
        {"ts_us": T0, "values": {"temp": 1.5, "on": True}, "quality": 0},
        {"ts_us": T0 + 1_000_000, "values": {"mode": "auto"}, "quality": 5},
    ],
}


async def test_events_become_items() -> None:
    log = MemoryEventLog(partitions=1)
    await append(log, ALARMS, alarm("RAISED", "old"))  # before the tail started
    await append(log, STATUS, status("old", "running", "error"))
    hub = Recorder()
    tail = LogTail(log, default_codec(), hub)
    await tail.start()
    await append(
        log,
        ALARMS,
        alarm("RAISED"),
        alarm("ACKNOWLEDGED", user="ops", note="on it", trigger_value=None),
        alarm("CLEARED", trigger_value=80.0),
        alarm("RULE_DEFINED", "r-high", identity="*", definition="{}"),
        alarm("ANNOTATED", "old", user="ops", note="seen before"),
    )
    await log.append(ALARMS, [Message(b"\x00garbage", key=b"k")])  # undecodable: skipped
    await append(log, AUDIT, AUDIT_EVENT)
    await append(
        log,
        STATUS,
        status("plc1", "running", "running"),  # first sighting, fine: nothing
        status("plc2", "running", "error"),  # first sighting, deviated
        status("plc2", "running", "error"),  # unchanged
        status("plc2", "running", "running", T0 + 1_000_000),  # recovered
        status("plc1", "running", "stopped"),  # deviates
    )
    await append(log, TELEMETRY, TELEMETRY_BATCH)
    assert await tail.step() == 13
    assert tail.skipped == 1

    common: dict[str, Any] = {
        "rule_id": "r-high",
        "type": "high_limit",
        "identity": "press-1",
        "signal": "temp",
        "priority": 200,
        "message": "temp above 90",
        "requires_ack": True,
        "timestamp": ISO0,
    }
    alarms: list[dict[str, Any]] = [
        {
            "alarm_id": "a1",
            "event": "RAISED",
            "state": "active",
            "acknowledged": False,
            "discarded": False,
            "trigger_value": 91.5,
            "user": None,
            "note": None,
        },
        {
            "alarm_id": "a1",
            "event": "ACKNOWLEDGED",
            "state": "active",
            "acknowledged": True,
            "discarded": False,
            "trigger_value": None,
            "user": "ops",
            "note": "on it",
        },
        {
            "alarm_id": "a1",
            "event": "CLEARED",
            "state": "cleared",
            "acknowledged": True,
            "discarded": False,
            "trigger_value": 80.0,
            "user": None,
            "note": None,
        },
        {  # raised before the tail started: its state is not known
            "alarm_id": "old",
            "event": "ANNOTATED",
            "state": None,
            "acknowledged": False,
            "discarded": False,
            "trigger_value": 91.5,
            "user": "ops",
            "note": "seen before",
        },
    ]
    expected_alarms: list[dict[str, Any]] = [{**common, **a} for a in alarms]
    assert hub.of("alarm") == expected_alarms
    assert hub.of("activity") == [
        *({"activity_type": "alarm", **a} for a in expected_alarms),
        {
            "activity_type": "audit",
            "audit_id": "au1",
            "timestamp": ISO0,
            "actor": "ops (k1)",
            "actor_role": "operator",
            "action": "acknowledge",
            "target_type": "alarm",
            "target_id": "a1",
            "before": {"acknowledged": False},
            "after": "not json",
            "status": "ok",
            "request_id": "req-1",
            "source_ip": "10.0.0.7",
        },
    ]
    assert [
        (d["resource_id"], d["deviated"], d["current_state"], d["timestamp"])
        for d in hub.of("deviation")
    ] == [
        ("plc2", True, "error", ISO0),
        ("plc2", False, "running", ISO1),
        ("plc1", True, "stopped", ISO0),
    ]
    assert hub.of("deviation")[0] == {
        "resource_id": "plc2",
        "service_id": "opcua",
        "resource_type": "connection",
        "desired_state": "running",
        "current_state": "error",
        "deviated": True,
        "info": "connection refused",
        "runner": None,
        "timestamp": ISO0,
    }
    assert hub.of("latest") == [
        {"identity": "press-1", "signal": "temp", "timestamp": ISO0, "value": 1.5, "quality": 0},
        {"identity": "press-1", "signal": "on", "timestamp": ISO0, "value": True, "quality": 0},
        {"identity": "press-1", "signal": "mode", "timestamp": ISO1, "value": "auto", "quality": 5},
    ]
    assert await tail.step() == 0  # nothing new


async def test_every_partition_is_followed() -> None:
    log = MemoryEventLog(partitions=4)
    hub = Recorder()
    tail = LogTail(log, default_codec(), hub, topics=(TELEMETRY,))
    identities = [f"dev-{i}" for i in range(12)]
    for identity in identities:
        await append(
            log, TELEMETRY, {**TELEMETRY_BATCH, "identity": identity}, key=identity.encode()
        )
    await tail.start()
    assert await tail.step() == 0
    for identity in identities:
        await append(
            log, TELEMETRY, {**TELEMETRY_BATCH, "identity": identity}, key=identity.encode()
        )
    used = {p for p in range(4) if (await log.offsets(TELEMETRY, p))[1]}
    assert len(used) > 1
    assert await tail.step() == 12
    assert sorted({d["identity"] for d in hub.of("latest")}) == sorted(identities)
    assert len(hub.of("latest")) == 36


async def test_topics_nobody_wants_are_not_decoded() -> None:
    log = MemoryEventLog(partitions=1)
    hub = StreamHub()
    tail = LogTail(log, default_codec(), hub)
    await tail.start()
    await log.append(TELEMETRY, [Message(b"junk")])
    await log.append(AUDIT, [Message(b"junk")])
    assert await tail.step() == 2
    assert tail.skipped == 0  # no latest or activity subscription: not even read
    stream_id = hub.open(None, "k1").stream_id
    hub.subscribe(stream_id, "latest", {"identity": "press-1"}, "k1")
    await log.append(TELEMETRY, [Message(b"junk")])
    await append(log, TELEMETRY, TELEMETRY_BATCH, {**TELEMETRY_BATCH, "identity": "other"})
    assert await tail.step() == 3
    assert tail.skipped == 1
    assert hub.stats()["buffered"] == 3  # the other identity's values were not kept


async def test_run_follows_until_stopped_and_wakes_on_demand() -> None:
    log = MemoryEventLog(partitions=1)
    hub = Recorder()
    tail = LogTail(log, default_codec(), hub, poll_s=30)  # only wake() can be in time
    stop = asyncio.Event()
    task = asyncio.create_task(tail.run(stop))
    while not tail.positions:
        await asyncio.sleep(0.001)
    await append(log, STATUS, status("plc9", "running", "error"))
    tail.wake()
    for _ in range(1000):
        if hub.items:
            break
        await asyncio.sleep(0.001)
    assert [d["resource_id"] for d in hub.of("deviation")] == ["plc9"]
    stop.set()
    await asyncio.wait_for(task, 1.0)


async def test_identities_desired_state_deviates_until_acknowledged() -> None:
    from millrace.pipeline.events import identity_event
    from millrace.pipeline.topics import IDENTITY

    log, rec = MemoryEventLog(), Recorder()
    tail = LogTail(log, default_codec(), rec)
    await tail.start()
    await append(
        log,
        IDENTITY,
        identity_event("press-1", "STATE_SET", T0, actor="op", state={"setpoint": "321"}),
        identity_event("press-1", "STATE_SET", T0 + 1, actor="op", state={"setpoint": "322"}),
        identity_event("press-1", "STATE_ACKNOWLEDGED", T0 + 2, state={"setpoint": "322"}),
        identity_event("press-1", "CONNECTED", T0 + 3),
    )
    await tail.step()
    got = [(d["resource_id"], d["deviated"], d["info"]) for d in rec.of("deviation")]
    # the second set while pending changes nothing; the acknowledgement is the recovery
    assert got == [
        ("identity:press-1/setpoint", True, "pending"),
        ("identity:press-1/setpoint", False, "acknowledged"),
    ]
    assert rec.of("deviation")[0]["service_id"] == "identities"


def test_activity_identity_filter_matches_audit_targets_like_the_list() -> None:
    from millrace.api.stream_filters import compile_filters

    f = compile_filters("activity", {"identity": ["press-1"]})
    assert f.match({"activity_type": "alarm", "identity": "press-1"})
    assert f.match({"activity_type": "audit", "target_id": "press-1"})
    assert not f.match({"activity_type": "audit", "target_id": "press-2"})
    assert not f.match({"activity_type": "alarm", "identity": "press-2"})
