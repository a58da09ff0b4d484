"""Pause and resume of the distributed runtime, through the log.

``POST /api/v1/pipeline/pause`` (and ``resume``) is audited: the API appends an
AuditEvent (action ``pause``/``resume``, target_type ``pipeline``, status ``ok``) to
the ``audit`` topic. That event is the control event: every ``millrace process``
worker runs a :class:`PauseFollower` reading the audit topic's partitions (no consumer
group: each worker reads all of them) and, on such an event, holds or releases its
takes (``FaustTakeHandler.gate``): the worker stops folding, Kafka keeps accepting.

A follower starts at the log's end: a worker started while the cluster is paused
runs until the next pause (the last pause/resume is in the audits projection, which
``/api/v1/system/info`` reads to show the cluster's state).

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
from millrace.pipeline.topics import AUDIT

log = logging.getLogger("millrace.runtime.control")

ACTIONS = {"pause": True, "resume": False}


def control_of(event: dict[str, object]) -> bool | None:
    """True (pause), False (resume) or None (not a control event)."""
    if event.get("target_type") != "pipeline" or event.get("status") != "ok":
        return None
    return ACTIONS.get(str(event.get("action")))


class PauseFollower:
    """Follows the audit topic; calls ``on_change(paused)`` on each control event."""

    def __init__(
        self,
        event_log: EventLog,
        on_change: Callable[[bool], None],
        codec: AvroCodec | None = None,
        poll_s: float = 0.5,
        on_held: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.log = event_log
        self.on_change = on_change
        self.codec = codec or default_codec()
        self.poll_s = poll_s
        self.on_held = on_held
        self.paused = False
        self.positions: dict[int, int] | None = None
        self._answers: set[asyncio.Task[None]] = set()

    async def start_at_end(self) -> None:
        self.positions = {
            p: (await self.log.offsets(AUDIT, p))[1] for p in range(self.log.partitions(AUDIT))
        }

    async def poll(self) -> int:
        """Read what was appended since the last poll; return the records read."""
        if self.positions is None:
            await self.start_at_end()
        assert self.positions is not None
        found: list[tuple[int, bool, dict[str, Any]]] = []
        total = 0
        for p, pos in self.positions.items():
            records = await self.log.read(AUDIT, p, pos, 1000)
            for rec in records:
                try:
                    event = self.codec.decode(AUDIT, rec.value)
                except Exception:
                    continue
                action = control_of(event)
                if action is not None:
                    found.append((int(event.get("ts_us") or 0), action, event))
            if records:
                self.positions[p] = records[-1].offset + 1
                total += len(records)
        for _, paused, event in sorted(found, key=lambda f: f[0]):  # partitions interleave
            if paused != self.paused:
                log.info("runtime %s through the log", "paused" if paused else "resumed")
            self.paused = paused
            self.on_change(paused)
            if paused and self.on_held is not None:
                answer = asyncio.ensure_future(self._answer(event))
                self._answers.add(answer)
                answer.add_done_callback(self._answers.discard)
        return total

    async def _answer(self, event: dict[str, Any]) -> None:
        assert self.on_held is not None
        try:
            await self.on_held(event)
        except Exception as exc:  # the holder pauses again and gets the next answer
            log.warning("pause not acknowledged: %s", exc)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    n = await self.poll()
                except Exception as exc:
                    log.warning("pause follower: %s", exc)
                    n = 0
                if n == 0:
                    try:
                        await asyncio.wait_for(stop.wait(), self.poll_s)
                    except TimeoutError:
                        pass
        finally:
            for answer in list(self._answers):
                answer.cancel()
