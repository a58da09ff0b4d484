"""Authentication before anything else reads the request.

Every ``/api/v1`` request must carry a valid key before its body is parsed, so an
unauthenticated client gets 401 and costs the server nothing; the role a route needs
is checked by its dependency (``api.context.require``), which reuses the principal
found here.
"""

from __future__ import annotations

import re
from typing import Any, Protocol
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from millrace.api.auth import Principal
from millrace.api.errors import error_body
from millrace.api.permissions import SIGN_IN_PATHS
from millrace.api.responses import JsonResponse

PROTECTED_PREFIX = "/api/v1"
#: device-facing routes: a device has no API key. Provisioning is open (guarded by
#: the provisioning switch and IP allow-list, checked before its body is read); ingest
#: authenticates the device's own credential in its route when the caller presents no
#: valid API key, from the headers too: neither route reads a body before deciding, and
#: ``api.limits`` bounds the body once they do.
DEVICE_ROUTES = re.compile(r"^/api/v1/(provision|identities/[^/]+/data)$")
#: browsers' EventSource cannot set headers: the event streams (live stream, log
#: stream) also take the key as ``?access_token=`` (when there is no Authorization
#: header; never logged)
QUERY_TOKEN_PATH = "/api/v1/stream"
QUERY_TOKEN_PATHS = frozenset({QUERY_TOKEN_PATH, "/api/v1/logs/stream"})


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def query_token(scope: Scope) -> str | None:
    """The ``access_token`` query parameter of an event stream, when no
    Authorization header is sent."""
    if scope.get("path") not in QUERY_TOKEN_PATHS:
        return None
    if any(name == b"authorization" for name, _ in scope.get("headers", [])):
        return None
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    for name, value in parse_qsl(query):
        if name == "access_token" and value.strip():
            return value.strip()
    return None


class Authenticator(Protocol):
    def authenticate(self, token: str) -> Principal | None: ...


class AuthenticationMiddleware:
    def __init__(
        self, app: ASGIApp, keys: Authenticator, cn_header: str = "x-ssl-client-cn"
    ) -> None:
        self.app = app
        self.keys = keys
        self.device_headers = (b"authorization", cn_header.lower().encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if (
            scope["type"] != "http"
            or not path.startswith(PROTECTED_PREFIX)
            or path in SIGN_IN_PATHS
        ):
            # login, refresh, logout: the credential is in the body; provision: below
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope.get("headers", [])) or query_token(scope)
        principal = self.keys.authenticate(token) if token else None
        device = DEVICE_ROUTES.match(str(scope.get("path", "")))
        if principal is None and device is not None:
            # a device presents its own credential (checked by the route); without any
            # credential the answer is 401 before the body is read, as for a key
            headers = dict(scope.get("headers", []))
            if device.group(1) == "provision" or any(h in headers for h in self.device_headers):
                await self.app(scope, receive, send)
                return
        if principal is None:
            message = (
                "invalid API key"
                if token
                else "missing API key: send 'Authorization: Bearer <key>'"
            )
            response = JsonResponse(
                error_body("unauthorized", message),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["principal"] = principal
        await self.app(scope, receive, send)
