"""What the operations API (system info, health, metrics, logs, pause/resume, running
configuration) needs from the engine: one :class:`Operations`, built by the stage
assembly (``pipeline.cli.assembly.api``) and handed to the app in ``AppContext.ops``.

Every part is a callable or an object of this process, so the routers never reach into
the runtime; a part that the deployment does not have is None and its route says so
(e.g. the distributed API process has no runtime figures; its pause appends the control
event the ``millrace process`` workers follow).
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from millrace.api.logring import LogRing
from millrace.api.prom import EngineMetrics
from millrace.pipeline.clock import now_us
from millrace.pipeline.runtime.config_follow import RuntimeSetting
from millrace.projections.store.base import ProjectionStore

log = logging.getLogger("millrace.api.operations")


async def _always() -> bool:
    return True


async def _nothing() -> None:
    return None


@dataclass
class Operations:
    logs: LogRing
    metrics: EngineMetrics
    deployment: str = "embedded"
    version: str = "0.0.0"
    build: str = ""
    started_us: int = field(default_factory=now_us)
    data_dir: str | None = None
    #: ``GET /metrics`` answers without a key (``api.metrics_open``)
    metrics_open: bool = False
    #: stop / restart folding (None: no runtime in this process)
    pause: Callable[[], Awaitable[None]] | None = None
    resume: Callable[[], None] | None = None
    paused: Callable[[], bool] = lambda: False
    #: records appended and not folded yet
    lag: Callable[[], int] = lambda: 0
    #: reads again what ``lag``, ``paused`` and the status show, where they are other
    #: processes' figures (``api.remote``; routes await it before reading them)
    refresh: Callable[[], Awaitable[None]] = _nothing
    #: ``/health/ready`` fails above this lag
    ready_max_lag: int = 1_000_000
    #: the log accepts appends (a local log: its directory is writable)
    log_writable: Callable[[], Awaitable[bool]] = _always
    #: the running configuration, secrets masked
    config: Callable[[], dict[str, Any]] = dict
    #: runtime-changeable settings: name -> (current value, setter); every process
    #: follows their changes on the log (``pipeline.runtime.config_follow``)
    settings: dict[str, RuntimeSetting] = field(default_factory=dict)
    #: store errors seen by the readiness check (a counter for ``/metrics``)
    store_errors: int = 0
    #: the data directory is sized at most this often (the console's overview asks for
    #: it every 2 s per open tab; walking chDB's parts takes a hundred milliseconds)
    disk_ttl_s: float = 10.0
    _disk_seen: tuple[float, dict[str, int] | None] | None = field(default=None, repr=False)

    async def readiness(self, store: ProjectionStore) -> dict[str, dict[str, Any]]:
        """Each check: ``ok`` and what it found."""
        checks: dict[str, dict[str, Any]] = {}
        try:
            writable = await asyncio.wait_for(self.log_writable(), 5.0)
            checks["log"] = {"ok": writable, "detail": "writable" if writable else "not writable"}
        except Exception as exc:
            checks["log"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        try:
            await asyncio.wait_for(asyncio.to_thread(store.execute, "SELECT 1"), 5.0)
            checks["store"] = {"ok": True, "detail": "answers"}
        except Exception as exc:
            self.store_errors += 1
            checks["store"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        await self.refresh()
        lag = self.lag()
        checks["lag"] = {
            "ok": lag <= self.ready_max_lag,
            "detail": f"{lag} records behind (bound {self.ready_max_lag})",
            "records": lag,
        }
        return checks

    def info(self, store: ProjectionStore) -> dict[str, Any]:
        """``GET /system/info`` (blocking: asks the store its version, sizes files)."""
        try:
            row = store.execute("SELECT version()").rows
            store_version = str(row[0][0]) if row else ""
        except Exception as exc:
            self.store_errors += 1
            store_version = f"unavailable ({type(exc).__name__})"
        return {
            "version": self.version,
            "build": self.build,
            "deployment": self.deployment,
            "started_us": self.started_us,
            "uptime_s": round((now_us() - self.started_us) / 1e6, 3),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "store_version": store_version,
            "data_dir": self.data_dir,
            "disk": self._disk(),
            "paused": self.paused(),
        }

    def _disk(self) -> dict[str, int] | None:
        now = time.monotonic()
        if self._disk_seen is None or now - self._disk_seen[0] >= self.disk_ttl_s:
            self._disk_seen = (now, _disk(self.data_dir))
        return self._disk_seen[1]


def skip_while_paused(
    wait: Callable[[str], Awaitable[bool]], paused: Callable[[], bool]
) -> Callable[[str], Awaitable[bool]]:
    """Read-your-writes that answers False at once while the runtime is paused (it
    would only wait out its bound: nothing is folded), so API writes stay fast."""

    async def waiter(topic: str) -> bool:
        if paused():
            return False
        return await wait(topic)

    return waiter


def _disk(data_dir: str | None) -> dict[str, int] | None:
    """Bytes under the data directory: all of it, and the log's part."""
    if not data_dir:
        return None
    from pathlib import Path

    root = Path(data_dir)
    if not root.exists():
        return None

    # one walk for both figures; os.walk skips directories that vanish while it walks
    # (chDB's temporary parts, rolled log segments); rglob raises on them
    logdir = str(root / "log")
    total = log_total = 0
    for folder, _, files in os.walk(root):
        in_log = folder == logdir or folder.startswith(logdir + os.sep)
        for name in files:
            try:
                size = os.stat(os.path.join(folder, name)).st_size
            except OSError:  # removed meanwhile
                continue
            total += size
            log_total += size if in_log else 0
    return {"data_bytes": total, "log_bytes": log_total}
