"""API errors: every failure answers ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from millrace.api.responses import JsonResponse
from millrace.pipeline.errors import MillraceError


class ApiError(MillraceError):
    """An error with an HTTP status, a stable code and the offending field(s): an answer
    the API decides to give (why it is in the tree: ``pipeline/errors.py``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details if details is not None else []
        self.headers = headers


def bad_request(field: str, message: str) -> ApiError:
    return ApiError(
        400, "invalid_parameter", f"{field}: {message}", [{"field": field, "message": message}]
    )


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 0, 'values', 'x') -> 'body[0].values.x'"""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


_VALUE_BRANCHES = {"bool", "int", "float", "str"}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JsonResponse:
        return JsonResponse(
            error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        details: list[dict[str, Any]] = []
        seen: set[str] = set()
        for err in exc.errors():
            loc = list(err.get("loc", ()))
            message = err.get("msg", "")
            if loc and loc[-1] in _VALUE_BRANCHES:
                # one message for a value that matched no branch of number|bool|string
                loc, message = loc[:-1], "must be a number, boolean or string"
            if err.get("type") == "json_invalid":
                field = "body"
            else:
                # drop the leading "query"/"path" source; keep "body" as the root
                field = _loc(loc[1:] if loc and loc[0] in ("query", "path") else loc)
            if field in seen:
                continue
            seen.add(field)
            details.append({"field": field, "message": message, "type": err.get("type")})
        first = details[0] if details else {"field": "request", "message": "invalid"}
        return JsonResponse(
            error_body("invalid_request", f"{first['field']}: {first['message']}", details), 400
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JsonResponse:
        logging.getLogger("millrace.api").error("unhandled error", exc_info=exc)
        return JsonResponse(error_body("internal_error", "internal error; see the server log"), 500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JsonResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JsonResponse(
            error_body(code, str(exc.detail)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )
