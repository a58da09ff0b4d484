"""Serving the console next to the API: :func:`console_app`.

NiceGUI is one application per process (``nicegui.app``); ``ui.run_with`` mounts it on a
FastAPI app. Mounted on the API app itself at ``/`` it would take every path the API does
not match, and the API's own 404 and 405 answers would become NiceGUI's pages. So it is
mounted on a carrier app of its own, and :class:`ConsoleDispatcher` sends a request
there only when its path is a console page or NiceGUI's own (``/_nicegui…``); every other
request reaches the API exactly as before. The lifespan goes to the carrier (NiceGUI's
startup and shutdown); the API app has no lifespan of its own.

The browser talks to NiceGUI over Socket.IO's HTTP long-polling transport: the API
server runs without a WebSocket protocol (``ws: none``), so every console request passes
the same HTTP limits, timeouts and connection caps as any other.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

NICEGUI_PREFIX = "/_nicegui"
#: Engine.IO packets one long-polling POST may carry
MAX_PACKETS = 1000

_mounted: dict[str, Any] = {}


class ConsoleDispatcher:
    """ASGI: console paths to ``console``, the rest (and nothing else) to ``api``."""

    def __init__(self, api: ASGIApp, console: ASGIApp, paths: frozenset[str]) -> None:
        self.api = api
        self.app = console  # ``app``: NiceGUI looks for its server along ``.app`` links
        self.paths = paths

    def is_console(self, path: str) -> bool:
        return path in self.paths or path.startswith(NICEGUI_PREFIX) or path == "/favicon.ico"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or self.is_console(str(scope.get("path", ""))):
            await self.app(scope, receive, send)
        else:
            await self.api(scope, receive, send)


def console_app(api: ASGIApp, data_dir: Path | str) -> ConsoleDispatcher:
    """``api`` with the console at ``/``. NiceGUI's storage files go under
    ``data_dir/console``. Once per process: a later call (a restarted server stage)
    points the console's pages at the new ``api`` and reuses the mounted console."""
    os.environ.setdefault("NICEGUI_STORAGE_PATH", str(Path(data_dir) / "console"))
    from engineio.payload import Payload
    from fastapi import FastAPI
    from nicegui import app as nicegui_app
    from nicegui import ui

    from millrace.api.console import shell

    shell.API_APP[0] = api
    if "carrier" not in _mounted:
        carrier = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        _mounted["paths"] = shell.install()
        ui.run_with(
            carrier,
            title="millrace",
            favicon=shell.FAVICON,
            show_welcome_message=False,
            reconnect_timeout=10.0,
            # signs the browser-id cookie only (sessions stay in memory: shell.SESSIONS)
            storage_secret=secrets.token_urlsafe(32),
        )
        nicegui_app.config.socket_io_js_transports = ["polling"]
        # a polling POST carries every event the page queued since the last one (typing
        # fast queues one per key); Engine.IO refuses more than 16 by default
        Payload.max_decode_packets = MAX_PACKETS
        _mounted["carrier"] = carrier
    return ConsoleDispatcher(api, _mounted["carrier"], _mounted["paths"])
