"""The rule kinds alone (pipeline/alarms/kinds.py): the verdict each input gives, on
plain tracks, without the evaluator's routing or timer."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from millrace.pipeline.alarms import kinds
from millrace.pipeline.alarms.rules import parse_rule
from millrace.pipeline.alarms.tracks import UNSET, CompiledRule, Track

T = 1_000_000


def compiled(**rule: Any) -> CompiledRule:
    return CompiledRule(parse_rule({"id": "r", "type": "t", **rule}), gen=0)


def test_limit_in_range_with_nothing_pending_needs_no_judging() -> None:
    r = compiled(kind="limit", signal="v", high=10, low=0, deadband=1)
    tr = Track(0)
    assert kinds.limit(r, tr, T, 5.0) is None
    assert (tr.seen, tr.shown) == (T, 5.0)


def test_limit_wants_the_side_it_crosses_and_clears_only_past_the_deadband() -> None:
    r = compiled(kind="limit", signal="v", high=10, low=0, deadband=1)
    tr = Track(0)
    assert kinds.limit(r, tr, T, 11.0) == ("high", False, 11.0)
    assert kinds.limit(r, tr, T, -1) == ("low", False, -1)
    tr.side = "high"
    assert kinds.limit(r, tr, T, 9.5) == (None, False, 9.5)  # inside the deadband
    assert kinds.limit(r, tr, T, 9.0) == (None, True, 9.0)


@pytest.mark.parametrize("value", [True, "7", None, math.nan, math.inf, [1]])
def test_limit_judges_only_finite_numbers(value: Any) -> None:
    r = compiled(kind="limit", signal="v", high=1)
    assert kinds.limit(r, Track(0), T, value) is None


def test_rate_of_change_pairs_consecutive_samples() -> None:
    r = compiled(kind="rate_of_change", signal="v", max_rate=2)
    tr = Track(0)
    assert kinds.rate_of_change(r, tr, T, 0.0) is None  # no pair yet
    assert kinds.rate_of_change(r, tr, T, 5.0) is None  # same time: replaces the reference
    assert kinds.rate_of_change(r, tr, 2 * T, 8.0) == ("rate", False, 3.0)
    assert kinds.rate_of_change(r, tr, 3 * T, 9.0) == (None, True, 1.0)


def test_equals_compares_like_json_values() -> None:
    r = compiled(kind="equals", signal="v", value=1)
    tr = Track(0)
    assert kinds.equals(r, tr, T, 1.0) == ("equals", False, 1.0)
    assert kinds.equals(r, tr, T, True) is None  # True is not 1


def test_deviation_needs_a_set_value_that_no_report_equals() -> None:
    tr = Track(0)
    assert kinds.deviation(tr) == (None, True, None)
    tr.desired = 5
    assert kinds.deviation(tr) == ("deviation", False, None)
    tr.value = 5.0
    assert kinds.deviation(tr) == (None, True, 5.0)
    assert tr.value is not UNSET


@given(st.floats(allow_nan=False, allow_infinity=False), st.floats(min_value=0, max_value=5))
def test_limit_never_wants_a_side_and_clears_it_at_once(v: float, deadband: float) -> None:
    r = compiled(kind="limit", signal="v", high=10, low=0, deadband=deadband)
    tr = Track(0)
    tr.side = "high"
    verdict = kinds.limit(r, tr, T, v)
    assert verdict is not None
    want, clear_ok, _ = verdict
    assert not (want == "high" and clear_ok)
