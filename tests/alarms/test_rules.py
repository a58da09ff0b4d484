"""Alarm rules (pipeline/alarms/rules.py): validation names the offending field, the
templates render whatever the operator wrote, and rules travel as AlarmEvents."""

from __future__ import annotations

import json
from typing import Any

import pytest

from millrace.pipeline.alarms.rules import (
    KINDS,
    AlarmRule,
    RuleError,
    parse_rule,
    rule_event,
    rule_problems,
)
from millrace.pipeline.codec import default_codec

CODEC = default_codec()

#: the smallest valid rule of every kind
MINIMAL: dict[str, dict[str, Any]] = {
    "limit": {"id": "r", "kind": "limit", "signal": "t", "high": 50},
    "rate_of_change": {"id": "r", "kind": "rate_of_change", "signal": "t", "max_rate": 2},
    "stale": {"id": "r", "kind": "stale", "signal": "t", "timeout_s": 30},
    "equals": {"id": "r", "kind": "equals", "signal": "door", "value": True},
    "deviation": {"id": "r", "kind": "deviation", "signal": "valve", "for_s": 10},
    "resource_deviation": {"id": "r", "kind": "resource_deviation", "for_s": 60},
}


def field_of(data: Any) -> str:
    with pytest.raises(RuleError) as exc:
        parse_rule(data)
    return exc.value.field


def test_every_kind_has_a_minimal_rule() -> None:
    assert set(MINIMAL) == set(KINDS)
    for kind, data in MINIMAL.items():
        rule = parse_rule(data)
        assert rule.kind == kind
        assert rule_problems(data) == []
        assert parse_rule(rule.to_json()) == rule  # JSON round trip


@pytest.mark.parametrize(("low", "high"), [(10, 10), (11, 10), (10.5, -3)])
def test_impossible_limits_are_rejected_naming_low(low: float, high: float) -> None:
    data = {"id": "r", "kind": "limit", "signal": "t", "low": low, "high": high}
    assert field_of(data) == "low"
    (field, message), *_ = rule_problems(data)
    assert field == "low"
    assert str(low) in message and str(high) in message


def test_deadband_must_fit_between_the_limits() -> None:
    base = {"id": "r", "kind": "limit", "signal": "t", "low": 0, "high": 10}
    assert field_of({**base, "deadband": 10}) == "deadband"
    assert parse_rule({**base, "deadband": 9.5}).deadband == 9.5
    assert field_of({**base, "deadband": -1}) == "deadband"


@pytest.mark.parametrize(
    ("kind", "missing", "field"),
    [
        ("limit", ("high",), "high"),
        ("limit", ("signal",), "signal"),
        ("rate_of_change", ("max_rate",), "max_rate"),
        ("rate_of_change", ("signal",), "signal"),
        ("stale", ("timeout_s",), "timeout_s"),
        ("stale", ("signal",), "signal"),
        ("equals", ("value",), "value"),
        ("equals", ("signal",), "signal"),
        ("deviation", ("signal",), "signal"),
        ("limit", ("id",), "id"),
        ("limit", ("kind",), "kind"),
    ],
)
def test_missing_fields_per_kind(kind: str, missing: tuple[str, ...], field: str) -> None:
    data = {k: v for k, v in MINIMAL[kind].items() if k not in missing}
    assert field_of(data) == field


def test_resource_deviation_needs_no_signal() -> None:
    assert parse_rule(MINIMAL["resource_deviation"]).signal is None


@pytest.mark.parametrize("field", ["identity", "resource_ids"])
def test_bad_regex_rejected(field: str) -> None:
    data = {**MINIMAL["limit"], field: "dev-(1"}
    assert field_of(data) == field
    assert "regular expression" in rule_problems(data)[0][1]


@pytest.mark.parametrize(("priority", "ok"), [(-1, False), (0, True), (255, True), (256, False)])
def test_priority_bounds(priority: int, ok: bool) -> None:
    data = {**MINIMAL["limit"], "priority": priority}
    if ok:
        assert parse_rule(data).priority == priority
    else:
        assert field_of(data) == "priority"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**MINIMAL["limit"], "high": float("nan")}, "high"),
        ({**MINIMAL["limit"], "high": float("inf")}, "high"),
        ({**MINIMAL["limit"], "high": "50"}, "high"),
        ({**MINIMAL["limit"], "high": True}, "high"),
        ({**MINIMAL["equals"], "value": [1]}, "value"),
        ({**MINIMAL["rate_of_change"], "max_rate": 0}, "max_rate"),
        ({**MINIMAL["stale"], "timeout_s": 0}, "timeout_s"),
        ({**MINIMAL["limit"], "on_delay_s": -1}, "on_delay_s"),
        ({**MINIMAL["limit"], "bogus": 1}, "bogus"),
        ({**MINIMAL["limit"], "id": "bad id"}, "id"),
        ({**MINIMAL["limit"], "kind": "threshold"}, "kind"),
        ({**MINIMAL["limit"], "service_ids": ["a", 3]}, "service_ids.1"),
        ({**MINIMAL["limit"], "message": "{value"}, "message"),
        ("{not json", "$"),
        ([1, 2], "$"),
    ],
)
def test_bad_values_name_their_field(data: Any, field: str) -> None:
    assert field_of(data) == field


def test_union_fields_are_reported_once() -> None:
    problems = rule_problems({**MINIMAL["limit"], "high": "x"})
    assert [f for f, _ in problems] == ["high"]
    problems = rule_problems({**MINIMAL["limit"], "high": float("nan")})
    assert problems == [("high", "Input should be a finite number")]


def test_rule_problems_lists_every_problem() -> None:
    problems = rule_problems({"id": "r", "kind": "limit", "signal": "t", "priority": 300, "x": 1})
    assert {f for f, _ in problems} == {"priority", "x"}


def test_default_templates_render_every_kind() -> None:
    for data in MINIMAL.values():
        text = AlarmRule.model_validate(data).render("dev-1", "t", 42, 50)
        assert "dev-1" in text
        assert "{" not in text


def test_template_fields() -> None:
    rule = parse_rule(
        {
            **MINIMAL["limit"],
            "type": "high_temperature",
            "message": "{type}/{rule}: {identity}.{signal}={value:.1f} > {limit} {unknown} {{x}}",
        }
    )
    text = rule.render("oven-3", "t", 51.234, 50)
    assert text == "high_temperature/r: oven-3.t=51.2 > 50 {unknown} {x}"
    assert rule.type_name == "high_temperature"
    assert parse_rule(MINIMAL["limit"]).type_name == "limit"


@pytest.mark.parametrize(
    ("template", "value", "expected"),
    [
        ("{value:.1f}", "text", "text"),  # a spec that does not suit the value
        ("{value:.1f}", None, ""),
        ("{0} {1}", 1, "{0} {1}"),  # positional fields stay as written
        ("{identity.__class__}", 1, "{identity.__class__}"),  # no attribute access
        ("{value[0]}", "abc", "{value[0]}"),  # no indexing
        ("{value!r}", "abc", "'abc'"),
        ("{value:>{width}}", 5, "5"),  # nested spec: the plain value
        ("{nope:>5}", 1, "{nope:>5}"),
    ],
)
def test_templates_never_fail(template: str, value: Any, expected: str) -> None:
    rule = parse_rule({**MINIMAL["limit"], "message": template})
    assert rule.render("d", "t", value, 50) == expected


def test_render_is_bounded() -> None:
    rule = parse_rule({**MINIMAL["limit"], "message": "{value}"})
    assert len(rule.render("d", "t", "x" * 10_000)) == 4096


def test_rule_events_encode() -> None:
    rule = parse_rule({**MINIMAL["limit"], "description": "too hot", "priority": 200})
    defined = rule_event(rule, rule.id, 1_700_000_000_000_000, "alice")
    removed = rule_event(None, rule.id, 1_700_000_000_000_001, "bob")
    for ev in (defined, removed):
        assert CODEC.decode("alarms", CODEC.encode("alarms", ev)) == ev
    assert defined["type"] == "RULE_DEFINED"
    assert parse_rule(json.loads(defined["definition"])) == rule
    assert removed["type"] == "RULE_REMOVED" and removed["definition"] is None
