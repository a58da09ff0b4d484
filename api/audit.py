"""The audit trail of API writes: who did what to which object, before and after.

Every write through the API (POST, PUT, PATCH, DELETE under ``/api/v1``, except the
device-facing and read-only ones in :data:`NOT_AUDITED`) becomes an AuditEvent on the
``audit`` topic once its response status is known — refused writes too, with the
error code as ``status``. A route that knows the object it changed says so with
:func:`audit_note` (action, target, before, after); otherwise the record names the
route and its path parameters. Secrets never reach the trail: fields named like
credentials are replaced by ``"***"`` at any depth.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from millrace.api.auth import Principal
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.events import audit_event
from millrace.pipeline.topics import AUDIT

log = logging.getLogger("millrace.audit")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: writes that are not operator actions: device telemetry and provisioning (a device's
#: own traffic, counted in device metrics), read-only queries sent as POST, and live
#: stream subscriptions (a client's view, not the plant's state)
NOT_AUDITED = re.compile(
    r"^/api/v1/(provision|identities/[^/]+/data|ingest(/.*)?|sql|config/validate"
    r"|stream/.*)$"
)
SECRET_FIELDS = re.compile(r"(password|secret|token|credential|api_key|key_hash|sha256)", re.I)
MAX_JSON = 65_536


#: the notes of the write being served (the same list as the request's scope state),
#: so helpers that have no request object can describe what they changed
_NOTES: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "millrace_audit_notes", default=None
)


def audit_note(
    request: Request | None = None,
    *,
    action: str,
    target_type: str,
    target_id: str,
    before: Any = None,
    after: Any = None,
    status: str | None = None,
    actor: tuple[str, str] | None = None,
) -> None:
    """Describe the write this request makes (called by the route before it answers).
    Several calls (a batch) give one audit record each; ``status`` overrides the
    request's outcome for one of them (a refused item of a batch); ``actor`` (actor,
    role) names who did it when the request itself carried no credential (a
    successful sign-in is the signed-in user's)."""
    if request is not None:
        notes = request.scope.setdefault("state", {}).setdefault("audit_notes", [])
    else:
        notes = _NOTES.get()
        if notes is None:  # not inside an audited request (tests calling helpers)
            return
    notes.append(
        {
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "before": before,
            "after": after,
            "status": status,
            "actor": actor,
        }
    )


def audit_active() -> bool:
    """Whether the current request is an audited write."""
    return _NOTES.get() is not None


def redact(value: Any) -> Any:
    """``value`` with credential-like fields masked, at any depth."""
    if isinstance(value, Mapping):
        return {
            k: ("***" if SECRET_FIELDS.search(str(k)) and v is not None else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _json(value: Any) -> str | None:
    if value is None:
        return None
    text = json.dumps(redact(value), default=str, sort_keys=True)
    if len(text) > MAX_JSON:
        return json.dumps({"truncated": True, "bytes": len(text)})
    return text


def _action_of(method: str) -> str:
    return {"POST": "create", "PUT": "update", "PATCH": "update", "DELETE": "delete"}[method]


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def _route_note(scope: Scope) -> dict[str, Any]:
    """What a route that said nothing did, from its path template: ``POST
    /alarms/{alarm_id}/acknowledge`` is action acknowledge on alarm <alarm_id>;
    otherwise the method's verb on the last collection of the path."""
    route = scope.get("route")
    path_params = scope.get("path_params") or {}
    template = str(getattr(route, "path", scope.get("path", "")))
    parts = [p for p in template.split("/") if p][2:]  # without api/v1
    target = "/".join(str(v) for v in path_params.values()) or template
    action = _action_of(scope["method"])
    literals = [p for p in parts if not p.startswith("{")]
    target_type = _singular(literals[-1]) if literals else "api"
    if len(parts) >= 3 and parts[-2].startswith("{") and not parts[-1].startswith("{"):
        action, target_type = parts[-1], _singular(parts[-3])
    elif (
        scope["method"] == "POST" and len(parts) >= 3 and not any(p.startswith("{") for p in parts)
    ):
        # POST /alarms/batch/acknowledge: a verb on a collection
        action, target_type = parts[-1], _singular(literals[0])
    return {
        "action": action,
        "target_type": target_type,
        "target_id": target,
        "before": None,
        "after": None,
    }


def audit_events(
    scope: Scope, status_code: int, error_code: str | None, ts_us: int
) -> list[dict[str, Any]]:
    """The AuditEvents of one finished write request."""
    state = scope.get("state", {})
    principal = state.get("principal")
    # the same form as acknowledged_by, set_by, updated_by (``Principal.actor``)
    actor = principal.actor if isinstance(principal, Principal) else "anonymous"
    role = getattr(principal, "role", "") or "none"
    status = "ok" if status_code < 400 else (error_code or str(status_code))
    client = scope.get("client")
    source_ip = client[0] if client else None
    request_id = state.get("request_id") or uuid.uuid4().hex
    notes = state.get("audit_notes") or []
    if not notes:
        notes = [_route_note(scope)]
    out = []
    for note in notes:
        who, who_role = note.get("actor") or (actor, role)
        out.append(
            audit_event(
                ts_us=ts_us,
                actor=who[:256],
                actor_role=who_role,
                action=str(note["action"])[:128],
                target_type=str(note["target_type"])[:128],
                target_id=str(note["target_id"])[:1024],
                before=_json(note["before"]),
                after=_json(note["after"]),
                status=note.get("status") or status,
                request_id=request_id,
                source_ip=source_ip,
            )
        )
    return out


class AuditMiddleware:
    """Appends the AuditEvents of every audited write once its status is known."""

    def __init__(self, app: ASGIApp, publisher: EventPublisher, clock: Any) -> None:
        self.app = app
        self.publisher = publisher
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if (
            scope["type"] != "http"
            or scope.get("method") not in WRITE_METHODS
            or not path.startswith("/api/v1/")
            or NOT_AUDITED.match(path)
        ):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["request_id"] = uuid.uuid4().hex
        token = _NOTES.set(state.setdefault("audit_notes", []))
        seen: dict[str, Any] = {"status": 500, "body": b""}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif (
                message["type"] == "http.response.body"
                and seen["status"] >= 400
                and len(seen["body"]) < 4096
            ):
                seen["body"] += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            _NOTES.reset(token)
            # unauthenticated noise is not an actor's action; a 401 a route described
            # (a failed sign-in) is recorded
            if seen["status"] != 401 or state["audit_notes"]:
                await self._record(scope, seen["status"], seen["body"])

    async def _record(self, scope: Scope, status_code: int, body: bytes) -> None:
        code = None
        if body:
            try:
                code = json.loads(body)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = None
        try:
            events = audit_events(scope, status_code, code, self.clock())
            await self.publisher.publish(AUDIT, [(e["target_id"], e) for e in events])
        except Exception:  # the write happened; a lost audit record is logged loudly
            log.exception("audit record of %s %s not appended", scope["method"], scope["path"])
