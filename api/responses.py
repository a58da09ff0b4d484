"""JSON responses rendered with orjson (fast, and NaN/inf become null)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import Response


def render_json(content: Any) -> bytes:
    """The JSON of a response body (a worker thread may render a large one ahead and
    hand it over as an ``orjson.Fragment``)."""
    try:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        # e.g. ClickHouse (U)Int128/256 from analyst SQL: beyond orjson's 64 bits
        return json.dumps(content, default=str, allow_nan=False).encode()


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return render_json(content)
