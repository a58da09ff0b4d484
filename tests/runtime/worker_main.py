"""A faust worker process for the two-worker tests: the real runtime and processors,
writing to the test session's store through :class:`tests.store_server.RemoteStore`.

    python -m tests.runtime.worker_main BOOTSTRAP PREFIX APP_ID STORE_URL DATADIR
"""

from __future__ import annotations

import asyncio
import logging
import sys

from pipeline.processors.deadletter import DeadLetterProcessor
from pipeline.processors.telemetry import TelemetryProcessor
from pipeline.runtime.faust_runtime import FaustRuntimeConfig, build_app
from projections.writer import ProjectionWriter
from tests.store_server import RemoteStore


async def main(bootstrap: str, prefix: str, app_id: str, url: str, datadir: str) -> None:
    config = FaustRuntimeConfig(
        bootstrap=bootstrap,
        app_id=app_id,
        topic_prefix=prefix,
        max_records=40,
        batch_seconds=0.1,
        datadir=datadir,
        session_timeout_s=6.0,
        heartbeat_interval_s=0.5,
    )
    writer = ProjectionWriter(RemoteStore(url))
    app = build_app(config, lambda: writer, [TelemetryProcessor(), DeadLetterProcessor()])
    await app.start()
    print("started", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await app.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(*sys.argv[1:6]))
