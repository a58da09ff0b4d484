"""The embedded deployment: every role in one process, on the local log, chDB and the
asyncio runtime (``pipeline.cli.assembly`` builds its stages).

This is the composition root (with ``main``): the only place that imports every
package.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from millrace.api.context import AppContext
from millrace.connectors.commissioning import Commissioning
from millrace.pipeline.cli.assembly import ROLES, Assembly, local_adapters
from millrace.pipeline.cli.config import MillraceConfig
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.runtime.stage import run_stages
from millrace.projections import shadow
from millrace.projections.migrations import migrate
from millrace.projections.store.chdb import can_renice_threads

log = logging.getLogger("millrace")


class Engine:
    """One process: the local log, chDB projections, the runtime, connectors, API."""

    def __init__(self, config: MillraceConfig, commissioning: Commissioning | None = None) -> None:
        self.config = config
        adapters = local_adapters(config)
        assert isinstance(adapters.log, LocalEventLog)
        self.log: LocalEventLog = adapters.log
        self.assembly = Assembly(config, adapters, commissioning)
        self.stages = self.assembly.build(ROLES)
        self.keys = self.assembly.key_store()

    def open(self) -> None:
        Path(self.config.data_dir).mkdir(parents=True, exist_ok=True)
        self.log.open()
        migrate(self.assembly.store("pipeline"))
        # an exchange of shadow tables a crash interrupted is finished before any fold
        shadow.recover(self.assembly.store("pipeline"))
        if not can_renice_threads() and self.config.api.sql_sessions > 1:
            log.warning(
                "no CAP_SYS_NICE: analyst SQL runs at the pipeline's OS priority; on a "
                "small machine set api.sql_sessions: 1 and api.sql_max_threads: 1, or "
                "grant the capability (docker run --cap-add SYS_NICE)"
            )

    def ensure_admin_key(self) -> str | None:
        """Create an admin key on first start when none exists; return it (once)."""
        if len(self.keys):
            return None
        _, plaintext = self.keys.create("initial admin", "admin")
        return plaintext

    def lag(self) -> int:
        """Records appended to the log that the projections do not hold yet."""
        return self.assembly.lag()

    def status(self) -> dict[str, Any]:
        return self.assembly.status()

    def app_context(self) -> AppContext:
        return self.assembly.app_context()

    async def wait_applied(self, topic: str, timeout_s: float = 5.0) -> bool:
        """Read-your-writes: see ``pipeline.progress``."""
        return await self.assembly.wait_applied(topic, timeout_s)

    async def serve(self, stop: asyncio.Event) -> None:
        """Run every stage until ``stop``; they stop in reverse order."""
        # the loop's default pool (asyncio.to_thread) is left to the API's reads and the
        # engine's small stages: the runtime, the log and analyst SQL have their own
        threads = self.config.api.read_sessions + 4
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(threads, thread_name_prefix="millrace-api")
        )
        await run_stages(self.stages, stop)

    async def close(self) -> None:
        await self.log.close()
        self.assembly.close()


def announce_key(key: str) -> None:
    """Print the first admin key once, to the terminal, never to the log."""
    sys.stdout.write(
        "\nmillrace created an admin API key (shown once, stored hashed):\n\n"
        f"    {key}\n\n"
        "Use it as 'Authorization: Bearer <key>'. Set MILLRACE_API_KEY to choose your own.\n\n"
    )
    sys.stdout.flush()
