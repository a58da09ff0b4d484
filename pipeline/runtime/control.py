"""Pause and resume of the distributed runtime, through the log.

``POST /api/v1/pipeline/pause`` (and ``resume``) is audited: the API appends an
AuditEvent (action ``pause``/``resume``, target_type ``pipeline``, status ``ok``) to
the ``audit`` topic. That event is the control event: every ``millrace process``
worker runs a :class:`PauseFollower` reading the audit topic's partitions (no consumer
group: each worker reads all of them) and, on such an event, holds or releases its
takes (``FaustTakeHandler.gate``): the worker stops folding, Kafka keeps accepting.

A follower starts from the last pause/resume already on the log (read backwards from
the end, ``pipeline.runtime.control_follow``) before the runtime after it starts: a
worker started while the pipeline is paused starts paused, and so does a restarted
``millrace run``.

Acknowledgement: with ``on_held``, the follower hands every pause event to it (in a
task of its own, so the follower goes on reading): the faust worker's answer is a
``held`` AuditEvent once its take in flight has ended (``pipeline.runtime.hold``: how
a replay knows every worker stands still before it swaps tables).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.log.base import EventLog
from millrace.pipeline.runtime.control_follow import AuditFollower
from millrace.pipeline.runtime.stage import Stage

log = logging.getLogger("millrace.runtime.control")

ACTIONS = {"pause": True, "resume": False}


def control_of(event: dict[str, object]) -> bool | None:
    """True (pause), False (resume) or None (not a control event)."""
    if event.get("target_type") != "pipeline" or event.get("status") != "ok":
        return None
    return ACTIONS.get(str(event.get("action")))


class PauseFollower(Stage):
    """The ``pause-follower`` stage: follows the audit topic (an
    :class:`~millrace.pipeline.runtime.control_follow.AuditFollower`) and calls
    ``on_change(paused)`` on each control event, the last one already on the log first
    (in :meth:`start`, before the stages after it start folding)."""

    name = "pause-follower"

    def __init__(
        self,
        event_log: EventLog,
        on_change: Callable[[bool], None],
        codec: AvroCodec | None = None,
        poll_s: float = 0.5,
        on_held: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.on_change = on_change
        self.on_held = on_held
        self.paused = False
        self.follower = AuditFollower(
            event_log,
            lambda e: control_of(e) is not None,
            self._on_event,
            codec or default_codec(),
            poll_s=poll_s,
            resume_last=True,
        )
        self._answers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """From the last pause/resume on the log (a worker started while the pipeline
        is paused starts paused)."""
        await self.follower.start()

    async def start_at_end(self) -> None:
        """From the log's end, ignoring the state in force (tests)."""
        self.follower.resume_last = False
        await self.follower.start()

    async def poll(self) -> int:
        """Read what was appended since the last poll; return the records read."""
        return await self.follower.poll()

    def _on_event(self, event: dict[str, Any]) -> None:
        paused = bool(control_of(event))
        if paused != self.paused:
            log.info("runtime %s through the log", "paused" if paused else "resumed")
        self.paused = paused
        self.on_change(paused)
        if paused and self.on_held is not None:
            answer = asyncio.ensure_future(self._answer(event))
            self._answers.add(answer)
            answer.add_done_callback(self._answers.discard)

    async def _answer(self, event: dict[str, Any]) -> None:
        assert self.on_held is not None
        try:
            await self.on_held(event)
        except Exception as exc:  # the holder pauses again and gets the next answer
            log.warning("pause not acknowledged: %s", exc)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.follower.run(stop)
        finally:
            for answer in list(self._answers):
                answer.cancel()

    def health(self) -> dict[str, Any]:
        return {"paused": self.paused}
