"""Thread pools of their own, so that no part of the engine waits for another's threads.

In the one-process deployment the API, the runtime and the log share one asyncio loop.
``asyncio.to_thread`` sends every blocking call to the loop's one default pool: seven
slow analyst queries held all its threads, and ingest appends and the runtime's inserts
queued behind them. Each part therefore runs its blocking work on threads it owns:

    the log              appends (fsync included), reads and commits    (LocalEventLog)
    the runtime          decode, process, insert                        (EmbeddedRuntime)
    analyst SQL          POST /api/v1/sql                                (AppContext.sql_executor)
    the API's reads      the loop's default pool, left to them           (Engine.serve)

A pool caps how many threads a part may use; how much CPU a chDB query takes is capped
by the stores' settings (``projections.store.chdb``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def run_in(
    executor: ThreadPoolExecutor | None, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``asyncio.to_thread`` on ``executor`` (None: the loop's default pool); context
    variables are carried into the thread as ``to_thread`` does."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(executor, call)


class OwnThreads:
    """A component's own thread pool: started at first use, ``shutdown`` ends it (a
    later use starts a fresh one, so a component can be used again after closing)."""

    def __init__(self, name: str, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.name = name
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=self.name)
            return self._pool

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on these threads and wait for it."""
        return await run_in(self.executor, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """End the threads; with ``wait``, after the calls already running finish (and
        the queued ones, unless ``cancel_futures``)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)
