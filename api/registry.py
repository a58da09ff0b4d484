"""The write side of the device registry, shared by its routers.

Every change is an IdentityEvent (or Command) appended to the log; the projections
follow. A write answers after ``ctx.wait_applied`` saw the projections catch up, so a
client reads its own writes. Checks against the current state (does the identity
exist? may it provision?) run under a per-identity lock of this process; across
processes the fold decides by log order and refuses the later of two conflicting
events (it becomes a dead letter, never a lost write).
"""

from __future__ import annotations

import json
from typing import Any

from millrace.api.audit import audit_active, audit_note
from millrace.api.context import AppContext
from millrace.api.errors import ApiError, bad_request
from millrace.pipeline.events import identity_event
from millrace.pipeline.identities.formats import check, describe
from millrace.pipeline.identities.resources import NAME_RE, REGISTRY_KEY, ResourceDefinition
from millrace.pipeline.topics import IDENTITY

MAX_TAG_NAME = 128
MAX_TAG_VALUE = 4096
MAX_TAGS = 256
MAX_ATTRIBUTE = 4096


def not_found(identity: str) -> ApiError:
    return ApiError(404, "not_found", f"identity {identity!r} not found")


def event(
    ctx: AppContext,
    identity: str,
    kind: str,
    actor: str | None,
    *,
    ip: str | None = None,
    tags: dict[str, list[str]] | None = None,
    state: dict[str, str] | None = None,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An IdentityEvent (schemas/identity.avsc) at the API's clock."""
    return identity_event(
        identity,
        kind,
        ctx.clock(),
        actor=actor,
        ip=ip,
        tags=tags,
        state=state,
        attributes=attributes,
    )


async def emit(ctx: AppContext, events: list[dict[str, Any]], topic: str = IDENTITY) -> None:
    """Append events (keyed by identity) and wait until the projections hold them."""
    if not events:
        return
    audited = topic == IDENTITY and audit_active()
    before = await _snapshot(ctx, events) if audited else {}
    await ctx.publisher.publish(topic, [(e["identity"], e) for e in events])
    ctx.on_ingest()
    await ctx.wait_applied(topic)
    for e in events:
        if e["identity"] == REGISTRY_KEY:
            ctx.defs_cache.invalidate()
        else:
            ctx.status_cache.invalidate(e["identity"])
            ctx.ingest_gate.invalidate()
    if audited:
        after = await _snapshot(ctx, events)
        for e in events:
            target = _target(e)
            change = {k: e.get(k) for k in ("type", "attributes", "tags", "state") if e.get(k)}
            audit_note(
                action=str(e["type"]).lower(),
                target_type=target[0],
                target_id=target[1],
                before=before.get(target),
                after=after.get(target, change if len(events) > AUDIT_SNAPSHOTS else None),
            )


#: a write touching more objects than this records each change, not whole objects
AUDIT_SNAPSHOTS = 50


def _target(e: dict[str, Any]) -> tuple[str, str]:
    if e["identity"] == REGISTRY_KEY:
        return ("resource", str((e.get("attributes") or {}).get("name", "")))
    return ("identity", str(e["identity"]))


async def _snapshot(ctx: AppContext, events: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """The objects the events touch, as they are now (for the audit's before/after)."""
    import asyncio

    targets = {_target(e) for e in events}
    if len(targets) > AUDIT_SNAPSHOTS:
        return {}
    out: dict[tuple[str, str], Any] = {}
    if any(kind == "resource" for kind, _ in targets):
        defs = await asyncio.to_thread(ctx.queries.definitions)
        for kind, name in targets:
            if kind == "resource" and name in defs:
                out[(kind, name)] = defs[name]["definition"].model_dump(mode="json")
    for kind, name in targets:
        if kind == "identity":
            row = await asyncio.to_thread(ctx.queries.get, name, ctx.clock())
            if row is not None:
                row = dict(row)
                row.pop("credential_hash", None)
                out[(kind, name)] = row
    return out


def check_identity(ctx: AppContext, identity: str, field: str = "identity") -> None:
    problem = check(ctx.registry.format, identity)
    if problem is not None:
        raise bad_request(field, f"{problem} (format: {describe(ctx.registry.format)})")


def check_tags(tags: dict[str, list[str]], field: str = "tags") -> None:
    if len(tags) > MAX_TAGS:
        raise bad_request(field, f"at most {MAX_TAGS} tags per request")
    for name, values in tags.items():
        if not name or len(name.encode()) > MAX_TAG_NAME:
            raise bad_request(f"{field}.{name[:40]}", f"tag names are 1 to {MAX_TAG_NAME} bytes")
        for i, v in enumerate(values):
            if len(v.encode()) > MAX_TAG_VALUE:
                raise bad_request(
                    f"{field}.{name}[{i}]", f"tag values are at most {MAX_TAG_VALUE} bytes"
                )


def check_attributes(attrs: dict[str, str], reserved: tuple[str, ...]) -> None:
    for k, v in attrs.items():
        if k in reserved or not k:
            raise bad_request(f"attributes.{k}", "reserved attribute name; use its own field")
        if len(k.encode()) > 128 or len(v.encode()) > MAX_ATTRIBUTE:
            raise bad_request(
                f"attributes.{k}", f"names up to 128 bytes, values up to {MAX_ATTRIBUTE} bytes"
            )


async def require_identity(ctx: AppContext, identity: str) -> dict[str, Any]:
    import asyncio

    row = await asyncio.to_thread(ctx.queries.get, identity, ctx.clock())
    if row is None:
        raise not_found(identity)
    return row


async def definitions(ctx: AppContext) -> dict[str, ResourceDefinition]:
    """Current definitions (cached for a second, the last ones kept while the store does
    not answer; this process's writes invalidate)."""
    return dict(await ctx.defs_cache.get())


async def identity_status(ctx: AppContext, identity: str) -> str | None:
    """The identity's status, or None when it is not registered (cached for a second)."""
    import asyncio

    hit, value = ctx.status_cache.get(identity)
    if hit:
        return value
    status = await asyncio.to_thread(ctx.queries.status, identity)
    ctx.status_cache.put(identity, status)
    return status


def definition_event(
    ctx: AppContext, name: str, definition: ResourceDefinition | None, actor: str
) -> dict[str, Any]:
    if not NAME_RE.match(name):
        raise bad_request("name", "resource names are 1-128 of A-Z a-z 0-9 _ . : -")
    attrs = {"name": name}
    if definition is not None:
        attrs["definition"] = definition.to_json()
    kind = "RESOURCE_DEFINED" if definition is not None else "RESOURCE_REMOVED"
    return event(ctx, REGISTRY_KEY, kind, actor, attributes=attrs)


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
