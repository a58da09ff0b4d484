"""Serving the console next to the API: :func:`console_app`.

NiceGUI is one application per process (``nicegui.app``); ``ui.run_with`` mounts it on a
FastAPI app. Mounted on the API app itself at ``/`` it would take every path the API does
not match, and the API's own 404 and 405 answers would become NiceGUI's pages. So it is
mounted on a carrier app of its own, and :class:`ConsoleDispatcher` sends a request
there only when its path is a console page or NiceGUI's own (``/_nicegui…``); every other
request reaches the API exactly as before.

The console is not loaded at start: importing NiceGUI, Socket.IO and the pages costs
about half a second of CPU (a second of wall time on a busy machine), which the server's
readiness should not wait for. It loads :data:`PRELOAD_AFTER_S` after the server started,
in the background (the imports in a thread, so the API keeps answering), so an
operator's first page is as fast as the next one; with ``api.console_preload: false``
(an API-only process behind a load balancer that only machines call; the tests' engines)
it loads on its first request instead, which then waits for it. The carrier's lifespan
(NiceGUI's startup) runs inside the server's event loop, and its shutdown with the
server's; the API app has no lifespan of its own.

The browser talks to NiceGUI over Socket.IO's HTTP long-polling transport: the API
server runs without a WebSocket protocol (``ws: none``), so every console request passes
the same HTTP limits, timeouts and connection caps as any other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from millrace.api.console.pages import paths

log = logging.getLogger(__name__)

NICEGUI_PREFIX = "/_nicegui"
#: seconds after the server's start at which the console loads in the background
PRELOAD_AFTER_S = 1.0
#: Engine.IO packets one long-polling POST may carry
MAX_PACKETS = 1000

_mounted: dict[str, Any] = {}


class ConsoleDispatcher:
    """ASGI: console paths to the console (mounted on its first request), the rest (and
    nothing else) to ``api``."""

    def __init__(self, api: ASGIApp, data_dir: Path | str, *, preload: bool = True) -> None:
        self.api = api
        self.data_dir = data_dir
        self.preload = preload
        #: the background load (:meth:`_preload`) while it runs
        self._preloading: asyncio.Task[None] | None = None
        self.paths = paths()
        #: the console's carrier app once mounted (``app``: NiceGUI's startup looks for
        #: its uvicorn server along ``.app`` links from the server's app to the carrier)
        self.app: ASGIApp | None = None
        #: the console's start (mount + NiceGUI's startup), one for every first request:
        #: its result is the carrier's lifespan (its task and the queue it receives from)
        self._start: asyncio.Task[tuple[asyncio.Task[None], asyncio.Queue[Message]]] | None = None

    def is_console(self, path: str) -> bool:
        return path in self.paths or path.startswith(NICEGUI_PREFIX) or path == "/favicon.ico"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._server_lifespan(receive, send)
        elif self.is_console(str(scope.get("path", ""))):
            await (await self._console())(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    async def _console(self) -> ASGIApp:
        if self._start is None:
            self._start = asyncio.create_task(self._mount(), name="console-start")
        start = self._start
        try:
            # shielded: a first request that goes away (its client left) does not
            # cancel the start the others wait on
            await asyncio.shield(start)
        except asyncio.CancelledError:
            raise
        except Exception:
            if self._start is start:
                self._start = None  # a later request tries again
            raise
        assert self.app is not None
        return self.app

    async def _mount(self) -> tuple[asyncio.Task[None], asyncio.Queue[Message]]:
        self.app = _carrier(self.api, self.data_dir)
        return await _start_lifespan(self.app)

    async def _preload(self, after_s: float) -> None:
        """Load the console ``after_s`` after the server's start, unless a request
        already did. The imports run in a thread (the event loop keeps serving; they
        take the GIL in slices); a failure is logged and left to the first request."""
        await asyncio.sleep(after_s)
        if self._start is not None:
            return
        try:
            await asyncio.to_thread(_import_console, self.data_dir)
            await self._console()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning(
                "console: loading it in the background failed; it loads on its first request",
                exc_info=True,
            )

    async def _server_lifespan(self, receive: Receive, send: Send) -> None:
        """The server's lifespan: nothing to start; at shutdown, the console's if it
        was started."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.preload:
                    self._preloading = asyncio.create_task(
                        self._preload(PRELOAD_AFTER_S), name="console-preload"
                    )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self._cancel_preload()
                    await self._stop_console()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _cancel_preload(self) -> None:
        task, self._preloading = self._preloading, None
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def _stop_console(self) -> None:
        start, self._start = self._start, None
        if start is None:
            return
        try:
            task, inbox = await start
        except Exception:
            return  # it never started
        await inbox.put({"type": "lifespan.shutdown"})
        await task


async def _start_lifespan(app: ASGIApp) -> tuple[asyncio.Task[None], asyncio.Queue[Message]]:
    """Run ``app``'s lifespan in a task until its startup completed (or raise why not)."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    started: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    async def send(message: Message) -> None:
        if message["type"].startswith("lifespan.startup") and not started.done():
            started.set_result(message)

    async def run() -> None:
        try:
            await app(
                {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send
            )
        finally:
            if not started.done():
                started.set_result({"type": "lifespan.startup.failed", "message": "ended"})

    task = asyncio.create_task(run(), name="console-lifespan")
    await inbox.put({"type": "lifespan.startup"})
    answer = await started
    if answer["type"] != "lifespan.startup.complete":
        await task
        raise RuntimeError(f"the console did not start: {answer.get('message', '')}")
    return task, inbox


def _storage_in(data_dir: Path | str) -> None:
    """NiceGUI's storage files under ``data_dir/console`` (read when NiceGUI is imported)."""
    os.environ.setdefault("NICEGUI_STORAGE_PATH", str(Path(data_dir) / "console"))


def _import_console(data_dir: Path | str) -> None:
    """Import what :func:`_carrier` and the pages need (in a worker thread: the slow part
    of the console's start)."""
    _storage_in(data_dir)
    import engineio.payload  # noqa: F401
    import nicegui  # noqa: F401

    from millrace.api.console import shell  # noqa: F401
    from millrace.api.console.pages import pages

    pages()


def _carrier(api: ASGIApp, data_dir: Path | str) -> ASGIApp:
    """NiceGUI mounted on its carrier app, its pages calling ``api``. Once per process:
    a later call (a restarted server stage) points the pages at the new ``api`` and
    reuses the mounted carrier."""
    _storage_in(data_dir)
    from engineio.payload import Payload
    from fastapi import FastAPI
    from nicegui import app as nicegui_app
    from nicegui import ui

    from millrace.api.console import shell

    shell.API_APP[0] = api
    if "carrier" not in _mounted:
        carrier = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        shell.install()
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
        # Quasar's loading bar follows every XHR unless told not to; over long polling
        # one is always pending, so the bar never stopped moving at the top of every page
        # and kept the browser drawing frames (~20 % of a core per open tab, idle)
        nicegui_app.config.quasar_config["loadingBar"]["skipHijack"] = True
        # a polling POST carries every event the page queued since the last one (typing
        # fast queues one per key); Engine.IO refuses more than 16 by default
        Payload.max_decode_packets = MAX_PACKETS
        _mounted["carrier"] = carrier
    carrier_app: ASGIApp = _mounted["carrier"]
    return carrier_app


def console_app(api: ASGIApp, data_dir: Path | str, *, preload: bool = True) -> ConsoleDispatcher:
    """``api`` with the console at ``/`` (loaded in the background soon after the start
    with ``preload``, else on its first request). NiceGUI's storage files go under
    ``data_dir/console``."""
    return ConsoleDispatcher(api, data_dir, preload=preload)
