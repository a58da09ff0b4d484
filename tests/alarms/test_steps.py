"""The alarm refusal rules (pipeline/alarms/steps.py) are the fold's: for every
management status and user step, the processor's ``apply`` refuses exactly when
``refusal`` does, with the same reason, and the API (tests/api/test_alarms.py) answers
409 with it."""

from __future__ import annotations

from typing import Any

import pytest

from millrace.pipeline.alarms.steps import (
    ACKNOWLEDGE,
    ANNOTATE,
    DISCARD,
    USER_STEPS,
    landed,
    refusal,
    step_event,
)
from millrace.pipeline.processors.alarms import AlarmRefusedError, apply

T0 = 1_760_000_000_000_000


def raised() -> dict[str, Any]:
    ev = {
        "alarm_id": "al_1",
        "ts_us": T0,
        "type": "RAISED",
        "rule_id": "r",
        "rule_type": "limit",
        "identity": "d",
        "signal": "t",
        "priority": 3,
        "message": "hot",
        "trigger_value": 5.0,
        "user": None,
        "note": None,
        "requires_ack": True,
        "definition": None,
    }
    state, _ = apply(None, ev, 1)
    assert state is not None
    return state


def in_status(status: str) -> dict[str, Any]:
    alarm: dict[str, Any] | None = raised()
    assert alarm is not None
    if status == "acknowledged":
        alarm, _ = apply(alarm, step_event(alarm, ACKNOWLEDGE, T0 + 1, "op", None), 2)
    elif status == "discarded":
        alarm, _ = apply(alarm, step_event(alarm, DISCARD, T0 + 1, "op", None), 2)
    assert alarm is not None and alarm["mgmt_status"] == status
    return alarm


@pytest.mark.parametrize("status", ["pending", "acknowledged", "discarded"])
@pytest.mark.parametrize("kind", USER_STEPS)
def test_the_fold_refuses_what_refusal_refuses(status: str, kind: str) -> None:
    alarm = in_status(status)
    problem = refusal(alarm, kind)
    ev = step_event(alarm, kind, T0 + 5, "someone-else", "why")
    if problem is None:
        after, _ = apply(alarm, ev, 9)
        assert after is not None and after["version"] == 9
        if kind != ANNOTATE:
            assert landed(after, kind, T0 + 5, "someone-else")
            assert not landed(after, kind, T0 + 5, "op")
    else:
        with pytest.raises(AlarmRefusedError) as info:
            apply(alarm, ev, 9)
        assert str(info.value) == problem


def test_the_rules() -> None:
    refused = {
        (s, k)
        for s in ("pending", "acknowledged", "discarded")
        for k in USER_STEPS
        if refusal(in_status(s), k) is not None
    }
    assert refused == {
        ("acknowledged", ACKNOWLEDGE),
        ("discarded", ACKNOWLEDGE),
        ("discarded", DISCARD),
    }


def test_a_repeated_step_is_no_refusal_in_the_fold() -> None:
    """A retried append of the step that was applied changes nothing, refused or not."""
    alarm = in_status("discarded")
    again = step_event(raised(), DISCARD, T0 + 1, "op", None)
    assert apply(alarm, again, 3) == (None, None)
