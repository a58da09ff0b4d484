"""What the identity routers share: the list filters, order, the caller's name, the
public JSON of an identity row, and the query runner other routers use too.

The routes are ``identities`` (registry), ``identity_tags`` and ``identity_state``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from millrace.api.auth import Principal
from millrace.api.errors import bad_request
from millrace.api.routers.ingest import IDENTITY_PATTERN
from millrace.api.timeparams import Epoch, parse_time
from millrace.projections.registry import TAG_OPS, IdentityFilter, Order, QueryError, TagCriterion

IdentityPath = Annotated[str, Path(pattern=IDENTITY_PATTERN)]
STATUSES = ("whitelisted", "provisioned", "reprovision", "expired", "locked", "online", "offline")


def actor(p: Principal) -> str:
    return p.actor


def public(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row.pop("credential_hash", None)
    return row


# -- filters ------------------------------------------------------------------------------


class FilterIn(BaseModel):
    """The list filters, as a JSON body (bulk operations)."""

    model_config = ConfigDict(extra="forbid")
    status: list[str] = Field(default_factory=list)
    identity: str | None = Field(None, description="regular expression (RE2)")
    ipaddress: str | None = None
    tag: str | None = None
    tag_value: str | None = None
    tags: list[str] = Field(default_factory=list, description="criteria name:op:value")
    before: str | None = None
    after: str | None = None
    identities: list[str] | None = Field(None, max_length=10_000)


def tag_criterion(raw: str, field: str) -> TagCriterion:
    """``name:op:value``; 400 naming ``field`` when ``raw`` is not one."""
    found = TagCriterion.parse(raw)
    if found is None:
        raise bad_request(field, f"expected name:op:value with op one of {', '.join(TAG_OPS)}")
    return found


def build_filter(f: FilterIn, epoch: Epoch | None = None, prefix: str = "") -> IdentityFilter:
    for i, s in enumerate(f.status):
        if s not in STATUSES:
            raise bad_request(f"{prefix}status[{i}]", f"{s!r} is not one of {', '.join(STATUSES)}")
    criteria = []
    for i, raw in enumerate(f.tags):
        criteria.append(tag_criterion(raw, f"{prefix}tags[{i}]"))
    return IdentityFilter(
        status=list(f.status),
        identity=f.identity or None,
        ipaddress=f.ipaddress or None,
        tag=f.tag or None,
        tag_value=f.tag_value,
        tags=criteria,
        before_us=parse_time(f"{prefix}before", f.before, epoch),
        after_us=parse_time(f"{prefix}after", f.after, epoch),
        identities=f.identities,
    )


def _split(values: list[str]) -> list[str]:
    return [v for raw in values for v in raw.split(",") if v]


def query_filter(
    status: Annotated[
        list[str], Query(description="any of: " + ", ".join(STATUSES) + " (repeat or comma)")
    ] = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    identity: Annotated[str | None, Query(description="regular expression (RE2)")] = None,
    ipaddress: Annotated[str | None, Query(description="last IP address")] = None,
    tag: Annotated[str | None, Query(description="has this tag")] = None,
    tag_value: Annotated[str | None, Query(description="with this value")] = None,
    tags: Annotated[
        list[str], Query(description="criteria name:op:value, op gt|gte|lt|lte|eq|ne; all hold")
    ] = [],  # noqa: B006
    before: Annotated[str | None, Query(description="lastseen before (ISO-8601/epoch)")] = None,
    after: Annotated[str | None, Query(description="lastseen after")] = None,
    epoch: Annotated[Epoch | None, Query(description="unit of epoch numbers")] = None,
) -> IdentityFilter:
    f = FilterIn(
        status=_split(status),
        identity=identity,
        ipaddress=ipaddress,
        tag=tag,
        tag_value=tag_value,
        tags=tags,
        before=before,
        after=after,
    )
    return build_filter(f, epoch)


def parse_order(raw: str) -> Order:
    key, _, direction = raw.rpartition(".") if raw.endswith((".asc", ".desc")) else (raw, "", "")
    if direction not in ("", "asc", "desc"):
        raise bad_request("order", "direction must be asc or desc")
    if key not in ("identity", "lastseen", "lastip") and not (
        key.startswith("state.") and len(key) > 6
    ):
        raise bad_request("order", "order by identity, lastseen, lastip or state.<resource>")
    return Order(key, direction == "desc")


async def run_query(fn: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args)
    except QueryError as exc:
        raise bad_request(exc.field, exc.message) from None
