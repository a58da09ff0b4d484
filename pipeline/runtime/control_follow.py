"""Control through the log: a stage that follows the audit topic's control events.

An operator's control action through the API (pause or resume the pipeline; start,
stop or restart a connector) is audited: the API appends an AuditEvent with status
``ok`` to the ``audit`` topic. That event *is* the control event, so the processes
that must act on it need no channel of their own: each runs an :class:`AuditFollower`
that reads every partition of the audit topic (no consumer group: each follower reads
all of them), keeps the events ``select`` picks and hands them, in time order
(partitions interleave), to ``on_event``. The pause follower of the process role
(``pipeline.runtime.control``) and the connector control of the connect role
(``connectors.control``) are two of them.

Where a follower starts: at the log's end (what comes next), or, with
``resume_last=True``, with the last selected event already on the log handed first:
the state in force when the process started (a worker started while the pipeline is
paused starts paused). That event is found by reading each partition backwards from
its end, a chunk at a time, up to its first selected event: a control event's key is
its target, so the events of one target share a partition and the others are read to
their start only while that target has none. With ``last_key`` (e.g. the target), it
hands the last selected event of each key instead, reading back until every key of
``last_keys`` has one (the runtime settings: ``pipeline.runtime.config_follow``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.errors import DecodeError
from millrace.pipeline.log.base import EventLog, Record
from millrace.pipeline.topics import AUDIT

log = logging.getLogger("millrace.runtime.control")

Event = dict[str, Any]
OnEvent = Callable[[Event], Awaitable[None] | None]


class AuditFollower:
    """Follows the audit topic; hands each event ``select`` picks to ``on_event``."""

    def __init__(
        self,
        event_log: EventLog,
        select: Callable[[Event], bool],
        on_event: OnEvent,
        codec: AvroCodec | None = None,
        *,
        poll_s: float = 0.5,
        resume_last: bool = False,
        chunk: int = 1000,
        last_key: Callable[[Event], str] | None = None,
        last_keys: Collection[str] = (),
    ) -> None:
        self.log = event_log
        self.select = select
        self.on_event = on_event
        self.codec = codec or default_codec()
        self.poll_s = poll_s
        self.resume_last = resume_last
        self.chunk = chunk
        self.last_key = last_key
        self.last_keys = frozenset(last_keys)
        self.positions: dict[int, int] | None = None
        self.handled = 0
        #: selected events read but not handed yet: a partition with more to read may
        #: still hold an earlier one
        self.pending: list[Event] = []

    def _selected(self, records: list[Record]) -> list[Event]:
        out = []
        for rec in records:
            try:
                event = self.codec.decode(AUDIT, rec.value)
            except DecodeError:
                continue  # the audits projection deadletters it
            if self.select(event):
                out.append(event)
        return out

    async def _last_before(self, partition: int, end: int, found: dict[str, Event]) -> None:
        """Adds the last selected event of ``partition`` below ``end`` to ``found``
        (read backwards; with ``last_key``, the last of each key not found yet)."""
        first = (await self.log.offsets(AUDIT, partition))[0]
        hi = end
        while hi > first:
            lo = max(first, hi - self.chunk)
            records: list[Record] = []
            pos = lo
            while pos < hi:
                got = await self.log.read(AUDIT, partition, pos, hi - pos)
                got = [r for r in got if r.offset < hi]
                if not got:
                    break
                records += got
                pos = got[-1].offset + 1
            selected = self._selected(records)
            if self.last_key is None:
                if selected:
                    found[str(partition)] = selected[-1]
                    return
            else:
                for event in reversed(selected):  # newest first; older chunks come later
                    key = self.last_key(event)
                    if key not in found or _time(event) > _time(found[key]):
                        found[key] = event
                if self.last_keys and self.last_keys <= found.keys():
                    return
            hi = lo

    async def start(self) -> None:
        """Positions at the log's end; with ``resume_last``, hands the last selected
        event before them first (with ``last_key``: of each key, in time order)."""
        ends = {p: (await self.log.offsets(AUDIT, p))[1] for p in range(self.log.partitions(AUDIT))}
        if self.resume_last:
            found: dict[str, Event] = {}
            for p, end in ends.items():
                if self.last_keys and self.last_keys <= found.keys():
                    break
                await self._last_before(p, end, found)
            if self.last_key is None:
                if found:
                    await self._hand(max(found.values(), key=_time))
            else:
                for event in sorted(found.values(), key=_time):
                    await self._hand(event)
        self.positions = ends

    async def _hand(self, event: Event) -> None:
        try:
            result = self.on_event(event)
            if inspect.isawaitable(result):
                await result
        except Exception:  # one failed action must not stop the ones after it
            log.exception("control event %s not applied", event.get("audit_id"))
        self.handled += 1

    async def poll(self) -> int:
        """Read what was appended since the last poll; return the records read."""
        if self.positions is None:
            await self.start()
        assert self.positions is not None
        total = 0
        # partitions interleave: an event is handed once every partition that may hold
        # more has been read past its time (the frontier), so the order is global
        frontier: int | None = None
        for p, pos in self.positions.items():
            records = await self.log.read(AUDIT, p, pos, self.chunk)
            self.pending += self._selected(records)
            if records:
                self.positions[p] = records[-1].offset + 1
                total += len(records)
            if len(records) >= self.chunk:  # more may follow in this partition
                last = self._time_of(records[-1])
                frontier = last if frontier is None else min(frontier, last)
        ready = sorted(
            (e for e in self.pending if frontier is None or _time(e) <= frontier), key=_time
        )
        self.pending = [e for e in self.pending if frontier is not None and _time(e) > frontier]
        for event in ready:
            await self._hand(event)
        return total

    def _time_of(self, record: Record) -> int:
        try:
            return _time(self.codec.decode(AUDIT, record.value))
        except DecodeError:
            return -1  # hold what was read until the partition is read further

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                n = await self.poll()
            except Exception as exc:
                log.warning("audit follower: %s", exc)
                n = 0
            if n == 0:
                try:
                    await asyncio.wait_for(stop.wait(), self.poll_s)
                except TimeoutError:
                    pass


def _time(event: Event) -> int:
    return int(event.get("ts_us") or 0)
