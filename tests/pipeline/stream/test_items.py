"""The live-stream item builder (pipeline/stream/items.py) with plain data: events in,
items out, no log and no codec (the tail that drives it: tests/api/test_stream_tail.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from millrace.api.timeparams import format_time
from millrace.pipeline.stream.items import ItemBuilder, _time
from millrace.pipeline.topics import ALARMS, AUDIT, IDENTITY, STATUS, TELEMETRY

T0 = 1_748_779_200_123_456
ISO0 = "2025-06-01T12:00:00.123456Z"


def alarm(step: str, alarm_id: str = "a1", **extra: Any) -> dict[str, Any]:
    return {
        "alarm_id": alarm_id,
        "ts_us": T0,
        "type": step,
        "rule_id": "r",
        "rule_type": "high_limit",
        "identity": "press-1",
        "signal": "temp",
        "priority": 200,
        "message": "hot",
        "trigger_value": 91.5,
        "user": None,
        "note": None,
        "requires_ack": True,
        "definition": None,
        **extra,
    }


def status(resource_id: str, desired: str, current: str) -> dict[str, Any]:
    return {
        "resource_id": resource_id,
        "service_id": "svc",
        "resource_type": "connection",
        "desired_state": desired,
        "current_state": current,
        "info": "",
        "runner": "host",
        "ts_us": T0,
    }


def test_alarm_steps_carry_the_state_seen_so_far() -> None:
    b = ItemBuilder()
    assert b.items(ALARMS, alarm("RULE_DEFINED")) == []
    seen = []
    for step in ("RAISED", "ACKNOWLEDGED", "CLEARED", "DISCARDED", "RAISED"):
        items = b.items(ALARMS, alarm(step))
        assert [k for k, _ in items] == ["alarm", "activity"]
        assert items[1][1] == {"activity_type": "alarm", **items[0][1]}
        d = items[0][1]
        seen.append((d["event"], d["state"], d["acknowledged"], d["discarded"]))
        assert d["timestamp"] == ISO0
    assert seen == [
        ("RAISED", "active", False, False),
        ("ACKNOWLEDGED", "active", True, False),
        ("CLEARED", "cleared", True, False),
        ("DISCARDED", "cleared", True, True),
        ("RAISED", "active", False, False),  # raised again: a new life
    ]
    # an alarm raised before the builder started: state unknown until raise or clear
    assert b.items(ALARMS, alarm("ACKNOWLEDGED", "old"))[0][1]["state"] is None


def test_deviations_only_when_the_flag_changes() -> None:
    b = ItemBuilder()
    assert b.items(STATUS, status("r1", "on", "on")) == []  # first, not deviated
    out = b.items(STATUS, status("r1", "on", "off"))
    assert [(k, d["deviated"]) for k, d in out] == [("deviation", True)]
    assert b.items(STATUS, status("r1", "on", "starting")) == []  # still deviated
    assert [d["deviated"] for _, d in b.items(STATUS, status("r1", "on", "on"))] == [False]


def test_desired_state_deviates_until_acknowledged() -> None:
    b = ItemBuilder()

    def ev(kind: str) -> dict[str, Any]:
        return {"identity": "d", "type": kind, "ts_us": T0, "state": {"sp": "21"}}

    # an acknowledgement of a set value the builder did not see (set before the tail
    # started) is a recovery; once known recovered, not again
    assert [d["deviated"] for _, d in b.items(IDENTITY, ev("STATE_ACKNOWLEDGED"))] == [False]
    assert b.items(IDENTITY, ev("STATE_ACKNOWLEDGED")) == []
    (kind, d), *rest = b.items(IDENTITY, ev("STATE_SET"))
    assert rest == [] and kind == "deviation"
    assert (d["resource_id"], d["desired_state"], d["deviated"]) == ("identity:d/sp", "21", True)
    assert b.items(IDENTITY, ev("STATE_SET")) == []
    (_, d), *_ = b.items(IDENTITY, ev("STATE_ACKNOWLEDGED"))
    assert (d["current_state"], d["deviated"], d["info"]) == ("21", False, "acknowledged")
    assert b.items(IDENTITY, {**ev("CONNECTED"), "state": None}) == []


def test_latest_audit_and_unknown_topics() -> None:
    b = ItemBuilder()
    batch = {
        "identity": "d",
        "samples": [
            {"ts_us": T0, "values": {"a": 1.0, "b": "x"}, "quality": 0},
            {"ts_us": T0 + 1, "values": {"a": 2.0}},
        ],
    }
    assert [(d["signal"], d["value"], d["quality"]) for _, d in b.items(TELEMETRY, batch)] == [
        ("a", 1.0, 0),
        ("b", "x", 0),
        ("a", 2.0, 0),
    ]
    audit = {
        "audit_id": "u1",
        "ts_us": T0,
        "actor": "key:1:ops",
        "actor_role": "admin",
        "action": "create",
        "target_type": "identity",
        "target_id": "d",
        "before": None,
        "after": '{"x": 1}',
    }
    ((kind, d),) = b.items(AUDIT, audit)
    assert kind == "activity" and d["after"] == {"x": 1} and d["status"] == "ok"
    assert b.items("services", {"anything": 1}) == []


def test_memory_is_bounded() -> None:
    b = ItemBuilder(max_tracked=2)
    for rid in ("r1", "r2", "r3"):
        b.items(STATUS, status(rid, "on", "off"))
    # r1 was forgotten: its recovery is a first status that is not deviated
    assert b.items(STATUS, status("r1", "on", "on")) == []
    assert b.items(STATUS, status("r3", "on", "on"))[0][1]["deviated"] is False


@given(st.integers(0, 253_402_300_799_999_999))
def test_times_are_written_as_the_api_writes_them(ts_us: int) -> None:
    assert _time(ts_us) == format_time(ts_us, None)
