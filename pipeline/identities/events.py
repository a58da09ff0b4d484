"""The IdentityEvent record (schemas/identity.avsc) as a dict, built in one place."""

from __future__ import annotations

import uuid
from typing import Any


def identity_event(
    identity: str,
    kind: str,
    ts_us: int,
    *,
    actor: str | None = None,
    ip: str | None = None,
    tags: dict[str, list[str]] | None = None,
    state: dict[str, str] | None = None,
    attributes: dict[str, str] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An IdentityEvent; ``event_id`` defaults to a random one."""
    return {
        "event_id": event_id or uuid.uuid4().hex,
        "identity": identity,
        "ts_us": ts_us,
        "type": kind,
        "actor": actor,
        "ip": ip,
        "tags": tags,
        "state": state,
        "attributes": attributes or {},
    }
