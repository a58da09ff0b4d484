"""Alarm ids and the RAISED/CLEARED AlarmEvents the evaluator emits.

An alarm id derives from (rule, rule generation, identity, signal, onset) only, so a
re-run of the evaluator over the same inputs emits identical events and the projection
folds a duplicate as a no-op.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from millrace.pipeline import events
from millrace.pipeline.alarms.rules import AlarmRule

Event = dict[str, Any]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def alarm_id(
    rule_id: str, generation: int, identity: str, signal: str | None, onset_us: int, n: int = 0
) -> str:
    """The id of the alarm of (rule, identity, signal) raised at ``onset_us``.

    ``generation`` is the time of the RULE_DEFINED that created the rule (a rule removed
    and defined again is a new generation: its alarms never reuse an old id); ``n``
    counts earlier alarms of the same key raised at the very same time (almost always 0).
    """
    parts: list[Any] = [rule_id, generation, identity, signal, onset_us]
    if n:
        parts.append(n)
    digest = hashlib.sha1(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()
    return "al_" + digest[:20]


def alarm_event(
    type_: str,
    rule: AlarmRule,
    identity: str,
    alarm: str,
    ts_us: int,
    message: str,
    trigger_value: Any,
    note: str | None = None,
) -> Event:
    """A RAISED or CLEARED AlarmEvent (schemas/alarms.avsc, every field)."""
    return events.alarm_event(
        alarm,
        type_,
        ts_us=ts_us,
        rule_id=rule.id,
        rule_type=rule.type_name,
        identity=identity,
        signal=None if rule.kind == "resource_deviation" else rule.signal,
        priority=rule.priority,
        message=message,
        trigger_value=avro_scalar(trigger_value),
        note=note,
        requires_ack=rule.requires_ack,
    )


def avro_scalar(value: Any) -> Any:
    """``value`` as the trigger_value union (null, boolean, long, double, string):
    lists, objects and integers beyond a long become JSON text."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if _LONG_MIN <= value <= _LONG_MAX else str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
