"""TaskRunner: the stage that runs pending tasks and resumes running ones.

It folds the ``tasks`` topic itself (``pipeline.tasks.state.apply``, the fold the
projection uses), from the first retained record each time it starts: a restart, or a
singleton leading again, resumes from the log, never from memory. A task whose status
is pending or running and whose kind has a handler is run, one at a time, oldest
first; the runner appends ``started`` and, when the handler returns, ``completed`` or
``failed`` (see :class:`TaskContext` for the handler's side). A task of an unknown
kind stays pending (a process that registers the kind runs it).

Exactly once is the handler's business (a restore writes through the projection
sink's intent/commit); the runner guarantees that a task it left running is run
again after a restart, with what its events say was done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.errors import DecodeError
from millrace.pipeline.log.base import EventLog
from millrace.pipeline.runtime.stage import Stage
from millrace.pipeline.tasks.context import TaskContext
from millrace.pipeline.tasks.events import task_event
from millrace.pipeline.tasks.registry import KINDS, TaskKinds
from millrace.pipeline.tasks.state import (
    PENDING,
    RUNNING,
    State,
    apply,
    file_counts,
    params_of,
)
from millrace.pipeline.topics import TASKS

log = logging.getLogger("millrace.tasks")


class TaskRunner(Stage):
    """Runs the tasks of the registered kinds (a singleton of the ``process`` role)."""

    name = "tasks"
    singleton = True
    stop_timeout_s = 30.0

    def __init__(
        self,
        log_: EventLog,
        publisher: EventPublisher,
        kinds: TaskKinds = KINDS,
        *,
        codec: AvroCodec | None = None,
        poll_s: float = 0.5,
        progress_interval_s: float = 0.5,
    ) -> None:
        self.log = log_
        self.publisher = publisher
        self.kinds = kinds
        self.codec = codec or default_codec()
        self.poll_s = poll_s
        self.progress_interval_s = progress_interval_s
        self.states: dict[str, State] = {}
        self._positions: dict[int, int] = {}
        self._wake = asyncio.Event()
        self.current: str | None = None
        self.runs = 0

    def wake(self) -> None:
        """Look for new tasks now (after a task was created or retried)."""
        self._wake.set()

    def health(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for s in self.states.values():
            by_status[s["status"]] = by_status.get(s["status"], 0) + 1
        return {"current": self.current, "runs": self.runs, "tasks": by_status}

    async def catch_up(self) -> None:
        """Fold every task event appended since the last call."""
        for p in range(self.log.partitions(TASKS)):
            first, end = await self.log.offsets(TASKS, p)
            pos = max(self._positions.get(p, first), first)
            while pos < end:
                records = await self.log.read(TASKS, p, pos, 1000)
                if not records:
                    break
                for rec in records:
                    pos = rec.offset + 1
                    try:
                        value = self.codec.decode(TASKS, rec.value)
                    except DecodeError as exc:
                        log.warning("tasks/%d@%d undecodable: %s", p, rec.offset, exc)
                        continue
                    task_id = str(value.get("task_id") or "")
                    if task_id:
                        self.states[task_id] = apply(
                            self.states.get(task_id), value, rec.offset + 1
                        )
            self._positions[p] = pos

    def runnable(self) -> State | None:
        """The oldest pending or running task of a registered kind."""
        ready = [
            s
            for s in self.states.values()
            if s["status"] in (PENDING, RUNNING) and s["kind"] in self.kinds
        ]
        return min(ready, key=lambda s: (s["created_us"], s["task_id"])) if ready else None

    async def run(self, stop: asyncio.Event) -> None:
        self.states, self._positions = {}, {}  # from the log, never from memory
        while not stop.is_set():
            await self.catch_up()
            task = self.runnable()
            if task is not None:
                await self.run_task(task, stop)
                continue
            self._wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            try:
                await asyncio.wait(waiters, timeout=self.poll_s, return_when="FIRST_COMPLETED")
            finally:
                for w in waiters:
                    w.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await w

    async def run_task(self, state: State, stop: asyncio.Event) -> None:
        """One run of a task: started, the handler, completed or failed."""
        task_id, kind = state["task_id"], state["kind"]
        handler = self.kinds.get(kind)
        ctx = TaskContext(
            task_id,
            kind,
            params_of(state),
            self.publisher,
            stop,
            done={name: file_counts(state, name) for name in state["files_done"]},
            failed=dict(state["files_failed"]),
            counts=dict(state["counts"]),
            progress_interval_s=self.progress_interval_s,
        )
        self.current, self.runs = task_id, self.runs + 1
        await self._append(task_id, kind, "started")
        try:
            await handler(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if stop.is_set():
                return  # stopped mid-way: resumed after the restart
            log.warning("task %s (%s) failed", task_id, kind, exc_info=True)
            await ctx.flush()
            await self._append(task_id, kind, "failed", error=f"{type(exc).__name__}: {exc}")
            return
        finally:
            self.current = None
        if stop.is_set():
            await ctx.flush()
            return
        await ctx.flush()
        if ctx.failed:
            names = ", ".join(sorted(ctx.failed))
            await self._append(
                task_id, kind, "failed", error=f"{len(ctx.failed)} file(s) failed: {names}"
            )
        else:
            await self._append(task_id, kind, "completed")

    async def _append(self, task_id: str, kind: str, type_: str, **fields: Any) -> None:
        event = task_event(task_id, kind, type_, actor="runner", **fields)
        await self.publisher.publish(TASKS, [(task_id, event)])
