"""HTTP ingest: a device's readings as one TelemetryBatch on the log."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from api.auth import Principal
from api.context import AppContext, context, operator
from api.errors import ApiError
from api.responses import JsonResponse
from pipeline.topics import TELEMETRY

router = APIRouter(tags=["ingest"])

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
    now = ctx.clock()
    readings = 0
    for i, sample in enumerate(samples):
        ts = sample.timestamp
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


@router.post(
    "/identities/{identity}/data",
    status_code=202,
    summary="Ingest a batch of readings for one identity",
    responses={400: {"description": "invalid batch; the error names the field"}},
)
async def ingest(
    identity: Annotated[str, Path(pattern=IDENTITY_PATTERN)],
    samples: Annotated[list[SampleIn], Body(description="samples, oldest first or not")],
    ctx: AppContext = Depends(context),
    principal: Principal = Depends(operator),
) -> JsonResponse:
    """Validate the batch and append it to the log as one TelemetryBatch; answer once
    the log has acknowledged it. Projections follow within the runtime's batch time."""
    readings = validate_samples(samples, ctx)
    batch: dict[str, Any] = {
        "identity": identity,
        "source": f"http:{principal.key_id}",
        "received_us": ctx.clock(),
        "samples": [
            {"ts_us": s.timestamp, "values": s.values, "quality": s.quality} for s in samples
        ],
    }
    await ctx.publisher.publish(TELEMETRY, [(identity, batch)])
    ctx.on_ingest()
    return JsonResponse(
        {"status": "accepted", "identity": identity, "samples": len(samples), "readings": readings},
        status_code=202,
    )
