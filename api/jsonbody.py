"""Request bodies parsed as JSON with orjson: strict where the stdlib is lenient.

The stdlib parser accepts lone surrogates (``"\\ud800"``, which later fail to encode as
UTF-8 and answered 500), integers of any length (a 5,000-digit number costs quadratic
time to convert) and nesting down to the recursion limit. orjson refuses all three at
the edge, so every route that takes JSON answers 400 naming ``body`` instead.
"""

from __future__ import annotations

from typing import Any

import orjson

from millrace.api.errors import ApiError


def parse_json(body: bytes) -> Any:
    """The document in ``body``; :class:`ApiError` 400 naming ``body`` when it is not
    JSON that millrace accepts."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} at character {exc.pos}"
        raise ApiError(
            400,
            "invalid_body",
            f"body: {message}",
            [{"field": "body", "message": message, "position": exc.pos}],
        ) from None
