"""The live stream: Server-Sent Events with subscriptions and ``Last-Event-ID`` resume.

``GET /stream`` opens a stream (first event ``hello`` with its id); subscriptions are
added to it with ``POST /stream/{stream_id}/subscriptions``. Browsers' EventSource
cannot set headers, so ``GET /stream`` also takes the API key as ``?access_token=``
(see :mod:`millrace.api.middleware`) and the resume point as ``?last_event_id=`` (the
``Last-Event-ID`` header, which EventSource sends when it reconnects, wins). How items
are matched, buffered and resumed: :mod:`millrace.api.stream`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import AppContext, context, viewer
from millrace.api.errors import ApiError, bad_request
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute
from millrace.api.stream import (
    Connection,
    FilterError,
    OwnerStreamLimitError,
    StreamHub,
    StreamLimitError,
    StreamNotFoundError,
)
from millrace.api.stream_filters import identity_of
from millrace.api.users.scope import allows

router = APIRouter(tags=["stream"], route_class=StrictRoute)

StreamId = Annotated[str, Path(max_length=64, description="from the stream's hello event")]


class SubscriptionIn(BaseModel):
    """A kind of item and the filters of its list endpoint."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="alarm, activity, deviation or latest")
    filters: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "alarm: identity, signal, type, priority_range ('lo,hi'), state "
            "(active|cleared), include_acknowledged, include_discarded; activity: the "
            "alarm filters, activity_type (alarm|audit), actor, target_type, action; "
            "deviation: service_ids, resource_ids, deviated; latest: identity (or "
            "identities), signal (or signals). Lists as arrays or comma separated."
        ),
    )


class EventStreamResponse(StreamingResponse):
    """The connection's events; the stream is detached however the response ends."""

    media_type = "text/event-stream"

    def __init__(self, conn: Connection) -> None:
        super().__init__(
            conn.events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        self.conn = conn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.conn.close()


def _hub(ctx: AppContext) -> StreamHub:
    if ctx.stream is None:
        raise ApiError(503, "unavailable", "the live stream is not enabled on this server")
    return ctx.stream


def _not_found(exc: StreamNotFoundError) -> ApiError:
    return ApiError(404, "not_found", str(exc), [{"field": "stream_id", "message": str(exc)}])


@router.get(
    "/stream",
    summary="Live updates (Server-Sent Events)",
    status_code=200,
    response_class=EventStreamResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "the event stream"}},
)
async def open_stream(
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", description="resume after this event")
    ] = None,
    last_event_id: Annotated[
        str | None, Query(description="resume after this event (the header wins)")
    ] = None,
    access_token: Annotated[
        str | None,
        Query(description="the API key, for clients that cannot send headers (EventSource)"),
    ] = None,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> Response:
    """Events: ``hello`` ``{"stream_id", "resumed"}`` first; ``notice`` (e.g. an
    unusable ``Last-Event-ID``: a new stream starts); items as ``alarm``, ``activity``,
    ``deviation``, ``latest`` with ``{"subscriptions": [ids], "data": {...}}``;
    ``heartbeat`` when idle; ``dropped`` before the server closes a stream whose client
    fell too far behind. Ids are ``<stream_id>:<seq>``: reconnecting with the last one
    (within a grace period) resumes the stream and delivers what was missed.

    A key has at most ``max_streams_per_owner`` streams (429 beyond). Revoking the key
    ends its streams within about a second, with a final ``notice`` ``revoked``."""
    hub = _hub(ctx)
    try:
        conn = hub.open(
            last_event_id_header or last_event_id,
            owner=principal.key_id,
            authorized=lambda: ctx.access is not None and ctx.access.still_valid(principal),
        )
    except OwnerStreamLimitError as exc:
        raise ApiError(
            429,
            "too_many_streams",
            str(exc),
            [{"field": "stream", "message": str(exc), "limit": hub.max_streams_per_owner}],
        ) from None
    except StreamLimitError as exc:  # too many streams on the server, or shutting down
        raise ApiError(503, "unavailable", str(exc)) from None
    return EventStreamResponse(conn)


@router.post(
    "/stream/{stream_id}/subscriptions",
    status_code=201,
    summary="Subscribe a stream to items",
    response_model=models.Data[models.SubscriptionOut],
)
async def create_subscription(
    stream_id: StreamId,
    body: Annotated[SubscriptionIn, Body()],
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> JsonResponse:
    """Items published from now on that match ``kind`` and ``filters`` go to the
    stream; each carries the ids of the subscriptions it matched. A scoped caller's
    subscriptions only match items about the identities in its scope (connector
    deviations and audit records about no identity: none)."""
    hub = _hub(ctx)
    if body.kind == "activity" and not principal.can("audits:read"):
        # activities carry the audit trail, as GET /activities does
        raise ApiError(
            403,
            "forbidden",
            f"role '{principal.role}' cannot subscribe to activities; needs permission "
            "'audits:read'",
        )
    visible = None
    if principal.scope is not None:
        # server-side: an item of an identity outside the scope never leaves the hub
        visible = lambda kind, d: allows(principal, identity_of(kind, d))  # noqa: E731
    try:
        sub = hub.subscribe(
            stream_id, body.kind, body.filters, owner=principal.key_id, visible=visible
        )
    except StreamNotFoundError as exc:
        raise _not_found(exc) from None
    except FilterError as exc:
        raise bad_request(f"body.{exc.field}", exc.message) from None
    except StreamLimitError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return JsonResponse({"data": sub.describe()}, status_code=201)


@router.get(
    "/stream/{stream_id}/subscriptions",
    summary="List a stream's subscriptions",
    response_model=models.Data[list[models.SubscriptionOut]],
)
async def list_subscriptions(
    stream_id: StreamId,
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> JsonResponse:
    try:
        subs = _hub(ctx).subscriptions(stream_id, owner=principal.key_id)
    except StreamNotFoundError as exc:
        raise _not_found(exc) from None
    return JsonResponse({"data": [s.describe() for s in subs]})


@router.delete(
    "/stream/{stream_id}/subscriptions/{subscription_id}",
    status_code=204,
    summary="Remove a subscription",
)
async def delete_subscription(
    stream_id: StreamId,
    subscription_id: Annotated[str, Path(max_length=64)],
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(viewer),
) -> Response:
    try:
        found = _hub(ctx).unsubscribe(stream_id, subscription_id, owner=principal.key_id)
    except StreamNotFoundError as exc:
        raise _not_found(exc) from None
    if not found:
        message = f"subscription {subscription_id!r} is not on this stream"
        raise ApiError(
            404, "not_found", message, [{"field": "subscription_id", "message": message}]
        )
    return Response(status_code=204)
