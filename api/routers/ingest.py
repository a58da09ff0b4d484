"""HTTP ingest: a device's readings as one TelemetryBatch on the log."""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
)

from millrace.api import models
from millrace.api.auth import Principal
from millrace.api.context import (
    AppContext,
    authorize,
    bearer_scheme,
    context,
    route_permission,
)
from millrace.api.device_auth import ip_allowed, parse_basic, parse_bearer
from millrace.api.errors import ApiError
from millrace.api.idempotency import HEADER, IDEMPOTENCY_PARAMETER, fingerprint, parse_key
from millrace.api.ingest_columns import IngestRules, plain_columns
from millrace.api.ingest_gate import LOCKED, MISSING
from millrace.api.jsonbody import parse_json
from millrace.api.limits import OFFLOAD_ABOVE, body_schema, read_body, validated
from millrace.api.registry import definitions, identity_status
from millrace.api.responses import JsonResponse
from millrace.api.routing import StrictRoute
from millrace.pipeline import events
from millrace.pipeline.batches import http_batch_id, new_batch_id
from millrace.pipeline.identities.resources import check_values
from millrace.pipeline.telemetry_columns import Columns, from_samples
from millrace.pipeline.timestamps import ts_problem
from millrace.pipeline.topics import TELEMETRY

#: StrictRoute checks the path and query; the body is read and parsed by the route
router = APIRouter(tags=["ingest"], route_class=StrictRoute)

IDENTITY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
SIGNAL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")
MAX_TEXT = 65_536
INT64 = 2**63

Value = StrictBool | StrictInt | StrictFloat | StrictStr


class SampleIn(BaseModel):
    """One sample: a timestamp (epoch microseconds) and signal values."""

    model_config = ConfigDict(extra="forbid")
    timestamp: StrictInt = Field(description="epoch microseconds (UTC)")
    values: dict[str, Value] = Field(description="signal -> number | boolean | string")
    quality: StrictInt = Field(0, description="0 = good; else the source's status code")


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        400, "invalid_body", f"{field}: {message}", [{"field": field, "message": message}]
    )


def validate_samples(samples: list[SampleIn], ctx: AppContext) -> int:
    """Check a batch against the ingest rules; return its number of readings."""
    s = ctx.settings
    if not samples:
        raise _invalid("body", "empty batch: send at least one sample")
    if len(samples) > s.max_batch_samples:
        raise _invalid("body", f"{len(samples)} samples; at most {s.max_batch_samples} per request")
    total = sum(len(sample.values) for sample in samples)
    if total > s.max_batch_readings:
        raise _invalid(
            "body",
            f"{total} readings; at most {s.max_batch_readings} per request (split the batch)",
        )
    now = ctx.clock()
    readings = 0
    for i, sample in enumerate(samples):
        ts = sample.timestamp
        problem = ts_problem(ts)
        if problem is not None:
            raise _invalid(f"body[{i}].timestamp", problem)
        if ts > now + s.max_future_us:
            raise _invalid(
                f"body[{i}].timestamp", "more than 1 day in the future (expects epoch microseconds)"
            )
        if ts < now - s.max_past_us:
            raise _invalid(
                f"body[{i}].timestamp",
                "more than 10 years in the past (expects epoch microseconds)",
            )
        if not -(2**31) <= sample.quality < 2**31:
            raise _invalid(f"body[{i}].quality", "must fit in a signed 32-bit integer")
        if not sample.values:
            raise _invalid(f"body[{i}].values", "empty: send at least one signal")
        for name, v in sample.values.items():
            field = f"body[{i}].values.{name}"
            if not SIGNAL_RE.match(name):
                raise _invalid(
                    field,
                    "signal names are 1-128 of A-Z a-z 0-9 _ . : - (not starting with . : -)",
                )
            if s.strict_signals and name not in s.known_signals:
                raise _invalid(field, "unknown signal (strict mode)")
            if isinstance(v, float) and not math.isfinite(v):
                raise _invalid(field, "must be a finite number")
            if isinstance(v, int) and not isinstance(v, bool) and not -INT64 <= v < INT64:
                raise _invalid(field, "integer out of 64-bit range")
            if isinstance(v, str) and len(v.encode()) > MAX_TEXT:
                raise _invalid(field, f"string longer than {MAX_TEXT} bytes")
        readings += len(sample.values)
    return readings


async def ingest_caller(
    request: Request,
    identity: Annotated[str, Path(pattern=IDENTITY_PATTERN)],
    ctx: AppContext = Depends(context),
    _: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> str:
    """Who may post readings for ``identity``: an operator's API key (checked by the
    middleware) or the device's own credential — ``Authorization: Bearer <token or
    password>``, ``Basic base64(identity:password)``, or a certificate CN passed by a
    trusted TLS front end. Returns the batch's ``source``."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None:
        authorize(principal, route_permission(request), "operator", {"identity": identity})
        source = f"http:{principal.key_id}"
    else:
        await authenticate_device(request, identity, ctx)
        source = f"device:{identity}"
    refusal = await ctx.ingest_gate.refusal(identity)
    if refusal == LOCKED:
        raise ApiError(403, "identity_locked", f"identity {identity!r} is locked")
    if refusal == MISSING:
        raise ApiError(404, "not_found", f"identity {identity!r} is not registered")
    return source


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def authenticate_device(request: Request, identity: str, ctx: AppContext) -> None:
    ip = request.client.host if request.client else None
    header = request.headers.get("authorization", "")
    secret: str | None = None
    basic = parse_basic(header) if header else None
    if basic is not None:
        if basic[0] != identity:
            raise _unauthorized("the Basic user must be the identity of the path")
        secret = basic[1]
    elif header:
        secret = parse_bearer(header)
    cn = None
    prov = ctx.registry.provisioning
    if ctx.trusted_proxies and ip_allowed(ip, ctx.trusted_proxies):
        cn = request.headers.get(prov.cn_header)
    if secret is None and cn is None:
        raise _unauthorized("missing credentials: an API key or the device's credential")
    if ctx.failures.blocked(identity, ip):
        raise ApiError(429, "too_many_failures", "too many failed attempts; try again later")
    cred = await asyncio.to_thread(ctx.queries.credential, identity)
    if cred is None or not cred[1]:  # unknown, or never provisioned: the same answer
        if secret is not None:
            await asyncio.to_thread(ctx.hasher.verify_unknown, secret)
        ctx.failures.record_failure(identity, ip)
        raise _unauthorized("invalid API key or device credential")
    auth_type, encoded, expires_us = cred
    if auth_type == "certificate":
        ok = cn is not None and cn == identity
    else:
        ok = secret is not None and await asyncio.to_thread(
            ctx.verified.verify, identity, encoded, secret
        )
    if not ok:
        ctx.failures.record_failure(identity, ip)
        raise _unauthorized("invalid API key or device credential")
    ctx.failures.record_success(identity, ip)
    status = await identity_status(ctx, identity)
    if status == "locked":
        raise ApiError(403, "identity_locked", f"identity {identity!r} is locked")
    if status != "provisioned" or (expires_us and expires_us < ctx.clock()):
        raise ApiError(
            403, "credential_expired", f"identity {identity!r} is {status}: provision again"
        )


def _finite_only_fault(node: Any) -> bool:
    """Whether ``node`` holds a non-finite number and no string UTF-8 cannot encode."""
    found = False
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            found = found or not math.isfinite(item)
        elif isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return False
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
    return found


#: an integer literal of 19 digits or more: orjson reads one beyond 64 bits as a float
_LONG_INT = re.compile(rb"(?<![\d.])-?\d{19,}(?![\d.eE])")
#: every digit as 0, every other byte as "." (a run of 19 digits is then found by a
#: substring search, ~20x faster than the regex over bodies full of 16-digit times)
_DIGIT_RUNS = bytes(48 if 48 <= i <= 57 else 46 for i in range(256))
_NINETEEN = b"0" * 19


def parse_samples(body: bytes) -> Any:
    """The batch as :func:`millrace.api.jsonbody.parse_json` reads it, with two exceptions so
    that a refusal names the field, as it did before orjson: ``NaN``, ``Infinity`` and
    numbers beyond a double, which orjson refuses as a whole, are read as floats; and a
    document with an integer literal that may be beyond 64 bits, which orjson turns
    into a float, is read again with exact integers. Both are refused by validation
    (every value of a batch is checked, and integers outside 64 bits are refused)."""
    try:
        document = parse_json(body)
    except ApiError as exc:
        try:
            fallback = json.loads(body)
        except (ValueError, RecursionError):
            raise exc from None
        if not _finite_only_fault(fallback):
            raise exc from None
        return fallback
    if _NINETEEN in body.translate(_DIGIT_RUNS) and _LONG_INT.search(body):
        try:
            return json.loads(body)  # orjson accepted it: valid UTF-8, no surrogates
        except (ValueError, RecursionError):
            return document
    return document


#: the request body; read by the route after the caller is authenticated
SAMPLES: TypeAdapter[list[SampleIn]] = TypeAdapter(list[SampleIn])


@router.post(
    "/identities/{identity}/data",
    status_code=202,
    summary="Ingest a batch of readings for one identity",
    response_model=models.Ingested,
    responses={
        400: {"description": "invalid batch or Idempotency-Key; the error names the field"},
        422: {"description": "the Idempotency-Key was used for another body"},
    },
    openapi_extra={
        **body_schema(SAMPLES, "samples, oldest first or not"),
        "parameters": [IDEMPOTENCY_PARAMETER],
    },
)
async def ingest(
    identity: Annotated[str, Path(pattern=IDENTITY_PATTERN)],
    request: Request,
    ctx: AppContext = Depends(context),
    source: str = Depends(ingest_caller),
) -> JsonResponse:
    """Validate the batch and append it to the log as one TelemetryBatch; answer once
    the log has acknowledged it. Projections follow within the runtime's batch time.
    Values that break their resource definition are refused (400 naming the resource).

    The caller is authenticated from the headers before the body is read; the body is
    read within the ingest limit (413 beyond it) and holds at most
    ``max_batch_samples`` samples and ``max_batch_readings`` readings.

    ``Idempotency-Key`` (1-255 visible ASCII characters): a retry with the same key and
    body within the window answers like the first call and stores nothing twice; the
    same key with another body is 422 (``api.idempotency``)."""
    key = parse_key(request.headers.get(HEADER))
    body = await read_body(request)
    if len(body) > OFFLOAD_ABOVE:
        batch = await asyncio.to_thread(_parsed, body, ctx)
    else:
        batch = _parsed(body, ctx)
    if key is None:
        status, answer = await _append(identity, batch, request, ctx, source, new_batch_id())
    else:
        status, answer = await ctx.idempotency.answer(
            identity,
            key,
            fingerprint(batch.rows()),
            lambda: _append(identity, batch, request, ctx, source, http_batch_id(identity, key)),
        )
    return JsonResponse(answer, status_code=status)


@dataclass(slots=True)
class _Batch:
    """A request's samples: as columns already (a plainly valid batch,
    ``api.ingest_columns``), or validated in their structure only (``samples``: the
    general path, whose rules :func:`validate_samples` checks)."""

    document: Any
    plain: tuple[Columns, int] | None
    samples: list[SampleIn] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """The samples as pydantic dumps them (the Idempotency-Key's fingerprint)."""
        if self.samples is not None:
            return [s.model_dump() for s in self.samples]
        return [
            {"timestamp": s["timestamp"], "values": s["values"], "quality": s.get("quality", 0)}
            for s in self.document
        ]

    def values(self) -> list[dict[str, Any]]:
        if self.samples is not None:
            return [s.values for s in self.samples]
        return [s["values"] for s in self.document]


def _parsed(body: bytes, ctx: AppContext) -> _Batch:
    """The body parsed; as columns when plainly valid, else validated by pydantic (400
    naming the field when its structure is wrong)."""
    document = parse_samples(body)
    plain = plain_columns(document, _rules(ctx), ctx.clock())
    if plain is not None:
        return _Batch(document, plain)
    return _Batch(document, None, validated(document, SAMPLES))


def _rules(ctx: AppContext) -> IngestRules:
    s = ctx.settings
    return IngestRules(
        s.max_batch_samples,
        s.max_batch_readings,
        s.max_future_us,
        s.max_past_us,
        MAX_TEXT,
        s.strict_signals,
        s.known_signals,
        SIGNAL_RE,
    )


async def _append(
    identity: str,
    batch: _Batch,
    request: Request,
    ctx: AppContext,
    source: str,
    batch_id: str,
) -> tuple[int, dict[str, Any]]:
    """Validate the batch and append it as one TelemetryBatch with ``batch_id``."""
    if batch.plain is not None:
        columns, readings = batch.plain
    else:
        samples = batch.samples or []
        readings = validate_samples(samples, ctx)
        columns = from_samples([events.sample(s.timestamp, s.values, s.quality) for s in samples])
    defs = await definitions(ctx)
    if defs:
        for i, values in enumerate(batch.values()):
            bad = check_values(defs, values)
            if bad is not None:
                raise _invalid(f"body[{i}].values.{bad[0]}", bad[1])
    event = events.telemetry_from_columns(
        identity,
        columns,
        received_us=ctx.clock(),
        source=source,
        ip=request.client.host if request.client else None,
        batch_id=batch_id,
    )
    await ctx.publisher.publish(TELEMETRY, [(identity, event)])
    ctx.on_ingest()
    return 202, {
        "status": "accepted",
        "identity": identity,
        "samples": len(columns.ts_us),
        "readings": readings,
    }
