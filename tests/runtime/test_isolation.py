"""The runtime and the local log run on threads of their own: with the loop's default
pool (where API handlers and analyst SQL used to run) completely taken, appends, reads
and batches still go through."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.runtime.executors import OwnThreads, run_in
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter

T0 = 1_760_000_000_000_000


@pytest.fixture
async def blocked_default_pool() -> AsyncIterator[threading.Event]:
    """The running loop's default pool, one thread, held until the event is set."""
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(1, thread_name_prefix="default")
    loop.set_default_executor(pool)
    release = threading.Event()
    held = asyncio.ensure_future(asyncio.to_thread(release.wait, 30))
    await asyncio.sleep(0.05)
    yield release
    release.set()
    await held


async def test_log_and_runtime_do_not_need_the_default_pool(
    tmp_path: Path, store: ChdbStore, blocked_default_pool: threading.Event
) -> None:
    log = LocalEventLog(tmp_path / "log")
    try:
        publisher = LogPublisher(log)
        batch = {
            "identity": "a",
            "source": "t",
            "received_us": T0,
            "samples": [{"ts_us": T0, "values": {"x": 1.5}, "quality": 0}],
        }
        await asyncio.wait_for(publisher.publish("telemetry", [("a", batch)]), 10)
        runtime = EmbeddedRuntime(log, ProjectionWriter(store), processors())
        done = await asyncio.wait_for(runtime.run_until_idle(), 30)
        assert done == 1
        assert store.execute("SELECT identity, value FROM millrace.readings").rows == [["a", 1.5]]
        runtime.close()
        # the default pool was held all along
        assert not blocked_default_pool.is_set()
    finally:
        await log.close()


async def test_own_threads_run_calls_with_context_and_restart_after_shutdown() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    threads = OwnThreads("millrace-test", 2)
    got = await threads.run(lambda: (var.get(), threading.current_thread().name))
    assert got[0] == "caller" and got[1].startswith("millrace-test")
    threads.shutdown()
    # used again after shutdown: a fresh pool
    assert await threads.run(lambda: 7) == 7
    threads.shutdown()
    assert await run_in(None, lambda: var.get()) == "caller"


async def test_own_threads_bound_their_concurrency() -> None:
    threads = OwnThreads("millrace-test", 2)
    running = 0
    most = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.05)
        with lock:
            running -= 1

    await asyncio.gather(*(threads.run(work) for _ in range(6)))
    threads.shutdown()
    assert most == 2
