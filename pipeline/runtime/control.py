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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

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
    ) -> None:
        self.log = event_log
        self.on_change = on_change
        self.codec = codec or default_codec()
        self.poll_s = poll_s
        self.paused = False
        self.positions: dict[int, int] | None = None

    async def start_at_end(self) -> None:
        self.positions = {
            p: (await self.log.offsets(AUDIT, p))[1] for p in range(self.log.partitions(AUDIT))
        }

    async def poll(self) -> int:
        """Read what was appended since the last poll; return the records read."""
        if self.positions is None:
            await self.start_at_end()
        assert self.positions is not None
        found: list[tuple[int, bool]] = []
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
                    found.append((int(event.get("ts_us") or 0), action))
            if records:
                self.positions[p] = records[-1].offset + 1
                total += len(records)
        for _, paused in sorted(found, key=lambda f: f[0]):  # partitions interleave
            if paused != self.paused:
                log.info("runtime %s through the log", "paused" if paused else "resumed")
            self.paused = paused
            self.on_change(paused)
        return total

    async def run(self, stop: asyncio.Event) -> None:
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
