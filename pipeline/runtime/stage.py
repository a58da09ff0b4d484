"""The Stage port: every long-running part of a deployment, run the same way.

A stage is started, runs until a stop event is set, and reports its health:

``start()``
    Awaited in assembly order before the next stage starts; what later stages rely on
    (connectors started, a consumer group joined) is done here. Raising aborts the
    start: the stages already started are stopped again, in reverse order.
``run(stop)``
    Runs as a task until ``stop`` is set, then returns after releasing what it holds
    (a last heartbeat, a final checkpoint, a flushed spool). It may return earlier
    when its work is done (a one-off like rule seeding). An exception ends only this
    stage: it is logged by :func:`run_stages`, the others go on.
``health()``
    A small JSON-able dict for status pages; never raises, never does I/O.

``stop_timeout_s`` bounds how long :func:`run_stages` waits for ``run`` to return
after its stop is set before cancelling it (0: cancel at once, for stages that hold
nothing worth finishing). ``singleton`` marks a stage that must run exactly once
across a distributed deployment (the alarm runner, the identity watch, rule seeding);
the assembly hands such stages to a leadership wrapper.

:func:`run_stages` starts the stages in order and, when the deployment's stop is
set, stops them one at a time in reverse order, each through a stop event of its
own: the API stops taking writes before the connectors stop, and those before the
processor runtime, which stops last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger("millrace.stage")


class Stage(ABC):
    """Port: one long-running part of a deployment (see the module doc)."""

    name: str = "stage"
    singleton: bool = False
    stop_timeout_s: float = 10.0

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Get ready; awaited before the next stage starts."""

    @abstractmethod
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (or the work is done)."""

    def health(self) -> dict[str, Any]:
        """What a status page shows about this stage."""
        return {}


RunFn = Callable[[asyncio.Event], Awaitable[None]]


class LoopStage(Stage):
    """Adapter: anything with an ``async run(stop)`` loop (the processor runtime, the
    alarm runner, the identity watch, the heartbeat, the live-stream tail)."""

    def __init__(
        self,
        name: str,
        run: RunFn,
        *,
        singleton: bool = False,
        stop_timeout_s: float = 10.0,
        health: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self.singleton = singleton
        self.stop_timeout_s = stop_timeout_s
        self._health = health

    async def run(self, stop: asyncio.Event) -> None:
        await self._run(stop)

    def health(self) -> dict[str, Any]:
        if self._health is None:
            return {}
        try:
            return self._health()
        except Exception as exc:  # a status page must not fail on one stage
            return {"error": f"{type(exc).__name__}: {exc}"}


class ServiceStage(Stage):
    """Adapter: anything started and stopped (connectors, the connector manager, a
    faust app): ``start`` in :meth:`start`, ``stop`` once the stop event is set."""

    def __init__(
        self,
        name: str,
        start: Callable[[], Awaitable[Any]],
        stop: Callable[[], Awaitable[Any]],
        *,
        singleton: bool = False,
        stop_timeout_s: float = 30.0,
        health: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self._start = start
        self._stop = stop
        self.singleton = singleton
        self.stop_timeout_s = stop_timeout_s
        self._health = health
        self.started = False

    async def start(self) -> None:
        await self._start()
        self.started = True

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await stop.wait()
        finally:
            if self.started:
                self.started = False
                await self._stop()

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"started": self.started}
        if self._health is not None:
            with contextlib.suppress(Exception):
                out.update(self._health())
        return out


async def _end(stage: Stage, task: asyncio.Task[None], own_stop: asyncio.Event) -> None:
    own_stop.set()
    if stage.stop_timeout_s <= 0:
        task.cancel()
    try:
        await asyncio.wait_for(asyncio.shield(task), stage.stop_timeout_s or None)
    except TimeoutError:
        log.warning(
            "stage %s did not stop within %.0fs: cancelled", stage.name, stage.stop_timeout_s
        )
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise
    except Exception:  # logged when the task ended (_log_failure)
        pass


async def run_stages(stages: Sequence[Stage], stop: asyncio.Event) -> None:
    """Start ``stages`` in order, run them until ``stop``, stop them in reverse order
    (see the module doc). A failed start stops what was started and re-raises."""
    running: list[tuple[Stage, asyncio.Task[None], asyncio.Event]] = []
    try:
        for stage in stages:
            await stage.start()
            own_stop = asyncio.Event()
            task = asyncio.create_task(stage.run(own_stop), name=stage.name)
            task.add_done_callback(_log_failure(stage))
            running.append((stage, task, own_stop))
        await stop.wait()
    finally:
        for stage, task, own_stop in reversed(running):
            began = time.monotonic()
            await _end(stage, task, own_stop)
            log.debug("stage %s stopped in %.3fs", stage.name, time.monotonic() - began)


def _log_failure(stage: Stage) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("stage %s failed", stage.name, exc_info=exc)

    return done
