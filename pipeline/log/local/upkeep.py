"""The local log's upkeep as a stage: fsync on the ``interval`` policy's clock even
when appends stop, and retention once a minute."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from millrace.pipeline.log.local.config import LocalLogConfig
from millrace.pipeline.log.local.log import LocalEventLog
from millrace.pipeline.runtime.stage import Stage

log = logging.getLogger("millrace.log")


class LogUpkeep(Stage):
    """fsync (``fsync: interval``) and retention of a :class:`LocalEventLog`."""

    name = "log-upkeep"
    stop_timeout_s = 0.0  # cancelled at stop: the log's close syncs what is left

    def __init__(self, event_log: LocalEventLog, config: LocalLogConfig) -> None:
        self.log = event_log
        self.config = config
        self.failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        every_s = cfg.fsync_interval_ms / 1000 if cfg.fsync == "interval" else 1.0
        last_retention = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(every_s)
            try:
                if cfg.fsync == "interval":
                    await self.log.flush_async()
                if time.monotonic() - last_retention >= 60:
                    last_retention = time.monotonic()
                    if cfg.retention_ms is not None or cfg.retention_bytes is not None:
                        await self.log.enforce_retention_async()
            except Exception:  # upkeep must not take the engine down
                self.failures += 1
                log.exception("log upkeep failed")

    def health(self) -> dict[str, Any]:
        return {"failures": self.failures}
