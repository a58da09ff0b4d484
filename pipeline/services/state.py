"""A service's state: the pure fold of its ServiceEvents (schemas/services.avsc).

``apply(state, event, version)`` is the only place that says what an event does to a
service; the services processor (projection ``millrace.services``) and the connect
role's services stage (which folds the ``services`` topic itself, to know what to run
after a restart) both use it, so the API and the connectors never disagree.

Status::

    (none) --installed--> enabled --disabled--> disabled --enabled--> enabled
    enabled|disabled --updated--> (same) ; any --removed--> removed --installed--> enabled

Every event is idempotent against the state it lands on (an append retried after a
crash may land twice). A state keeps the log position of its last event (``version`` =
offset + 1): readers skip events at or below it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from millrace.pipeline.errors import FoldError

ENABLED, DISABLED, REMOVED = "enabled", "disabled", "removed"
TYPES = ("installed", "updated", "enabled", "disabled", "removed")

State = dict[str, Any]


class ServiceRejectedError(FoldError, ValueError):
    """An event that cannot apply to the service's state (e.g. enabling a removed one)."""


def new_state(service_id: str) -> State:
    return {
        "service_id": service_id,
        "version": 0,
        "status": REMOVED,
        "enabled": 0,
        "description": "",
        "text": "",
        "parameters": {},
        "runners": [],
        "actor": "",
        "revision": 0,
        "installed_us": 0,
        "updated_us": 0,
    }


def normalise(row: Mapping[str, Any]) -> State:
    """A state row as read back from the projection or a previous fold."""
    state = new_state(str(row["service_id"]))
    state.update({k: v for k, v in row.items() if k in state})
    params = row.get("parameters")
    state["parameters"] = dict(params) if params else {}
    state["runners"] = list(row.get("runners") or [])
    return state


def live(state: Mapping[str, Any] | None) -> bool:
    """Installed and not removed."""
    return state is not None and state["status"] != REMOVED


def apply(prev: Mapping[str, Any] | None, event: Mapping[str, Any], version: int) -> State:
    """The state after ``event``; ServiceRejectedError when it cannot apply."""
    sid = event["service_id"]
    if not isinstance(sid, str) or not sid:
        raise ServiceRejectedError("service_id: must be a non-empty string")
    state = normalise(prev) if prev is not None else new_state(sid)
    kind, ts = event["type"], int(event["ts_us"])
    state["version"] = version
    if kind in ("installed", "updated"):
        if kind == "updated" and not live(prev):
            raise ServiceRejectedError(f"service {sid!r} is not installed: cannot be updated")
        if not isinstance(event.get("text"), str):
            raise ServiceRejectedError(f"{kind}: text is required")
        if not live(prev):
            state.update(status=ENABLED, enabled=1, installed_us=ts)
        state.update(
            text=event["text"],
            parameters=dict(event.get("parameters") or {}),
            runners=list(event.get("runners") or []),
            description=str(event.get("description") or ""),
            revision=int(state["revision"]) + 1,
        )
    elif kind in ("enabled", "disabled"):
        if not live(prev):
            raise ServiceRejectedError(f"service {sid!r} is not installed: cannot be {kind}")
        state.update(status=kind, enabled=int(kind == ENABLED))
    elif kind == "removed":
        state.update(status=REMOVED, enabled=0)
    else:
        return state  # an unknown type leaves the service as it was
    state.update(actor=str(event.get("actor") or ""), updated_us=ts)
    return state
