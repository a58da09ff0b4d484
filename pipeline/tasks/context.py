"""TaskContext: what a task handler sees of its task and how it reports."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from millrace.pipeline.clock import now_us
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.tasks.events import task_event
from millrace.pipeline.topics import TASKS


class TaskContext:
    """One run of a task, handed to its kind's handler.

    ``done`` (file -> counts) and ``failed`` (file -> reason) say what earlier runs of
    the task did (a restart resumes; a retry has forgotten the failed files);
    ``counts`` are the task's totals when this run started. A handler skips the files
    in ``done``, reports each file it finishes with :meth:`file_completed` or
    :meth:`file_failed`, and the work in flight with :meth:`progress` (absolute counts
    of the current file, not increments; throttled to one append per
    ``progress_interval_s``). It returns when ``stop`` is set (the runner then leaves
    the task running, to resume after the restart); raising fails the task with the
    exception as its reason; returning with files failed fails it naming them.
    """

    def __init__(
        self,
        task_id: str,
        kind: str,
        params: Mapping[str, Any],
        publisher: EventPublisher,
        stop: asyncio.Event,
        *,
        done: Mapping[str, Mapping[str, int]] | None = None,
        failed: Mapping[str, str] | None = None,
        counts: Mapping[str, int] | None = None,
        progress_interval_s: float = 0.5,
    ) -> None:
        self.task_id = task_id
        self.kind = kind
        self.params: dict[str, Any] = dict(params)
        self.stop = stop
        self.done: dict[str, dict[str, int]] = {k: dict(v) for k, v in (done or {}).items()}
        self.failed: dict[str, str] = dict(failed or {})
        self.counts: dict[str, int] = dict(counts or {})
        self._publisher = publisher
        self._interval_us = int(progress_interval_s * 1e6)
        self._last_progress_us = 0
        self._pending: tuple[dict[str, int], str | None] | None = None

    async def _append(self, type_: str, **fields: Any) -> None:
        event = task_event(self.task_id, self.kind, type_, actor="runner", **fields)
        await self._publisher.publish(TASKS, [(self.task_id, event)])

    async def progress(self, file: str | None = None, **counts: int) -> None:
        """The counts of the work in flight (absolute); appended at most once per
        interval, the last one of an interval is kept for :meth:`flush`."""
        self._pending = ({k: int(v) for k, v in counts.items()}, file)
        now = now_us()
        if now - self._last_progress_us >= self._interval_us:
            await self.flush()

    async def flush(self) -> None:
        """Append the progress held back by the throttle, if any."""
        if self._pending is None:
            return
        counts, file = self._pending
        self._pending = None
        self._last_progress_us = now_us()
        await self._append("progress", counts=counts, file=file)

    async def file_completed(self, name: str, counts: Mapping[str, int]) -> None:
        """``name`` is done, with these counts (they join the task's totals)."""
        self._pending = None
        self.done[name] = {k: int(v) for k, v in counts.items()}
        self.failed.pop(name, None)
        await self._append("file_completed", file=name, counts=self.done[name])

    async def file_failed(self, name: str, reason: str) -> None:
        """``name`` could not be done; the task goes on with the others and ends failed."""
        self._pending = None
        self.failed[name] = reason
        self.done.pop(name, None)
        await self._append("file_failed", file=name, error=reason)
