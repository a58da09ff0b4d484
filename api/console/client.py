"""The console's REST client: the API app called in process with a tab's token.

Every request goes through the API's whole middleware stack (authentication, audit,
limits) and its routes' permission checks, exactly as a request from outside would;
the console never reads a store itself. A user's access token is refreshed once when
the API answers 401; when that fails too the session is over (:class:`SignedOutError`).

``httpx.ASGITransport`` collects a whole response before returning it, so the live
stream (SSE, endless) is read by :func:`asgi_lines`, a minimal ASGI caller that hands
the body on as it comes and tells the app the client left when the reader stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from starlette.types import ASGIApp, Message

from millrace.api.console.session import Session
from millrace.pipeline.errors import MillraceError

API = "/api/v1"
YAML = "application/yaml"


class ConsoleApiError(MillraceError):
    """The API refused or failed a console request; ``message`` is the API's own and
    ``details`` its error's details (e.g. the violations of a refused file, each with
    its ``json_path``), so a page can show them."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: list[dict[str, Any]] = details if details is not None else []


class SignedOutError(ConsoleApiError):
    """The token is no longer accepted and could not be refreshed."""


def _error(resp: httpx.Response) -> ConsoleApiError:
    details: list[dict[str, Any]] = []
    try:
        body = resp.json()["error"]
        code, message = str(body.get("code", "")), str(body.get("message", ""))
        listed = body.get("details")
    except (ValueError, KeyError, TypeError, AttributeError):
        code, message, listed = "error", resp.text[:200], None
    if isinstance(listed, dict):  # the API also answers one object of details
        listed = [listed]
    if isinstance(listed, list):
        details = [d for d in listed if isinstance(d, dict)]
    cls = SignedOutError if resp.status_code == 401 else ConsoleApiError
    return cls(resp.status_code, code, message, details)


class ConsoleApi:
    """REST calls for one tab's ``session``; ``client`` is the browser's address (the
    API's audit and rate limits see who really asked). ``on_session(previous, current)``
    is told each change of the tab's session (sign-in, refresh: the same object, end:
    None)."""

    def __init__(
        self,
        app: ASGIApp,
        session: Session | None,
        client: tuple[str, int] = ("127.0.0.1", 0),
        on_session: Callable[[Session | None, Session | None], None] = lambda _old, _new: None,
    ) -> None:
        self.app = app
        self.session = session
        self.client = client
        self.on_session = on_session
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=client),
            base_url="http://console",
            timeout=30.0,
        )

    async def close(self) -> None:
        await self.http.aclose()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session.token}"} if self.session else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        text: str | None = None,
        media_type: str = YAML,
    ) -> Any:
        """The answer of ``method API+path``: JSON decoded, any other content (a
        template's YAML) as text. The body is ``json``, or ``text`` sent as
        ``media_type`` (a commissioning file's YAML as written: JSON cannot carry its
        dates or non-string keys). Errors raise :class:`ConsoleApiError`."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        body: dict[str, Any] = {"json": json}
        extra: dict[str, str] = {}
        if text is not None:
            body = {"content": text.encode()}
            extra = {"Content-Type": media_type}

        async def send() -> httpx.Response:
            return await self.http.request(
                method, API + path, params=query, headers=self._headers() | extra, **body
            )

        resp = await send()
        if resp.status_code == 401 and await self._refresh():
            resp = await send()
        if resp.status_code >= 400:
            raise _error(resp)
        if not resp.content:
            return None
        if "json" in resp.headers.get("content-type", "application/json"):
            return resp.json()
        return resp.text

    async def health(self, path: str) -> Any:
        """A ``/health/...`` answer (outside ``/api/v1``; 503 still carries its checks)."""
        resp = await self.http.get(path)
        if resp.status_code not in (200, 503):
            raise _error(resp)
        return resp.json()

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, json: Any = None, **params: Any) -> Any:
        return await self.request("POST", path, params=params, json=json)

    async def _refresh(self) -> bool:
        if self.session is None or not self.session.refresh_token:
            return False
        resp = await self.http.post(
            API + "/refresh", json={"refresh_token": self.session.refresh_token}
        )
        if resp.status_code != 200:
            ended, self.session = self.session, None
            self.on_session(ended, None)
            return False
        pair = resp.json()
        self.session.token = pair["access_token"]
        self.session.refresh_token = pair["refresh_token"]
        self.on_session(self.session, self.session)
        return True

    # -- signing in ----------------------------------------------------------------------

    async def sign_in(self, username: str, password: str) -> Session:
        """A user's session from ``POST /login`` and ``GET /me``."""
        resp = await self.http.post(
            API + "/login", json={"username": username, "password": password}
        )
        if resp.status_code != 200:
            raise _error(resp)
        pair = resp.json()
        return await self._open(Session(pair["access_token"], pair["refresh_token"]))

    async def sign_in_key(self, key: str) -> Session:
        """An API key's session (checked by ``GET /me``)."""
        return await self._open(Session(key))

    async def _open(self, session: Session) -> Session:
        previous, self.session = self.session, session
        try:
            me = await self.get("/me")
        except ConsoleApiError:
            self.session = None
            raise
        session.apply_me(me["data"])
        self.on_session(previous, session)
        return session

    async def sign_out(self) -> None:
        session, self.session = self.session, None
        if session is not None and session.refresh_token:
            with contextlib.suppress(httpx.HTTPError):
                await self.http.post(
                    API + "/logout",
                    json={"refresh_token": session.refresh_token},
                    headers={"Authorization": f"Bearer {session.token}"},
                )
        self.on_session(session, None)

    # -- the live stream -----------------------------------------------------------------

    async def events(self, subscriptions: list[dict[str, Any]]) -> AsyncIterator[tuple[str, Any]]:
        """``(event, data)`` of a live stream with ``subscriptions`` (the hello event
        consumed); ends when the API ends the stream."""
        if self.session is None:
            raise SignedOutError(401, "unauthorized", "not signed in")
        lines = asgi_lines(
            self.app,
            API + "/stream",
            self._headers() | {"Accept": "text/event-stream"},
            self.client,
        )
        try:
            event, data = "", ""
            async for line in lines:
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif line == "" and event:
                    payload: Any = orjson.loads(data) if data else {}
                    if event == "hello":
                        for sub in subscriptions:
                            await self.post(f"/stream/{payload['stream_id']}/subscriptions", sub)
                    elif event == "error":
                        raise ConsoleApiError(500, "stream", str(payload))
                    else:
                        yield event, payload
                    event, data = "", ""
        finally:
            await lines.aclose()


async def asgi_lines(
    app: ASGIApp,
    path: str,
    headers: dict[str, str],
    client: tuple[str, int],
    query: dict[str, str] | None = None,
) -> AsyncGenerator[str, None]:
    """The text lines of a GET response of ``app`` as they are sent; a status other
    than 200 raises :class:`ConsoleApiError`. Closing the iterator disconnects."""
    left = asyncio.Event()
    chunks: asyncio.Queue[Message] = asyncio.Queue()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": urlencode(query or {}).encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": client,
        "server": ("console", 80),
    }
    sent_request = False

    async def receive() -> Message:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await chunks.put(message)

    async def call() -> None:
        try:
            await app(scope, receive, send)
        finally:
            await chunks.put({"type": "http.response.body", "body": b"", "more_body": False})

    task = asyncio.create_task(call(), name="console-stream")
    try:
        start = await chunks.get()
        status = int(start.get("status", 500))
        if status != 200:
            body = b""
            while (msg := await chunks.get()).get("more_body"):
                body += msg.get("body", b"")
            body += msg.get("body", b"")
            raise _error(httpx.Response(status, content=body))
        pending = ""
        while True:
            msg = await chunks.get()
            pending += msg.get("body", b"").decode()
            *complete, pending = pending.split("\n")
            for line in complete:
                yield line.rstrip("\r")
            if not msg.get("more_body", False):
                return
    finally:
        left.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
