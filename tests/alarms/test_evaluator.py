"""The pure alarm evaluator (pipeline/alarms/evaluator.py): examples per rule kind, the
lifecycle of rules and identities, and properties against models written here —
hysteresis (no flapping inside the deadband), on/off delays, stale detection with a
controlled clock, raise/clear order under any event order, snapshot/restore
equivalence — with every emitted event checked against the Avro contract."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace.pipeline.alarms.evaluator import Evaluator, alarm_id
from millrace.pipeline.alarms.rules import parse_rule, rule_event
from millrace.pipeline.codec import default_codec

CODEC = default_codec()
S = 1_000_000
T0 = 1_750_000_000 * S
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Events = list[dict[str, Any]]
Step = tuple[str, dict[str, Any]]


# -- event builders ----------------------------------------------------------------------


def define(**rule: Any) -> Step:
    r = parse_rule(rule)
    return ("alarms", rule_event(r, r.id, T0, "alice"))


def remove(rule_id: str, ts: int = T0) -> Step:
    return ("alarms", rule_event(None, rule_id, ts, "alice"))


def tel(identity: str, t: float, quality: int = 0, **values: Any) -> Step:
    """A batch of one sample at T0 + t seconds."""
    ts = T0 + round(t * S)
    return (
        "telemetry",
        {
            "identity": identity,
            "source": "test",
            "received_us": ts,
            "samples": [{"ts_us": ts, "values": values, "quality": quality}],
            "ip": None,
        },
    )


def ident(identity: str, t: float, type_: str, **state: Any) -> Step:
    return (
        "identity",
        {
            "event_id": f"{identity}-{t}-{type_}",
            "identity": identity,
            "ts_us": T0 + round(t * S),
            "type": type_,
            "actor": "alice",
            "ip": None,
            "tags": None,
            "state": {k: json.dumps(v) for k, v in state.items()} if state else None,
            "attributes": {},
        },
    )


def status(resource: str, t: float, desired: str, current: str, service: str = "opcua") -> Step:
    return (
        "status",
        {
            "resource_id": resource,
            "service_id": service,
            "resource_type": "connection",
            "desired_state": desired,
            "current_state": current,
            "info": "",
            "runner": None,
            "ts_us": T0 + round(t * S),
            "metrics": {},
        },
    )


def advance(t: float) -> Step:
    return ("advance", {"now_us": T0 + round(t * S)})


def run(steps: Iterable[Step], ev: Evaluator | None = None) -> Events:
    """Feed ``steps`` and return every emitted event, each checked against the codec."""
    ev = ev if ev is not None else Evaluator()
    out: Events = []
    for topic, value in steps:
        out.extend(ev.advance(value["now_us"]) if topic == "advance" else ev.on_event(topic, value))
    check_codec(out)
    return out


def check_codec(events: Events) -> None:
    for e in events:
        assert CODEC.decode("alarms", CODEC.encode("alarms", e)) == e


def brief(events: Events) -> list[tuple[str, float, Any]]:
    """(type, seconds after T0, trigger value) of each event."""
    return [(e["type"], (e["ts_us"] - T0) / S, e["trigger_value"]) for e in events]


def secs(t_us: int) -> float:
    return (t_us - T0) / S


# -- limit -------------------------------------------------------------------------------

HOT = {"id": "hot", "kind": "limit", "signal": "temp", "high": 50, "deadband": 5}


def test_limit_raise_and_clear_with_deadband() -> None:
    out = run(
        [
            define(**HOT, priority=200, type="high_temperature", message="{identity} {value}"),
            tel("oven", 1, temp=40),
            tel("oven", 2, temp=50),  # not above high
            tel("oven", 3, temp=51),  # raised
            tel("oven", 4, temp=60),
            tel("oven", 5, temp=46),  # inside the deadband: still active
            tel("oven", 6, temp=52),  # no second raise
            tel("oven", 7, temp=45),  # high - deadband: cleared
            tel("oven", 8, temp=49),
        ]
    )
    assert brief(out) == [("RAISED", 3, 51), ("CLEARED", 7, 45)]
    raised, cleared = out
    assert (
        raised["alarm_id"] == cleared["alarm_id"] == alarm_id("hot", T0, "oven", "temp", T0 + 3 * S)
    )
    assert raised == {
        "alarm_id": raised["alarm_id"],
        "ts_us": T0 + 3 * S,
        "type": "RAISED",
        "rule_id": "hot",
        "rule_type": "high_temperature",
        "identity": "oven",
        "signal": "temp",
        "priority": 200,
        "message": "oven 51",
        "trigger_value": 51,
        "user": None,
        "note": None,
        "requires_ack": True,
        "definition": None,
    }
    assert cleared["message"] == "oven 45" and cleared["note"] is None


def test_limit_low_side_and_default_message() -> None:
    out = run(
        [
            define(id="cold", kind="limit", signal="temp", low=5.5, deadband=1),
            tel("fridge", 1, temp=5.0),
            tel("fridge", 2, temp=6.0),  # inside the deadband
            tel("fridge", 3, temp=6.5),  # low + deadband: cleared
        ]
    )
    assert brief(out) == [("RAISED", 1, 5.0), ("CLEARED", 3, 6.5)]
    assert out[0]["message"] == "temp of fridge is 5.0 (limit 5.5)"


def test_limit_jump_from_high_to_low_clears_then_raises() -> None:
    out = run(
        [
            define(id="band", kind="limit", signal="p", low=0, high=10, deadband=1),
            tel("d", 1, p=11),
            tel("d", 2, p=-1),  # clears the high alarm, raises the low one
            tel("d", 3, p=12),  # and back
        ]
    )
    assert [(e["type"], secs(e["ts_us"])) for e in out] == [
        ("RAISED", 1),
        ("CLEARED", 2),
        ("RAISED", 2),
        ("CLEARED", 3),
        ("RAISED", 3),
    ]
    assert out[0]["alarm_id"] == out[1]["alarm_id"] != out[2]["alarm_id"] == out[3]["alarm_id"]
    assert "(limit 0)" in out[2]["message"] and "(limit 10)" in out[0]["message"]


def test_limit_on_and_off_delays() -> None:
    rule = define(**HOT, on_delay_s=10, off_delay_s=5)
    out = run(
        [
            rule,
            tel("oven", 0, temp=60),
            tel("oven", 5, temp=40),  # the condition broke before 10 s: nothing
            tel("oven", 6, temp=60),
            tel("oven", 12, temp=61),
            tel("oven", 16, temp=62),  # the deadline (6 + 10) passed: RAISED at 16
            tel("oven", 20, temp=30),
            tel("oven", 22, temp=55),  # broke the off delay
            tel("oven", 23, temp=30),
            tel("oven", 30, temp=30),  # cleared at 23 + 5
        ]
    )
    assert brief(out) == [("RAISED", 16, 61), ("CLEARED", 28, 30)]


def test_delays_complete_on_the_timer_at_their_deadline() -> None:
    steps = [define(**HOT, on_delay_s=10), tel("oven", 0, temp=60)]
    ev = Evaluator()
    run(steps, ev)
    assert ev.advance(T0 + 9 * S) == []
    out = ev.advance(T0 + 100 * S)
    assert brief(out) == [("RAISED", 10, 60)]  # the deadline, not the clock
    # the same as when a later sample passes the deadline
    assert run([*steps, tel("oven", 12, temp=70)]) == out


def test_limit_ignores_bad_quality_and_non_numbers() -> None:
    out = run(
        [
            define(**HOT),
            tel("oven", 1, quality=-2147483648, temp=99),
            tel("oven", 2, temp="hot"),
            tel("oven", 3, temp=True),
            tel("oven", 4, temp=float("nan")),
            tel("oven", 5, temp=float("inf")),
            tel("oven", 6, temp=10),
        ]
    )
    assert out == []


def test_identity_regex_and_unwatched_signals() -> None:
    out = run(
        [
            define(**{**HOT, "identity": "oven-[0-9]+"}),
            tel("oven-1", 1, temp=60, humidity=99),
            tel("oven-x", 1, temp=60),
            tel("oven-12", 1, temp=60),
            tel("xoven-1", 1, temp=60),  # whole match only
        ]
    )
    assert [e["identity"] for e in out] == ["oven-1", "oven-12"]


def test_several_rules_on_one_signal() -> None:
    out = run(
        [
            define(**HOT),
            define(id="hotter", kind="limit", signal="temp", high=80, priority=250),
            tel("oven", 1, temp=90),
        ]
    )
    assert sorted((e["rule_id"], e["priority"]) for e in out) == [("hot", 100), ("hotter", 250)]


# -- rate of change, equals --------------------------------------------------------------


def test_rate_of_change() -> None:
    out = run(
        [
            define(id="ramp", kind="rate_of_change", signal="p", max_rate=2),
            tel("d", 0, p=0),
            tel("d", 1, p=1.5),
            tel("d", 2, p=6),  # 4.5/s
            tel("d", 3, p=0),  # -6/s: still active
            tel("d", 5, p=1),  # 0.5/s: cleared
            tel("d", 5, p=100),  # same time: not a pair
            tel("d", 7, p=96),  # -2/s is within
        ]
    )
    assert brief(out) == [("RAISED", 2, 4.5), ("CLEARED", 5, 0.5)]
    assert out[0]["message"] == "p of d changes too fast (4.5/s, limit 2/s)"


@pytest.mark.parametrize(
    ("target", "values", "expected"),
    [
        (
            True,
            [False, True, 1, True, False],
            [("RAISED", 1), ("CLEARED", 2), ("RAISED", 3), ("CLEARED", 4)],
        ),
        ("open", ["closed", "open", "open", "OPEN"], [("RAISED", 1), ("CLEARED", 3)]),
        (1, [0, 1.0, 1, True, 2], [("RAISED", 1), ("CLEARED", 3)]),
    ],
)
def test_equals(target: Any, values: list[Any], expected: list[tuple[str, int]]) -> None:
    steps = [define(id="eq", kind="equals", signal="s", value=target)]
    steps += [tel("d", i, s=v) for i, v in enumerate(values)]
    assert [(e["type"], secs(e["ts_us"])) for e in run(steps)] == expected


# -- stale -------------------------------------------------------------------------------

STALE = {"id": "quiet", "kind": "stale", "signal": "temp", "timeout_s": 30}


def test_stale_with_a_controlled_clock() -> None:
    ev = Evaluator()
    run([define(**STALE), tel("a", 0, temp=1), tel("b", 10, temp=2)], ev)
    assert ev.advance(T0 + 29 * S) == []
    out = ev.advance(T0 + 35 * S)
    assert brief(out) == [("RAISED", 30, None)]
    assert out[0]["identity"] == "a" and out[0]["message"] == "temp of a sent nothing for 30 s"
    assert ev.advance(T0 + 35 * S) == []  # fired once
    out = run([tel("a", 50, temp=3), advance(60)], ev)
    assert brief(out) == [("CLEARED", 50, 3), ("RAISED", 40, None)]
    assert [e["identity"] for e in out] == ["a", "b"]
    assert out[0]["alarm_id"] == alarm_id("quiet", T0, "a", "temp", T0 + 30 * S)


def test_stale_tracks_only_identities_that_reported() -> None:
    ev = Evaluator()
    run([define(**STALE), tel("a", 0, humidity=1), tel("b", 0, quality=1, temp=1)], ev)
    assert ev.advance(T0 + 1000 * S) == []


def test_stale_found_by_a_late_sample_without_the_timer() -> None:
    out = run([define(**STALE), tel("a", 0, temp=1), tel("a", 100, temp=2)])
    assert brief(out) == [("RAISED", 30, None), ("CLEARED", 100, 2)]


def test_stale_rerun_after_crash_is_identical() -> None:
    ev = Evaluator()
    run([define(**STALE), tel("a", 0, temp=1)], ev)
    saved = ev.snapshot()
    first = ev.advance(T0 + 40 * S)
    again = Evaluator(saved).advance(T0 + 55 * S)  # the clock moved on meanwhile
    assert first == again and len(first) == 1


# -- deviations --------------------------------------------------------------------------

VALVE = {"id": "valve-dev", "kind": "deviation", "signal": "valve", "for_s": 10}


def test_deviation_raised_after_for_s_and_cleared_by_the_report() -> None:
    ev = Evaluator()
    run([define(**VALVE), tel("d", 0, valve=False), ident("d", 1, "STATE_SET", valve=True)], ev)
    assert ev.advance(T0 + 10 * S) == []
    out = ev.advance(T0 + 11 * S)
    assert brief(out) == [("RAISED", 11, False)]
    assert out[0]["message"] == "valve of d reports False, set to True"
    out = run([tel("d", 12, valve=True)], ev)
    assert brief(out) == [("CLEARED", 12, True)]


def test_deviation_cleared_by_a_new_set_equal_to_the_report() -> None:
    out = run(
        [
            define(**VALVE),
            tel("d", 0, valve=20),
            ident("d", 1, "STATE_SET", valve=25),
            tel("d", 30, valve=20),  # fires the deadline (11)
            ident("d", 31, "STATE_SET", valve=20.0),  # 20 == 20.0
        ]
    )
    assert brief(out) == [("RAISED", 11, 20), ("CLEARED", 31, 20)]


def test_deviation_without_report_and_acknowledgement() -> None:
    out = run(
        [
            define(**{**VALVE, "for_s": 0}),
            ident("d", 1, "STATE_SET", valve={"mode": "auto"}),  # never reported
            ident("d", 2, "STATE_ACKNOWLEDGED", valve={"mode": "auto"}),
            ident("d", 3, "STATE_SET", valve=[1, 2]),
            tel("d", 4, valve="x"),
        ]
    )
    assert brief(out) == [
        ("RAISED", 1, None),
        ("CLEARED", 2, '{"mode":"auto"}'),
        ("RAISED", 3, '{"mode":"auto"}'),
    ]
    assert out[0]["message"] == 'valve of d reports , set to {"mode":"auto"}'


def test_deviation_short_blips_do_not_raise() -> None:
    out = run(
        [
            define(**VALVE),
            ident("d", 0, "STATE_SET", valve=1),
            tel("d", 5, valve=1),
            ident("d", 6, "STATE_SET", valve=2),
            tel("d", 15, valve=2),
            advance(100),
        ]
    )
    assert out == []


def test_resource_deviation() -> None:
    ev = Evaluator()
    steps = [
        define(id="conn", kind="resource_deviation", for_s=60, service_ids=["opcua"], priority=9),
        status("opcua:plc1", 0, "running", "connecting"),
        status("opcua:plc2", 0, "running", "error"),
        status("mqtt:b1", 0, "running", "error", service="mqtt"),  # another service
        status("opcua:plc1", 5, "running", "running"),
        status("opcua:plc2", 30, "running", "error"),  # heartbeat
    ]
    assert run(steps, ev) == []
    out = ev.advance(T0 + 61 * S)
    assert brief(out) == [("RAISED", 60, "error")]
    (raised,) = out
    assert (raised["identity"], raised["signal"], raised["priority"]) == ("opcua:plc2", None, 9)
    assert raised["message"] == "opcua:plc2 is error, should be running"
    out = run([status("opcua:plc2", 70, "running", "running")], ev)
    assert brief(out) == [("CLEARED", 70, "running")]
    assert out[0]["alarm_id"] == raised["alarm_id"]


# -- rules and identities over time ------------------------------------------------------


def test_rule_removed_clears_with_a_note() -> None:
    out = run([define(**HOT), tel("a", 1, temp=60), tel("b", 2, temp=70), remove("hot", T0)])
    assert [(e["type"], e["identity"]) for e in out] == [
        ("RAISED", "a"),
        ("RAISED", "b"),
        ("CLEARED", "a"),
        ("CLEARED", "b"),
    ]
    assert out[2]["note"] == out[3]["note"] == "rule hot removed"
    # never before its RAISED, although the rule event is older
    assert out[3]["ts_us"] == T0 + 2 * S and out[3]["trigger_value"] is None
    assert out[3]["alarm_id"] == out[1]["alarm_id"]


def test_disabled_rule_clears_and_evaluates_nothing() -> None:
    ev = Evaluator()
    out = run([define(**HOT), tel("a", 1, temp=60), define(**HOT, enabled=False)], ev)
    assert [e["type"] for e in out] == ["RAISED", "CLEARED"]
    assert out[1]["note"] == "rule hot disabled"
    assert run([tel("a", 2, temp=90), advance(1000)], ev) == []
    assert ev.rules["hot"].enabled is False
    out = run([define(**HOT), tel("a", 3, temp=90)], ev)  # enabled again: starts afresh
    assert brief(out) == [("RAISED", 3, 90)]


def test_redefined_rule_keeps_its_alarm_and_rejudges_it() -> None:
    ev = Evaluator()
    raised = run([define(**HOT), tel("a", 1, temp=60)], ev)
    assert run([define(**HOT)], ev) == []  # the same definition again: nothing
    assert run([define(**{**HOT, "high": 55, "priority": 3})], ev) == []  # kept
    assert run([tel("a", 2, temp=52)], ev) == []  # inside the new deadband
    out = run([define(**{**HOT, "high": 70}), tel("a", 3, temp=60)], ev)
    assert brief(out) == [("CLEARED", 3, 60)]
    assert out[0]["alarm_id"] == raised[0]["alarm_id"]


def test_redefined_rule_that_no_longer_watches_clears() -> None:
    ev = Evaluator()
    run([define(**HOT), tel("a", 1, temp=60), tel("b", 1, temp=60)], ev)
    out = run([define(**{**HOT, "identity": "b"})], ev)
    assert [(e["type"], e["identity"]) for e in out] == [("CLEARED", "a")]
    assert out[0]["note"] == "rule hot redefined: no longer watches it"
    out = run([define(**{**HOT, "signal": "pressure"})], ev)
    assert [(e["type"], e["identity"], e["signal"]) for e in out] == [("CLEARED", "b", "temp")]
    assert "another signal" in out[0]["note"]


def test_identity_deleted_clears_its_alarms() -> None:
    out = run(
        [
            define(**HOT),
            define(**STALE),
            tel("a", 1, temp=60),
            tel("b", 1, temp=60),
            ident("a", 2, "DELETED"),
            advance(100),
        ]
    )
    assert [(e["type"], e["identity"], e["rule_id"]) for e in out] == [
        ("RAISED", "a", "hot"),
        ("RAISED", "b", "hot"),
        ("CLEARED", "a", "hot"),
        ("RAISED", "b", "quiet"),  # a is no longer tracked
    ]
    assert out[2]["note"] == "identity a deleted"


def test_rule_defined_again_after_removal_never_reuses_an_id() -> None:
    ev = Evaluator()
    first = run([define(**HOT), tel("a", 1, temp=60), remove("hot", T0 + 5 * S)], ev)
    redefined = ("alarms", {**define(**HOT)[1], "ts_us": T0 + 9 * S})
    again = run([redefined, tel("a", 1, temp=60)], ev)  # the same reading, re-sent
    assert [e["type"] for e in first + again] == ["RAISED", "CLEARED", "RAISED"]
    assert first[1]["ts_us"] == T0 + 5 * S
    assert again[0]["alarm_id"] == alarm_id("hot", T0 + 9 * S, "a", "temp", T0 + 1 * S)
    assert again[0]["alarm_id"] != first[0]["alarm_id"]


def test_nothing_older_raises_after_a_clear_by_deletion() -> None:
    ev = Evaluator()
    out = run([define(**HOT), tel("a", 1, temp=60), ident("a", 5, "DELETED")], ev)
    assert [(e["type"], secs(e["ts_us"])) for e in out] == [("RAISED", 1), ("CLEARED", 5)]
    assert run([tel("a", 3, temp=70)], ev) == []  # older than the CLEARED
    assert ev.stats["out_of_order"] == 1
    assert brief(run([tel("a", 6, temp=70)], ev)) == [("RAISED", 6, 70)]


def test_redefinition_cancels_pending_delays() -> None:
    ev = Evaluator()
    run([define(**HOT, on_delay_s=10), tel("a", 0, temp=60)], ev)
    run([define(**HOT, on_delay_s=20)], ev)
    assert ev.advance(T0 + 15 * S) == []
    out = run([tel("a", 16, temp=60), advance(40)], ev)  # judged afresh from 16
    assert brief(out) == [("RAISED", 36, 60)]


def test_other_alarm_events_and_topics_are_ignored() -> None:
    ev = Evaluator()
    raised = run([define(**HOT), tel("a", 1, temp=60)], ev)
    for type_ in ("RAISED", "CLEARED", "ACKNOWLEDGED", "DISCARDED", "ANNOTATED", "UNKNOWN"):
        assert ev.on_event("alarms", {**raised[0], "type": type_, "user": "bob"}) == []
    assert ev.on_event("commands", {"identity": "a"}) == []
    assert ev.on_event("alarms", {**rule_event(None, "x", T0, None), "type": "RULE_DEFINED"}) == []
    bad = {**define(**HOT)[1], "definition": '{"id": "hot", "kind": "limit"}'}
    assert ev.on_event("alarms", bad) == []
    assert ev.stats["bad_rules"] == 2
    assert ev.rules["hot"].high == 50


def test_rules_view_is_read_only() -> None:
    ev = Evaluator()
    run([define(**HOT)], ev)
    with pytest.raises(TypeError):
        ev.rules["x"] = ev.rules["hot"]  # type: ignore[index]


def test_out_of_order_samples_are_ignored_and_counted() -> None:
    ev = Evaluator()
    out = run(
        [define(**HOT), tel("a", 10, temp=60), tel("a", 5, temp=10), tel("a", 10, temp=10)], ev
    )
    assert brief(out) == [("RAISED", 10, 60), ("CLEARED", 10, 10)]
    assert ev.stats["out_of_order"] == 1


def test_a_batch_of_many_samples() -> None:
    batch = {
        "identity": "a",
        "source": "s",
        "received_us": T0,
        "samples": [
            {"ts_us": T0 + i * S, "values": {"temp": v, "x": 1}, "quality": 0}
            for i, v in enumerate([10, 60, 70, 40, 60])
        ],
        "ip": "10.0.0.1",
    }
    out = run([define(**HOT), ("telemetry", batch)])
    assert brief(out) == [("RAISED", 1, 60), ("CLEARED", 3, 40), ("RAISED", 4, 60)]
    assert len({e["alarm_id"] for e in out}) == 2


def test_alarm_ids_are_unique_at_one_onset() -> None:
    out = run([define(**HOT), tel("a", 1, temp=60), tel("a", 1, temp=0), tel("a", 1, temp=60)])
    assert [e["type"] for e in out] == ["RAISED", "CLEARED", "RAISED"]
    assert out[0]["alarm_id"] != out[2]["alarm_id"]


def test_snapshot_is_json_and_bounded() -> None:
    ev = Evaluator()
    steps = [define(**HOT), define(**VALVE)]
    steps += [tel("a", i, temp=40 + i % 20, valve=i) for i in range(500)]
    run(steps, ev)
    data = json.loads(ev.snapshot())
    assert [r["id"] for r in data["rules"]] == ["hot", "valve-dev"]
    assert len(data["tracks"]) == 2  # one key per (rule, identity), no history
    assert len(ev.snapshot()) < 2000


# -- properties --------------------------------------------------------------------------


def alternation(events: Events) -> None:
    """Per (rule, identity, signal): RAISED, CLEARED, RAISED, ... in time order, each
    CLEARED with the id of the RAISED before it, no id raised twice. (A rule removed and
    defined again starts afresh: a new generation, with its own alarm ids.)"""
    check_codec(events)
    open_: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    last_ts: dict[tuple[str, str, str | None], int] = {}
    raised_ids: set[str] = set()
    for e in events:
        key = (e["rule_id"], e["identity"], e["signal"])
        assert e["ts_us"] >= last_ts.get(key, e["ts_us"]), e
        last_ts[key] = e["ts_us"]
        if e["type"] == "RAISED":
            assert key not in open_, e
            assert e["alarm_id"] not in raised_ids
            raised_ids.add(e["alarm_id"])
            open_[key] = e
        else:
            assert e["type"] == "CLEARED"
            assert e["alarm_id"] == open_.pop(key)["alarm_id"]
            if e["note"] == f"rule {e['rule_id']} removed":
                del last_ts[key]


HIGH, LOW = 50.0, 10.0
level = st.integers(min_value=0, max_value=60).map(float)


def limit_model(values: Sequence[float], deadband: float) -> list[tuple[str, str]]:
    """(event, side) per step of a two-sided limit with zero delays, written plainly."""
    active: str | None = None
    out = []
    for v in values:
        if active == "high" and v <= HIGH - deadband:
            out.append(("CLEARED", "high"))
            active = None
        elif active == "low" and v >= LOW + deadband:
            out.append(("CLEARED", "low"))
            active = None
        if active is None and v > HIGH:
            out.append(("RAISED", "high"))
            active = "high"
        elif active is None and v < LOW:
            out.append(("RAISED", "low"))
            active = "low"
    return out


@PROPS
@given(
    prefix=st.lists(level, max_size=15),
    deadband=st.integers(min_value=0, max_value=39).map(float),  # < high - low
    tail=st.lists(st.floats(min_value=0, max_value=1), max_size=25),
)
def test_no_flapping_inside_the_deadband(
    prefix: list[float], deadband: float, tail: list[float]
) -> None:
    # after a value above high, any sequence within [high - deadband, high] raises nothing
    inside = [HIGH - deadband + f * deadband for f in tail]
    values = [*prefix, HIGH + 1, *inside]
    steps = [define(id="band", kind="limit", signal="v", high=HIGH, low=LOW, deadband=deadband)]
    steps += [tel("d", i, v=v) for i, v in enumerate(values)]
    out = run(steps)
    alternation(out)
    sides = [(e["type"], "high" if "limit 50" in e["message"] else "low") for e in out]
    assert sides == limit_model(values, deadband)
    tail_start = T0 + (len(prefix) + 1) * S
    assert not [e for e in out if e["type"] == "RAISED" and e["ts_us"] >= tail_start]


def delay_model(
    samples: Sequence[tuple[int, float]], on: int, off: int, deadband: float, end: int
) -> list[tuple[str, int]]:
    """A high limit with on/off delays, stepped second by second: the condition must
    hold at every second of [since, since + delay); the transition happens at the start
    of second since + delay, before a sample of that second."""
    at = dict(samples)
    active = False
    since: int | None = None  # when the pending transition's condition began
    out: list[tuple[str, int]] = []
    for t in range(end + 1):
        for _ in range(2):  # before the sample of second t, and after it
            if since is not None and t >= since + (off if active else on):
                out.append(("CLEARED" if active else "RAISED", t))
                active, since = not active, None
            if _ == 0 and t in at:
                v = at[t]
                wants_change = (v <= HIGH - deadband) if active else (v > HIGH)
                if not wants_change:
                    since = None
                elif since is None:
                    since = t
    return out


@PROPS
@given(
    gaps=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=30),
    values=st.lists(st.sampled_from([30.0, 45.0, 48.0, 51.0, 70.0]), min_size=30, max_size=30),
    on=st.integers(min_value=0, max_value=6),
    off=st.integers(min_value=0, max_value=6),
    deadband=st.sampled_from([0.0, 5.0]),
    tail=st.integers(min_value=0, max_value=10),
)
def test_on_and_off_delays_hold(
    gaps: list[int], values: list[float], on: int, off: int, deadband: float, tail: int
) -> None:
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    samples = list(zip(times, values, strict=False))
    end = times[-1] + tail
    steps = [define(**{**HOT, "deadband": deadband, "on_delay_s": on, "off_delay_s": off})]
    steps += [tel("d", t, temp=v) for t, v in samples]
    steps.append(advance(end))
    out = run(steps)
    alternation(out)
    got = [(e["type"], round(secs(e["ts_us"]))) for e in out]
    assert got == delay_model(samples, on, off, deadband, end)

    # and directly: no RAISED before the value stayed above high for on_delay_s
    def held(u: int) -> float:
        return [v for ts, v in samples if ts <= u][-1]

    for e in out:
        t = round(secs(e["ts_us"]))
        if e["type"] == "RAISED" and on:
            assert all(held(u) > HIGH for u in range(t - on, t))
        elif e["type"] == "RAISED":
            assert dict(samples)[t] > HIGH


@PROPS
@given(
    gaps=st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=20),
    clock=st.lists(st.integers(min_value=0, max_value=60), max_size=20),
    timeout=st.integers(min_value=1, max_value=40),
    tail=st.integers(min_value=0, max_value=80),
)
def test_stale_detection_with_a_controlled_clock(
    gaps: list[int], clock: list[int], timeout: int, tail: int
) -> None:
    """Wherever the timer ticks (monotonic, never ahead of the samples still to come),
    a gap of at least ``timeout`` gives RAISED at last + timeout and CLEARED at the next
    sample; the clock only decides when, not what."""
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    end = times[-1] + tail
    steps: list[Step] = [define(**{**STALE, "timeout_s": timeout})]
    ticks = iter(sorted(clock))
    tick = next(ticks, None)
    for t in times:
        while tick is not None and tick <= t:
            steps.append(advance(tick))
            tick = next(ticks, None)
        steps.append(tel("d", t, temp=t))
    steps.append(advance(end))
    out = run(steps)
    alternation(out)
    expected: list[tuple[str, float, Any]] = []
    for prev, t in itertools.pairwise(times):
        if t - prev >= timeout:
            expected += [("RAISED", prev + timeout, None), ("CLEARED", t, t)]
    if end - times[-1] >= timeout:
        expected.append(("RAISED", times[-1] + timeout, None))
    assert brief(out) == expected


RULESET = [
    define(**HOT, on_delay_s=2, off_delay_s=1),
    define(id="band", kind="limit", signal="temp", high=60, low=20, deadband=5),
    define(id="ramp", kind="rate_of_change", signal="temp", max_rate=15, off_delay_s=1),
    define(id="eq", kind="equals", signal="mode", value="alarm"),
    define(**{**STALE, "timeout_s": 5}),
    define(**{**VALVE, "signal": "temp", "for_s": 3}),
]

sample = st.tuples(
    st.integers(min_value=0, max_value=30),
    st.sampled_from([0.0, 15.0, 30.0, 47.0, 52.0, 70.0]),
    st.sampled_from(["auto", "alarm"]),
)


@PROPS
@given(st.lists(sample, max_size=25).flatmap(st.permutations), st.data())
def test_raise_clear_order_under_any_event_order(
    samples: list[tuple[int, float, str]], data: st.DataObject
) -> None:
    steps: list[Step] = [tel("d", t, temp=v, mode=m) for t, v, m in samples]
    steps.append(ident("d", 10, "STATE_SET", temp=47.0))
    for _ in range(data.draw(st.integers(min_value=0, max_value=4))):
        now = data.draw(st.integers(min_value=0, max_value=40))
        steps.insert(data.draw(st.integers(min_value=0, max_value=len(steps))), advance(now))
    out = run([*RULESET, *steps, advance(100)])
    alternation(out)
    assert {e["identity"] for e in out} <= {"d"}


def mixed_step() -> st.SearchStrategy[Step]:
    identity = st.sampled_from(["a", "b"])
    t = st.integers(min_value=0, max_value=40)
    return st.one_of(
        st.builds(
            lambda i, t, v, m, q: tel(i, t, quality=q, temp=v, mode=m),
            identity,
            t,
            st.sampled_from([0.0, 15.0, 30.0, 47.0, 52.0, 70.0, 5]),
            st.sampled_from(["auto", "alarm"]),
            st.sampled_from([0, 0, 0, 1]),
        ),
        st.builds(
            lambda i, t, v: ident(i, t, "STATE_SET", temp=v),
            identity,
            t,
            st.sampled_from([47.0, 52]),
        ),
        st.builds(lambda i, t: ident(i, t, "DELETED"), identity, t),
        st.builds(
            lambda r, t, c: status(r, t, "running", c),
            st.sampled_from(["plc1", "plc2"]),
            t,
            st.sampled_from(["running", "error"]),
        ),
        st.builds(advance, t),
        st.sampled_from(RULESET),
        st.sampled_from(
            [
                define(**{**HOT, "high": 40}),
                define(**{**HOT, "enabled": False}),
                define(**{**HOT, "identity": "a"}),
                define(id="conn", kind="resource_deviation", for_s=4),
                remove("hot"),
                remove("quiet"),
            ]
        ),
    )


@PROPS
@given(st.lists(mixed_step(), max_size=40), st.data())
def test_snapshot_restore_gives_the_same_events(steps: list[Step], data: st.DataObject) -> None:
    steps = [*RULESET, define(id="conn", kind="resource_deviation", for_s=4), *steps]
    cut = data.draw(st.integers(min_value=0, max_value=len(steps)))
    whole = Evaluator()
    expected = run(steps, whole)
    first = Evaluator()
    got = run(steps[:cut], first)
    restored = Evaluator(first.snapshot())
    assert restored.snapshot() == first.snapshot()
    got += run(steps[cut:], restored)
    assert got == expected
    assert restored.snapshot() == whole.snapshot()
    assert run(steps) == expected  # deterministic
    alternation(expected)
