"""Authentication before anything else reads the request.

Every ``/api/v1`` request must carry a valid key before its body is parsed, so an
unauthenticated client gets 401 and costs the server nothing; the role a route needs
is checked by its dependency (``api.context.require``), which reuses the principal
found here.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import KeyStore
from api.errors import error_body
from api.responses import JsonResponse

PROTECTED_PREFIX = "/api/v1"


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp, keys: KeyStore) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope.get("headers", []))
        principal = self.keys.authenticate(token) if token else None
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
