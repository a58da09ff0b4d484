"""The API server as a stage (``pipeline.runtime.stage``): uvicorn serving the app
built from an :class:`AppContext`, stopped by the deployment (not by its own signal
handlers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from millrace.api.server import build_server
from millrace.api.server_limits import ServerLimits
from millrace.pipeline.runtime.stage import Stage


class ApiServerStage(Stage):
    """Serves ``app_factory()`` on ``host:port`` until stop; ``on_stop`` runs first
    (closing live streams, which uvicorn would otherwise wait on)."""

    name = "api-server"
    stop_timeout_s = 30.0

    def __init__(
        self,
        app_factory: Callable[[], Any],
        host: str,
        port: int,
        limits: ServerLimits | None = None,
        *,
        on_stop: Callable[[], None] | None = None,
        **config: Any,
    ) -> None:
        self.app_factory = app_factory
        self.host = host
        self.port = port
        self.limits = limits
        self.on_stop = on_stop
        self.config = config
        self.server: Any = None

    async def start(self) -> None:
        self.server = build_server(
            self.app_factory(), self.host, self.port, self.limits, **self.config
        )

    async def run(self, stop: asyncio.Event) -> None:
        server = self.server
        task = asyncio.create_task(server.serve(), name="uvicorn")
        try:
            await stop.wait()
        finally:
            if self.on_stop is not None:
                self.on_stop()
            server.should_exit = True
            with contextlib.suppress(Exception):
                await task

    def health(self) -> dict[str, Any]:
        started = bool(self.server is not None and self.server.started)
        return {"host": self.host, "port": self.port, "serving": started}
