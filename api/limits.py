"""Request bodies bounded per route while they stream in.

A client that sends a body larger than its route takes gets 413 as soon as the
``Content-Length`` says so or the streamed count passes the limit, before the route
has seen a byte of it: :class:`BodyLimitMiddleware` wraps the ASGI ``receive`` and
decides on the first call a route makes to read its body. Authentication comes from
the headers before any body is read (``api.middleware`` for API keys, the device
routes themselves for a device credential), so an unauthenticated client is answered
401 whatever it sends; what it keeps sending after the answer is discarded by the
server (``api.server``) up to a bound, then the connection is closed.

The ingest limit is what the ingest rules let one request carry: at most
``max_batch_samples`` samples and ``max_batch_readings`` readings, each reading at most
:data:`READING_BYTES` as JSON (a 128-character signal name and the longest number
text, with punctuation and the whitespace of a pretty-printed document), each sample
at most :data:`SAMPLE_BYTES` around its readings (timestamp, quality, keys). Text
values take more room than numbers; a batch that carries much text is split by its
sender.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from millrace.api.errors import error_body
from millrace.api.jsonbody import parse_json
from millrace.api.responses import JsonResponse

if TYPE_CHECKING:
    from millrace.pipeline.cli.config import ApiConfig, IngestConfig

T = TypeVar("T")

KIB = 1024
MIB = 1024 * KIB

#: one reading as JSON at its largest: quotes, a 128-character signal name, a colon, the
#: longest number text (``-2.2250738585072014e-308``: 24 characters), a comma, and 16
#: characters of line break and indentation of a pretty-printed document
READING_BYTES = 2 + 128 + 1 + 24 + 1 + 16
#: one sample around its readings: braces, the three keys, a 64-bit timestamp (20
#: characters), a 32-bit quality (11), separators and pretty-printing
SAMPLE_BYTES = 128
#: every route without a limit of its own (config validation, rules, identities, SQL)
DEFAULT_MAX_BODY = 1 * MIB
#: provisioning is open to anyone allowed to reach it: an identity and a password fit
#: in far less
PROVISION_MAX_BODY = 16 * KIB
#: bodies larger than this are parsed and validated in a worker thread, so a large
#: batch does not hold the event loop for the whole parse
OFFLOAD_ABOVE = 256 * KIB


def ingest_body_limit(max_samples: int, max_readings: int) -> int:
    """The largest ingest body a request within the ingest rules can need."""
    return max_samples * SAMPLE_BYTES + max_readings * READING_BYTES


@dataclass(frozen=True)
class RequestLimits:
    """Body size limits in bytes, per route."""

    #: every route not listed below
    max_body_bytes: int = DEFAULT_MAX_BODY
    #: ``POST /api/v1/identities/{id}/data``
    ingest_max_body_bytes: int = ingest_body_limit(10_000, 100_000)
    #: ``POST /api/v1/provision``
    provision_max_body_bytes: int = PROVISION_MAX_BODY

    @classmethod
    def of(cls, api: ApiConfig, ingest: IngestConfig) -> RequestLimits:
        """The limits of a configuration; the ingest limit computed from the ingest
        rules unless set (``ingest.max_body_bytes``)."""
        computed = ingest_body_limit(ingest.max_batch_samples, ingest.max_batch_readings)
        return cls(
            max_body_bytes=api.max_body_bytes,
            ingest_max_body_bytes=ingest.max_body_bytes or computed,
            provision_max_body_bytes=api.provision_max_body_bytes,
        )

    def body_limit(self, path: str) -> int:
        if path.startswith("/api/v1/identities/") and path.endswith("/data"):
            return self.ingest_max_body_bytes
        if path == "/api/v1/provision":
            return self.provision_max_body_bytes
        return self.max_body_bytes


def content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The declared body length, or None (chunked, absent, or unreadable: the server
    refuses a malformed one before the app runs)."""
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def too_large(limit: int) -> JsonResponse:
    message = f"request body larger than {limit} bytes, the limit of this route"
    return JsonResponse(
        error_body(
            "body_too_large",
            f"body: {message}",
            [{"field": "body", "message": message, "limit": limit}],
        ),
        status_code=413,
    )


class BodyLimitMiddleware:
    """413 for a body over its route's limit, decided when the route first reads it.

    The answer is sent from inside ``receive``; the route then sees a disconnect, and
    whatever it answers or raises after that is dropped (the client has its 413).
    Placed innermost (added first), so the audit middleware records the 413.
    """

    def __init__(self, app: ASGIApp, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.body_limit(str(scope.get("path", "")))
        declared = content_length(scope.get("headers", []))
        received = 0
        refused = False
        started = False

        async def refuse() -> Message:
            nonlocal refused
            refused = True
            if not started:
                await too_large(limit)(scope, receive, send)
            return {"type": "http.disconnect"}

        async def limited_receive() -> Message:
            nonlocal received
            if refused:
                return {"type": "http.disconnect"}
            if declared is not None and declared > limit:
                return await refuse()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    return await refuse()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise


def _validation_error(exc: ValidationError) -> RequestValidationError:
    """pydantic's errors as FastAPI's, rooted at ``body``, so ``api.errors`` answers
    them as it answers a body FastAPI validated itself."""
    errors: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False):
        errors.append({**err, "loc": ("body", *err["loc"])})
    return RequestValidationError(errors)


def validated(document: Any, adapter: TypeAdapter[T]) -> T:
    """``document`` validated by ``adapter``; 400 naming the field otherwise."""
    try:
        return adapter.validate_python(document)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _parse(body: bytes, adapter: TypeAdapter[T], parse: Callable[[bytes], Any]) -> T:
    return validated(parse(body), adapter)


async def read_body(request: Request) -> bytes:
    """The request's body, read within the route's limit; 400 (``body`` missing) when
    empty. For routes that authenticate from the headers before reading."""
    body = await request.body()
    if not body:
        raise _validation_error(
            ValidationError.from_exception_data(
                "body", [{"type": "missing", "loc": (), "input": None}]
            )
        )
    return body


async def read_json(
    request: Request, adapter: TypeAdapter[T], parse: Callable[[bytes], Any] = parse_json
) -> T:
    """The request's JSON body, read within the route's limit, parsed with ``parse``
    (:func:`millrace.api.jsonbody.parse_json`) and validated by ``adapter``; 400 naming the
    field otherwise. For routes that authenticate from the headers before reading."""
    body = await read_body(request)
    if len(body) > OFFLOAD_ABOVE:
        return await asyncio.to_thread(_parse, body, adapter, parse)
    return _parse(body, adapter, parse)


def body_schema(adapter: TypeAdapter[Any], description: str) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON request body the route reads itself."""
    schema = adapter.json_schema()
    defs = schema.pop("$defs", {})
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": _inline(schema, defs)}},
        }
    }


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``#/$defs/X`` reference replaced by X (the body models have
    no recursive references), so the schema stands alone in the operation."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(value, defs) for value in node]
    return node
