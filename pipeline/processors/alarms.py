"""Alarm processor: AlarmEvents -> ``millrace.alarms``, ``millrace.alarm_annotations`` and
``millrace.alarm_rules``.

An alarm is a fold of the events keyed by its id (one partition, so log order is its
history): RAISED creates it, CLEARED ends its condition, ACKNOWLEDGED and DISCARDED
move its management status, ANNOTATED appends a note. The state rows live in
``millrace.alarms`` and the runtime hands this processor the rows of the alarms in a
batch; rows carry ``version`` = log offset + 1 of the last event they include, so an
event at or below it is skipped and a redone batch changes nothing.

Management status: every alarm is born ``pending`` and stays so until a user
acknowledges it (Metasys-like), whether or not its rule requires an acknowledgement;
``requires_ack`` only says whether a cleared alarm still needs attention (see
``open`` in ``projections.alarms``). ``discarded`` is final: nothing but annotations
is accepted afterwards.

Refused steps — a step of an unknown alarm, a user step :func:`millrace.pipeline.alarms.steps.
refusal` refuses (acknowledging a discarded or an already acknowledged alarm,
discarding twice; the API asks the same function), an unknown event type, a rule
definition that does not validate — become dead letters with the reason. Repeats that cannot be
told from a retried append are no-ops instead: a RAISED of an alarm that exists, a
CLEARED of a cleared alarm, an ACKNOWLEDGED/DISCARDED equal (time, user, note) to the
one applied, an annotation equal to the last one applied.

Rule events (RULE_DEFINED / RULE_REMOVED, key ``rule:<id>``) carry a whole definition
each: no fold, one row per event with its version; the greatest version wins.

Exactly-once across tables: an annotation row depends on the state before the event,
so the state table must land last. Every output lists ``alarm_annotations`` and
``alarm_rules`` (possibly empty) before ``alarms``; ``Outputs.merge`` keeps the first
order it sees, so in any batch the sink inserts the state rows after the annotations.
A crash between the two redoes the batch from the old state (same rows, same tokens);
a crash after both redoes it from the new state, which skips every event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from millrace.pipeline.alarms.rules import RuleError, parse_rule
from millrace.pipeline.alarms.steps import ACKNOWLEDGED, DISCARDED, PENDING, refusal
from millrace.pipeline.errors import FoldError
from millrace.pipeline.processors.base import Event, Outputs, StatefulProcessor, dead_letter
from millrace.pipeline.tables import ALARMS_SCHEMA, ANNOTATIONS_SCHEMA, RULES_SCHEMA
from millrace.pipeline.topics import ALARMS

#: event types that define or remove a rule rather than step an alarm
RULE_TYPES = frozenset({"RULE_DEFINED", "RULE_REMOVED"})
ACTIVE, CLEARED = "active", "cleared"
MAX_TEXT = 65_536

State = dict[str, Any]


class AlarmRefusedError(FoldError):
    """An alarm step that cannot be applied to the alarm as it is."""


def value_json(value: Any) -> str:
    """A trigger or clear value as JSON text (``null`` when there is none)."""
    return json.dumps(value, sort_keys=True)


def _text(value: Any) -> str:
    return "" if value is None else str(value)[:MAX_TEXT]


def _annotation_key(ts_us: int, user: str, text: str) -> str:
    return hashlib.sha256(json.dumps([ts_us, user, text]).encode()).hexdigest()[:32]


def _raised(value: Mapping[str, Any], version: int) -> State:
    priority = int(value["priority"])
    if not 0 <= priority <= 255:
        raise AlarmRefusedError(f"priority: {priority} is outside 0..255")
    ts = int(value["ts_us"])
    return {
        "alarm_id": str(value["alarm_id"]),
        "version": version,
        "rule_id": _text(value.get("rule_id")),
        "type": _text(value.get("rule_type")),
        "identity": _text(value.get("identity")),
        "signal": _text(value.get("signal")),
        "priority": priority,
        "message": _text(value.get("message")),
        "trigger_value": value_json(value.get("trigger_value")),
        "state": ACTIVE,
        "raised_us": ts,
        "cleared_us": 0,
        "clear_value": "",
        "requires_ack": 1 if value.get("requires_ack") else 0,
        "mgmt_status": PENDING,
        "ack_user": "",
        "ack_us": 0,
        "ack_note": "",
        "discard_user": "",
        "discard_us": 0,
        "discard_note": "",
        "annotation_count": 0,
        "last_annotation": "",
        "updated_us": ts,
    }


def apply(
    prev: State | None, value: Mapping[str, Any], version: int
) -> tuple[State | None, dict[str, Any] | None]:
    """The alarm after one event (None: unchanged) and the annotation row it adds, if
    any. :class:`AlarmRefusedError` when the step does not apply (see the module doc)."""
    kind = value.get("type")
    alarm_id = value.get("alarm_id")
    if not isinstance(alarm_id, str) or not alarm_id:
        raise AlarmRefusedError("alarm_id: must be a non-empty string")
    ts = int(value["ts_us"])
    user = _text(value.get("user"))
    note = _text(value.get("note"))
    if kind == "RAISED":
        return (_raised(value, version) if prev is None else None), None
    if kind not in ("CLEARED", "ACKNOWLEDGED", "DISCARDED", "ANNOTATED"):
        raise AlarmRefusedError(f"type: {kind!r} is not an alarm step")
    if prev is None:
        raise AlarmRefusedError(f"alarm {alarm_id!r} is unknown: no RAISED before its {kind}")
    new = dict(prev)
    new["version"] = version
    new["updated_us"] = ts
    status = prev["mgmt_status"]
    if kind == "CLEARED":
        if prev["state"] != ACTIVE:
            return None, None
        new.update(state=CLEARED, cleared_us=ts, clear_value=value_json(value.get("trigger_value")))
        return new, None
    if kind == "ACKNOWLEDGED":
        if status == ACKNOWLEDGED and (prev["ack_us"], prev["ack_user"], prev["ack_note"]) == (
            ts,
            user,
            note,
        ):
            return None, None  # the same step again
        if (problem := refusal(prev, kind)) is not None:
            raise AlarmRefusedError(problem)
        new.update(mgmt_status=ACKNOWLEDGED, ack_user=user, ack_us=ts, ack_note=note)
        return new, None
    if kind == "DISCARDED":
        same = (prev["discard_us"], prev["discard_user"], prev["discard_note"]) == (ts, user, note)
        if status == DISCARDED and same:
            return None, None  # the same step again
        if (problem := refusal(prev, kind)) is not None:
            raise AlarmRefusedError(problem)
        new.update(mgmt_status=DISCARDED, discard_user=user, discard_us=ts, discard_note=note)
        return new, None
    # ANNOTATED
    if value.get("note") is None:
        raise AlarmRefusedError("note: an annotation needs its text")
    key = _annotation_key(ts, user, note)
    if key == prev["last_annotation"]:
        return None, None
    new.update(annotation_count=int(prev["annotation_count"]) + 1, last_annotation=key)
    row = {"alarm_id": alarm_id, "seq": version, "ts_us": ts, "user": user, "text": note}
    return new, row


def rule_row(value: Mapping[str, Any], version: int) -> dict[str, Any]:
    """The ``alarm_rules`` row of a RULE_DEFINED / RULE_REMOVED event."""
    rule_id = value.get("rule_id") or value.get("alarm_id")
    if not isinstance(rule_id, str) or not rule_id:
        raise AlarmRefusedError("rule_id: must be a non-empty string")
    row = {
        "rule_id": rule_id,
        "version": version,
        "present": 0,
        "kind": "",
        "type": "",
        "priority": 0,
        "enabled": 0,
        "definition": "",
        "updated_us": int(value["ts_us"]),
        "updated_by": _text(value.get("user")),
    }
    if value["type"] == "RULE_REMOVED":
        return row
    try:
        rule = parse_rule(value.get("definition") or "")
    except RuleError as exc:
        raise AlarmRefusedError(f"definition.{exc.field}: {exc.message}") from None
    if rule.id != rule_id:
        raise AlarmRefusedError(f"definition.id: {rule.id!r} is not the rule id {rule_id!r}")
    row.update(
        present=1,
        kind=rule.kind,
        type=rule.type_name,
        priority=rule.priority,
        enabled=1 if rule.enabled else 0,
        definition=rule.to_json(),
    )
    return row


class AlarmProcessor(StatefulProcessor):
    """The alarm fold, its annotations and the alarm rules."""

    topics = (ALARMS,)
    state_table = "alarms"
    state_key = "alarm_id"

    def state_keys(self, events: Sequence[Event]) -> list[str]:
        keys = {e.value.get("alarm_id") for e in events if e.value.get("type") not in RULE_TYPES}
        return sorted(k for k in keys if isinstance(k, str) and k)

    def process_with_state(
        self, events: Sequence[Event], state: Mapping[str, Mapping[str, Any]]
    ) -> Outputs:
        out = Outputs()
        current: dict[str, State] = {k: dict(v) for k, v in state.items()}
        changed: dict[str, State] = {}
        annotations: list[dict[str, Any]] = []
        rules: list[dict[str, Any]] = []
        for ev in events:
            value = ev.value
            try:
                if value.get("type") in RULE_TYPES:
                    rules.append(rule_row(value, ev.offset + 1))
                    continue
                alarm_id = str(value.get("alarm_id") or "")
                prev = current.get(alarm_id)
                if prev is not None and ev.offset < int(prev["version"]):
                    continue  # already in the state row (a redone batch)
                new, note = apply(prev, value, ev.offset + 1)
            except (AlarmRefusedError, ValueError, KeyError, TypeError) as exc:
                out.deadletters.append(
                    dead_letter(
                        ev,
                        reason=str(exc),
                        error_type="AlarmRejected",
                        stage="apply",
                        ts_us=ev.timestamp_us,
                        payload=repr(dict(value)).encode()[:65536],
                    )
                )
                continue
            if new is not None:
                current[alarm_id] = changed[alarm_id] = new
            if note is not None:
                annotations.append(note)
        if not (changed or annotations or rules):
            return out
        # the order matters: the state table last (see the module doc)
        out.tables["alarm_annotations"] = pa.Table.from_pylist(
            annotations, schema=ANNOTATIONS_SCHEMA
        )
        out.tables["alarm_rules"] = pa.Table.from_pylist(rules, schema=RULES_SCHEMA)
        out.tables["alarms"] = pa.Table.from_pylist(list(changed.values()), schema=ALARMS_SCHEMA)
        return out
