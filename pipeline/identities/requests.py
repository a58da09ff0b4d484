"""What a request on the device registry means, as pure functions: the attributes of a
new identity or a new credential, the timing attributes of a window or a timeout, and
the plan of a desired-state write. The API validates the request's shape, calls these,
and shapes the answer; the rules live here (``now`` is passed in, no I/O).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from millrace.pipeline.events import Event, command_event, identity_event, sample, telemetry_batch
from millrace.pipeline.identities.resources import ResourceDefinition, check_values

SECOND_US = 1_000_000


def timing_attrs(now: int, window_s: int | None, timeout_s: int | None) -> dict[str, str]:
    """A provisioning window (from ``now``) and an inactivity timeout, as attributes."""
    attrs = {}
    if window_s is not None:
        attrs["provision_until_us"] = str(now + window_s * SECOND_US)
    if timeout_s is not None:
        attrs["inactivity_timeout_s"] = str(timeout_s)
    return attrs


def credential_attrs(
    auth_type: str, credential_hash: str, now: int, ttl_s: int | None
) -> dict[str, str]:
    """The attributes of a new credential: its type, its hash (``-`` for a certificate,
    whose verified CN is the credential) and, with a TTL, when it expires."""
    attrs = {"auth_type": auth_type, "credential_hash": credential_hash or "-"}
    if ttl_s is not None:
        attrs["credential_expires_us"] = str(now + ttl_s * SECOND_US)
    return attrs


def creation_attrs(
    attributes: Mapping[str, str],
    now: int,
    window_s: int | None,
    timeout_s: int | None,
    credential: Mapping[str, str] | None,
) -> dict[str, str]:
    """The attributes of a CREATED: with a credential the identity is provisioned at
    once (and no window applies); without, it may provision within ``window_s``."""
    attrs = dict(attributes)
    attrs.update(timing_attrs(now, window_s if credential is None else None, timeout_s))
    if credential is not None:
        attrs.update(credential)
        attrs["status"] = "provisioned"
    return attrs


def update_attrs(
    attributes: Mapping[str, str],
    unset: list[str],
    status: str | None,
    now: int,
    window_s: int | None,
    timeout_s: int | None,
) -> dict[str, str]:
    """The attributes of an UPDATED: values merged, ``unset`` removed, a status reset."""
    attrs = dict(attributes)
    if unset:
        attrs["unset"] = ",".join(unset)
    if status is not None:
        attrs["status"] = status
    attrs.update(timing_attrs(now, window_s, timeout_s))
    return attrs


def state_set_problem(
    definitions: Mapping[str, ResourceDefinition], values: Mapping[str, Any]
) -> tuple[str, str] | None:
    """(field, message) of the first value a desired-state write may not carry: an
    undefined or unsettable resource, or a value its definition refuses; else None."""
    if not values:
        return "body", "give at least one resource"
    for name in values:
        d = definitions.get(name)
        if d is None:
            return name, "unknown resource (define it under /resources)"
        if not d.settable:
            return name, "resource is not settable"
    return check_values(dict(definitions), dict(values))


def locked_refusal(row: Mapping[str, Any]) -> str | None:
    """Why an identity's desired state may not be written now, or None."""
    if row["status"] == "locked":
        return f"identity {row['identity']!r} is locked"
    return None


@dataclass
class StatePlan:
    """What a desired-state write does besides its STATE_SET: a Command for each synced
    resource (its connector writes it; pending until the device reports it back), and
    the unsynced values, reported and acknowledged at once: set and reported change
    together (``reported``, a TelemetryBatch of source ``state`` at the write's time,
    then ``acknowledged``, their STATE_ACKNOWLEDGED; both None when every value syncs)."""

    commands: list[dict[str, Any]] = field(default_factory=list)
    unsynced: dict[str, Any] = field(default_factory=dict)
    reported: Event | None = None
    acknowledged: Event | None = None


def plan_state_set(
    identity: str,
    values: Mapping[str, Any],
    definitions: Mapping[str, ResourceDefinition],
    now: int,
    who: str,
    command_timeout_s: int,
    correlation_id: str,
) -> StatePlan:
    """The plan of writing ``values`` (checked by :func:`state_set_problem`)."""
    plan = StatePlan()
    for name, value in values.items():
        if definitions[name].sync:
            plan.commands.append(
                command_event(
                    identity,
                    name,
                    value,
                    ts_us=now,
                    issued_by=who,
                    expires_us=now + command_timeout_s * SECOND_US,
                    correlation_id=correlation_id,
                )
            )
        else:
            plan.unsynced[name] = value
    if plan.unsynced:
        plan.reported = telemetry_batch(
            identity, [sample(now, plan.unsynced)], received_us=now, source="state"
        )
        plan.acknowledged = identity_event(
            identity,
            "STATE_ACKNOWLEDGED",
            now,
            actor=who,
            state={k: json.dumps(v, separators=(",", ":")) for k, v in plan.unsynced.items()},
        )
    return plan
