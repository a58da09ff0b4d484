"""Every event millrace appends, built in one place: one builder per Avro record.

Each builder returns the dict :mod:`millrace.pipeline.codec` encodes for its record in
``schemas/`` (every field present, so a decoded event compares equal to the built one).
An argument left out takes the schema's default (``tests/pipeline/test_events.py`` reads
the ``.avsc`` files and checks), a time left out is :func:`~millrace.pipeline.clock.now_us`,
an id left out is a random one (uuid4 hex). Producers (connectors, API routers, the
alarm evaluator, the identity watch, the task runner, the processors' dead letters) call
these and never write an event's dict literal: a test walks the source tree's syntax
and fails on a dict literal carrying a record's fields elsewhere.

Domain helpers (``pipeline.alarms.ids.alarm_event`` for the evaluator's RAISED/CLEARED,
``pipeline.alarms.rules.rule_event``, ``pipeline.alarms.steps.step_event``,
``pipeline.processors.base.dead_letter`` for an event being processed) pick the values
and call the builders here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from millrace.pipeline.clock import now_us
from millrace.pipeline.telemetry_columns import Columns, as_list, from_samples

Event = dict[str, Any]
#: a reading's value: a bool, an int (int64), a float or a str
Reading = bool | int | float | str
#: the Command ``value`` union
CommandValue = bool | int | float | str
#: the AlarmEvent ``trigger_value`` union
TriggerValue = bool | int | float | str | None


def _new_id() -> str:
    return uuid.uuid4().hex


def sample(ts_us: int, values: Mapping[str, Reading], quality: int = 0) -> Event:
    """One row of readings sharing a source timestamp and quality, for
    :func:`telemetry_batch` (which turns rows into columns)."""
    return {"ts_us": ts_us, "values": values, "quality": quality}


def telemetry_batch(
    identity: str,
    samples: Sequence[Mapping[str, Any]] | None = None,
    *,
    received_us: int | None = None,
    source: str = "",
    ip: str | None = None,
    batch_id: str | None = None,
    ts_us: Sequence[int] | None = None,
    qualities: Sequence[int] | None = None,
    signals: Sequence[str] | None = None,
    kinds: Sequence[int] | None = None,
    counts: Sequence[int] | None = None,
    rows: Sequence[int] | None = None,
    doubles: Sequence[float] | None = None,
    booleans: Sequence[bool] | None = None,
    strings: Sequence[str] | None = None,
    longs: Sequence[int] | None = None,
) -> Event:
    """A TelemetryBatch (schemas/telemetry.avsc), column-wise: from the columns
    (``ts_us`` ... ``longs``, lists or numpy arrays, copied), or from rows, ``samples``
    built with :func:`sample`, which become columns (``telemetry_columns.from_samples``);
    not both. Producers that build :class:`Columns` themselves call
    :func:`telemetry_from_columns`."""
    if samples:
        if ts_us is not None or signals is not None:
            raise ValueError("telemetry_batch: give samples or columns, not both")
        cols = from_samples(samples)
    else:
        cols = Columns(
            as_list(ts_us),
            as_list(qualities),
            as_list(signals),
            as_list(kinds),
            as_list(counts) or None,
            as_list(rows) or None,
            as_list(doubles),
            as_list(booleans),
            as_list(strings),
            as_list(longs),
        )
    return telemetry_from_columns(
        identity, cols, received_us=received_us, source=source, ip=ip, batch_id=batch_id
    )


def telemetry_from_columns(
    identity: str,
    columns: Columns,
    *,
    received_us: int | None = None,
    source: str = "",
    ip: str | None = None,
    batch_id: str | None = None,
) -> Event:
    """The TelemetryBatch of ``columns`` (the builder of vectorised producers: one dict,
    no copy). The event holds the columns' lists themselves (numpy arrays become
    lists), so several events may share one (the simulator's signal names): nobody
    changes an event's lists once it is built."""
    return {
        "identity": identity,
        "source": source,
        "received_us": now_us() if received_us is None else received_us,
        "samples": [],
        "ip": ip,
        "batch_id": batch_id,
        "ts_us": _listed(columns.ts_us),
        "qualities": _listed(columns.qualities),
        "signals": _listed(columns.signals),
        "kinds": _listed(columns.kinds),
        "counts": [] if columns.counts is None else _listed(columns.counts),
        "rows": [] if columns.rows is None else _listed(columns.rows),
        "doubles": _listed(columns.doubles),
        "booleans": _listed(columns.booleans),
        "strings": _listed(columns.strings),
        "longs": _listed(columns.longs),
    }


def _listed(values: Any) -> list[Any]:
    return values if values.__class__ is list else as_list(values)


def identity_event(
    identity: str,
    type_: str,
    ts_us: int | None = None,
    *,
    event_id: str | None = None,
    actor: str | None = None,
    ip: str | None = None,
    tags: Mapping[str, list[str]] | None = None,
    state: Mapping[str, str] | None = None,
    attributes: Mapping[str, str] | None = None,
) -> Event:
    """An IdentityEvent (schemas/identity.avsc) of type ``type_`` (CREATED, STATE_SET, ...)."""
    return {
        "event_id": _new_id() if event_id is None else event_id,
        "identity": identity,
        "ts_us": now_us() if ts_us is None else ts_us,
        "type": type_,
        "actor": actor,
        "ip": ip,
        "tags": None if tags is None else dict(tags),
        "state": None if state is None else dict(state),
        "attributes": dict(attributes or {}),
    }


def command_event(
    identity: str,
    resource: str,
    value: CommandValue,
    *,
    ts_us: int | None = None,
    command_id: str | None = None,
    issued_by: str | None = None,
    expires_us: int | None = None,
    correlation_id: str | None = None,
) -> Event:
    """A Command (schemas/commands.avsc): write ``value`` to ``resource`` of ``identity``."""
    return {
        "command_id": _new_id() if command_id is None else command_id,
        "identity": identity,
        "resource": resource,
        "value": value,
        "ts_us": now_us() if ts_us is None else ts_us,
        "issued_by": issued_by,
        "expires_us": expires_us,
        "correlation_id": correlation_id,
    }


def status_event(
    resource_id: str,
    *,
    service_id: str,
    resource_type: str,
    desired_state: str,
    current_state: str,
    info: str = "",
    runner: str | None = None,
    ts_us: int | None = None,
    metrics: Mapping[str, float] | None = None,
) -> Event:
    """A ResourceStatus (schemas/status.avsc): a resource's desired and current state."""
    return {
        "resource_id": resource_id,
        "service_id": service_id,
        "resource_type": resource_type,
        "desired_state": desired_state,
        "current_state": current_state,
        "info": info,
        "runner": runner,
        "ts_us": now_us() if ts_us is None else ts_us,
        "metrics": dict(metrics or {}),
    }


def alarm_event(
    alarm_id: str,
    type_: str,
    *,
    rule_id: str,
    rule_type: str,
    identity: str,
    priority: int,
    message: str,
    ts_us: int | None = None,
    signal: str | None = None,
    trigger_value: TriggerValue = None,
    user: str | None = None,
    note: str | None = None,
    requires_ack: bool = False,
    definition: str | None = None,
) -> Event:
    """An AlarmEvent (schemas/alarms.avsc) of type ``type_`` (RAISED, ACKNOWLEDGED,
    RULE_DEFINED, ...); ``trigger_value`` already one of the union's scalars
    (``pipeline.alarms.ids.avro_scalar``)."""
    return {
        "alarm_id": alarm_id,
        "ts_us": now_us() if ts_us is None else ts_us,
        "type": type_,
        "rule_id": rule_id,
        "rule_type": rule_type,
        "identity": identity,
        "signal": signal,
        "priority": priority,
        "message": message,
        "trigger_value": trigger_value,
        "user": user,
        "note": note,
        "requires_ack": requires_ack,
        "definition": definition,
    }


def audit_event(
    *,
    actor: str,
    actor_role: str,
    action: str,
    target_type: str,
    target_id: str,
    audit_id: str | None = None,
    ts_us: int | None = None,
    before: str | None = None,
    after: str | None = None,
    status: str = "ok",
    request_id: str | None = None,
    source_ip: str | None = None,
) -> Event:
    """An AuditEvent (schemas/audit.avsc); ``before``/``after`` are JSON text."""
    return {
        "audit_id": _new_id() if audit_id is None else audit_id,
        "ts_us": now_us() if ts_us is None else ts_us,
        "actor": actor,
        "actor_role": actor_role,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "before": before,
        "after": after,
        "status": status,
        "request_id": request_id,
        "source_ip": source_ip,
    }


def dead_letter(
    *,
    source_topic: str,
    payload: bytes,
    reason: str,
    error_type: str,
    stage: str,
    ts_us: int | None = None,
    source_partition: int | None = None,
    source_offset: int | None = None,
    key: bytes | None = None,
) -> Event:
    """A DeadLetter (schemas/deadletter.avsc): ``payload`` that ``stage`` could not use,
    and why (``reason``, ``error_type``); ``source_topic`` "" when it came from outside
    the log (a connector's input)."""
    return {
        "ts_us": now_us() if ts_us is None else ts_us,
        "source_topic": source_topic,
        "source_partition": source_partition,
        "source_offset": source_offset,
        "key": key,
        "payload": payload,
        "reason": reason,
        "error_type": error_type,
        "stage": stage,
    }


def task_event(
    task_id: str,
    kind: str,
    type_: str,
    *,
    ts_us: int | None = None,
    actor: str = "",
    params: Mapping[str, Any] | str | None = None,
    counts: Mapping[str, int] | None = None,
    file: str | None = None,
    error: str | None = None,
) -> Event:
    """A TaskEvent (schemas/tasks.avsc): step ``type_`` (created, progress, completed,
    ...) of task ``task_id`` of ``kind``; ``params`` as JSON text, or a mapping (then
    encoded as JSON with sorted keys)."""
    if params is not None and not isinstance(params, str):
        params = json.dumps(params, sort_keys=True)
    return {
        "task_id": task_id,
        "kind": kind,
        "type": type_,
        "ts_us": now_us() if ts_us is None else ts_us,
        "actor": actor,
        "params": params,
        "counts": {str(k): int(v) for k, v in (counts or {}).items()},
        "file": file,
        "error": error,
    }


def service_event(
    service_id: str,
    type_: str,
    *,
    ts_us: int | None = None,
    actor: str = "",
    text: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    runners: Sequence[str] = (),
    description: str = "",
) -> Event:
    """A ServiceEvent (schemas/services.avsc): step ``type_`` (installed, updated,
    enabled, disabled, removed) of service ``service_id``; ``parameters`` values are
    encoded as JSON text."""
    return {
        "service_id": service_id,
        "type": type_,
        "ts_us": now_us() if ts_us is None else ts_us,
        "actor": actor,
        "text": text,
        "parameters": {str(k): json.dumps(v) for k, v in (parameters or {}).items()},
        "runners": [str(r) for r in runners],
        "description": description,
    }


__all__ = [
    "Event",
    "Reading",
    "alarm_event",
    "audit_event",
    "command_event",
    "dead_letter",
    "identity_event",
    "sample",
    "service_event",
    "status_event",
    "task_event",
    "telemetry_batch",
    "telemetry_from_columns",
]
