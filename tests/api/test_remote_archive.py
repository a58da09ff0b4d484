"""Issue 14, bad input: an archive store that is unreachable, seen from ``millrace api``
of the distributed deployment. A real archiver fails on its store (retrying with
backoff); the heartbeat of the process running it carries its health
(``pipeline.archive.health``), the real status fold stores it in chDB, and the API
process's ``/status`` figures (``api.remote``) show the same ``archive`` object as
``millrace run`` shows (``Archiver.health()``), the store's password masked."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from fsspec.implementations.memory import MemoryFileSystem

from millrace.api.remote import RemoteFigures
from millrace.pipeline.archive.archiver import Archiver
from millrace.pipeline.archive.health import archive_figures, archive_info
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import default_codec
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.heartbeat import RunnerHeartbeat
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.store.chdb import ChdbStore
from tests.pipeline.archive.test_archiver import CFG, T0, messages
from tests.projections.test_remote_figures import NOW, beat, fold

SECRET = "hunter2"


class Refusing(MemoryFileSystem):
    """A store whose every write is refused, naming a URL with a password in it."""

    def pipe_file(self, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError(f"sftp://ops:{SECRET}@archive.example:22 refused")


def test_a_failing_archivers_heartbeat_shows_in_the_api_status(store: ChdbStore) -> None:
    log = MemoryEventLog()
    url = f"memory:///archive-{uuid.uuid4().hex}"
    archiver = Archiver(log, ArchiveStore(url, fs=Refusing()), CFG)

    async def main() -> dict[str, Any]:
        await log.append(TELEMETRY, messages(3, T0, 1000))
        stop = asyncio.Event()
        run = asyncio.create_task(archiver.run(stop))
        flush = asyncio.create_task(archiver.flush())  # closes the window: a write
        while archiver.stats.failures < 2:
            await asyncio.sleep(0.01)
        stop.set()
        await run
        await asyncio.gather(flush, return_exceptions=True)  # cancelled on stop
        hb = RunnerHeartbeat(
            MemoryEventPublisher(),
            "w1/process",
            10.0,
            clock=lambda: NOW - 1_000_000,
            figures=lambda: {"records": 3.0} | archive_figures(archiver.health()),
            info=lambda: archive_info(archiver.health()),
        )
        # another worker, not running the archiver (its singleton leads elsewhere)
        other = beat("w2/process", NOW - 1_000_000, "running", {"records": 4.0})
        await fold(store, [hb.event("running"), other])
        figures = RemoteFigures(
            log, store, "group", [TELEMETRY], default_codec(), clock=lambda: NOW
        )
        await figures.refresh()
        return figures.status()

    status = asyncio.run(main())
    health = archiver.health()
    # the archiver masks the store's error where it records it (status and log alike)
    assert health["error"] is not None and SECRET not in health["error"]
    assert "ops:***@" in health["error"]
    assert status["archive"] == health
    assert status["archive"]["failures"] >= 2 and status["archive"]["retry_in_s"] > 0
    assert status["archive"]["store"] == url
    assert SECRET not in json.dumps(status)
    [w1, w2] = status["workers"]
    assert w1["figures"]["archive_failing"] == 1.0
    assert w1["figures"]["archive_retries"] == float(health["failures"])
    assert "archive" not in w2
    assert status["runtime"]["records"] == 7


def test_a_healthy_archiver_and_none_at_all(store: ChdbStore) -> None:
    health = {"windows": 2, "failures": 0, "error": None, "store": "s3://b/x", "retry_in_s": 0.0}
    at = [NOW - 1_000_000]
    hb = RunnerHeartbeat(
        MemoryEventPublisher(),
        "w1/process",
        10.0,
        clock=lambda: at[0],
        figures=lambda: archive_figures(health),
        info=lambda: archive_info(health),
    )
    log = MemoryEventLog()

    async def main(events: list[dict[str, Any]]) -> dict[str, Any]:
        await fold(store, events)
        figures = RemoteFigures(log, store, "group", [], default_codec(), clock=lambda: NOW)
        await figures.refresh()
        return figures.status()

    status = asyncio.run(main([hb.event("running")]))
    assert status["archive"]["error"] is None
    assert status["archive"]["windows"] == 2 and status["archive"]["store"] == "s3://b/x"
    assert status["workers"][0]["figures"]["archive_failing"] == 0.0
    # the worker stops: no archiver heard from, no archive object (as without one)
    running = hb.event("running")
    at[0] = NOW - 500_000  # one fold of both: the stopped one is the later version
    status = asyncio.run(main([running, hb.event("stopped")]))
    assert "archive" not in status
