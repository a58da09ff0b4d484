"""The route class of every API router: strings enter as valid Unicode or not at all.

Starlette decodes percent-escapes in the query and the path with ``errors="replace"``
(``%ED%A0%80``, a UTF-8 encoded surrogate, arrives as three U+FFFD), and FastAPI parses
JSON bodies with the stdlib, which accepts lone surrogates (``"\\ud800"``) that no UTF-8
writer can encode later (they answered 500 on seven routes), integers of any length and
nesting down to the recursion limit. :class:`StrictRoute` refuses all of these with a
400 naming the field before the endpoint or its dependencies run. Headers need nothing:
Starlette decodes them as latin-1, which cannot produce a surrogate.

FastAPI keeps each route's own class when a router is included (``app.router.route_class``
does not reach them), so every ``APIRouter`` is created with ``route_class=StrictRoute``;
``tests/api/test_hostile_input.py`` checks that none is missed.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Request, Response
from fastapi.routing import APIRoute

from millrace.api.errors import ApiError, bad_request
from millrace.api.jsonbody import parse_json

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class StrictJsonRequest(Request):
    """A request whose ``json()`` is :func:`millrace.api.jsonbody.parse_json`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI would parse a body of this content type as JSON."""
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _invalid(field: str) -> ApiError:
    return bad_request(field, "is not valid UTF-8 (percent-encoded bytes must be UTF-8 text)")


def check_query(query_string: bytes) -> None:
    """Every name and value of the query string decodes as UTF-8; else 400 naming it."""
    for pair in query_string.split(b"&"):
        name, _, value = pair.partition(b"=")
        raw_name = unquote_to_bytes(name.replace(b"+", b" "))
        if not _utf8(raw_name):
            raise _invalid("query")
        if not _utf8(unquote_to_bytes(value.replace(b"+", b" "))):
            raise _invalid(raw_name.decode("utf-8"))


def check_path(raw_path: bytes, template: str) -> None:
    """Every segment of the path decodes as UTF-8; else 400 naming the path parameter
    of that segment. ``template`` is the route's path (``/identities/{identity}``),
    which may lack the router's prefix: segments are matched from the end."""
    segments = raw_path.split(b"/")
    names = template.split("/")
    for back, segment in enumerate(reversed(segments), start=1):
        if b"%" in segment and not _utf8(unquote_to_bytes(segment)):
            name = names[-back] if back <= len(names) else ""
            field = name[1:-1].partition(":")[0] if name.startswith("{") else "path"
            raise _invalid(field)


class StrictRoute(APIRoute):
    """An ``APIRoute`` that checks the query and the path for invalid UTF-8 and parses a
    JSON body with :func:`millrace.api.jsonbody.parse_json` (400 naming ``body`` and the
    position), before FastAPI validates anything."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        template = self.path_format
        takes_body = self.body_field is not None

        async def strict_handler(request: Request) -> Response:
            scope = request.scope
            check_query(scope.get("query_string", b""))
            raw_path = scope.get("raw_path")
            if raw_path:
                check_path(raw_path.partition(b"?")[0], template)
            request = StrictJsonRequest(scope, request.receive)
            json_body = takes_body and is_json(request.headers.get("content-type"))
            if json_body and await request.body():
                # here rather than in FastAPI's own call, which would turn the ApiError
                # into a generic "There was an error parsing the body"
                await request.json()
            return await handler(request)

        return strict_handler
