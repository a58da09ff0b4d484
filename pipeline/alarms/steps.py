"""What a user may do to an alarm: the refusal rules, in one place.

Every alarm is born ``pending`` and stays so until a user acknowledges it (Metasys-like),
whether or not its rule requires an acknowledgement; ``discarded`` is final. So:

- acknowledging an alarm that is not pending (already acknowledged, or discarded) is
  refused;
- discarding a discarded alarm is refused;
- annotating is accepted in any status.

The alarm fold (``pipeline.processors.alarms``) refuses such a step as a dead letter;
the API asks the same :func:`refusal` before it appends one and answers 409. Both read
an alarm as the ``millrace.alarms`` row (``alarm_id``, ``mgmt_status``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from millrace.pipeline.events import alarm_event

ACKNOWLEDGE, DISCARD, ANNOTATE = "ACKNOWLEDGED", "DISCARDED", "ANNOTATED"
USER_STEPS = (ACKNOWLEDGE, DISCARD, ANNOTATE)
PENDING, ACKNOWLEDGED, DISCARDED = "pending", "acknowledged", "discarded"
#: the management status an acknowledge or discard leaves
STATUS_AFTER = {ACKNOWLEDGE: ACKNOWLEDGED, DISCARD: DISCARDED}


def refusal(alarm: Mapping[str, Any], kind: str) -> str | None:
    """Why the user step ``kind`` cannot be applied to ``alarm`` now, or None."""
    status = alarm["mgmt_status"]
    if kind == ACKNOWLEDGE and status != PENDING:
        return f"alarm {alarm['alarm_id']!r} is {status}: it cannot be acknowledged"
    if kind == DISCARD and status == DISCARDED:
        return f"alarm {alarm['alarm_id']!r} is already discarded"
    return None


def landed(alarm: Mapping[str, Any] | None, kind: str, ts_us: int, user: str) -> bool:
    """Whether ``alarm`` shows the acknowledge/discard made at ``ts_us`` by ``user``
    (False: another step got there first, or it has not been applied yet)."""
    if alarm is None or alarm["mgmt_status"] != STATUS_AFTER[kind]:
        return False
    if kind == ACKNOWLEDGE:
        return bool(alarm["ack_us"] == ts_us and alarm["ack_user"] == user)
    return bool(alarm["discard_us"] == ts_us and alarm["discard_user"] == user)


def step_event(
    alarm: Mapping[str, Any], kind: str, ts_us: int, user: str, note: str | None
) -> dict[str, Any]:
    """The AlarmEvent of a user's step on ``alarm`` (an ``millrace.alarms`` row)."""
    return alarm_event(
        alarm["alarm_id"],
        kind,
        ts_us=ts_us,
        rule_id=alarm["rule_id"],
        rule_type=alarm["type"],
        identity=alarm["identity"],
        signal=alarm["signal"],
        priority=alarm["priority"],
        message=alarm["message"],
        user=user,
        note=note,
        requires_ack=alarm["requires_ack"],
    )
