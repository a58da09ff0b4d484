"""The connect role's services stage: follow the ``services`` topic and hand every
change of a service to the connectors (``on_change``), at runtime.

It folds the whole topic from its start with ``pipeline.services.state.apply`` (a
handful of events per service), so a restarted process runs what was installed and
enabled, as it was left. At start, once caught up, the service of the process's own
commissioning file (``millrace run --config FILE``) is installed, or updated when its
text changed; an unchanged file appends nothing, so a service disabled through the API
stays disabled across restarts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.errors import DecodeError
from millrace.pipeline.events import service_event
from millrace.pipeline.services.state import ServiceRejectedError, State, apply, live
from millrace.pipeline.topics import SERVICES

log = logging.getLogger("millrace.services")

OnChange = Callable[[str, State | None], Awaitable[Any]]


class ServiceFollower:
    """Folds the services topic and reports each service whose state changed.

    ``initial``: the process's own file as (service id, text, description), installed
    or updated at start as described above."""

    def __init__(
        self,
        event_log: Any,
        codec: AvroCodec,
        publisher: EventPublisher,
        on_change: OnChange,
        *,
        initial: tuple[str, str, str] | None = None,
        actor: str = "",
        idle_s: float = 0.2,
    ) -> None:
        self.log, self.codec, self.publisher = event_log, codec, publisher
        self.on_change = on_change
        self.initial, self.actor, self.idle_s = initial, actor, idle_s
        self.states: dict[str, State] = {}
        self._positions: dict[int, int] = {}
        self.applied = 0

    def health(self) -> dict[str, Any]:
        return {
            "services": sum(1 for s in self.states.values() if live(s)),
            "applied": self.applied,
        }

    async def catch_up(self) -> set[str]:
        """Fold what was appended since the last call; the services it changed."""
        changed: set[str] = set()
        for p in range(self.log.partitions(SERVICES)):
            first, end = await self.log.offsets(SERVICES, p)
            pos = max(self._positions.get(p, first), first)
            while pos < end:
                records = await self.log.read(SERVICES, p, pos, 1000)
                if not records:
                    break
                for rec in records:
                    pos = rec.offset + 1
                    try:
                        value = self.codec.decode(SERVICES, rec.value)
                        sid = str(value["service_id"])
                        self.states[sid] = apply(self.states.get(sid), value, rec.offset + 1)
                    except (DecodeError, ServiceRejectedError, KeyError) as exc:
                        # the services projection deadletters it; here it changes nothing
                        log.warning("services/%d@%d not applied: %s", p, rec.offset, exc)
                        continue
                    changed.add(sid)
            self._positions[p] = pos
        return changed

    async def install_initial(self) -> bool:
        """Append the own file's installed/updated event if needed; True if appended."""
        if self.initial is None:
            return False
        sid, text, description = self.initial
        state = self.states.get(sid)
        if live(state) and state is not None and state["text"] == text:
            return False
        kind = "updated" if live(state) else "installed"
        event = service_event(sid, kind, text=text, description=description, actor=self.actor)
        await self.publisher.publish(SERVICES, [(sid, event)])
        return True

    async def _apply(self, sids: set[str]) -> None:
        for sid in sorted(sids):
            try:
                await self.on_change(sid, self.states.get(sid))
            except Exception:  # one bad service must not stop the others
                log.exception("service %s could not be applied", sid)
            self.applied += 1

    async def run(self, stop: asyncio.Event) -> None:
        await self.catch_up()
        if await self.install_initial():
            await self.catch_up()
        await self._apply({s for s, st in self.states.items() if live(st)})
        while not stop.is_set():
            changed = await self.catch_up()
            if changed:
                await self._apply(changed)
                continue
            try:
                await asyncio.wait_for(stop.wait(), self.idle_s)
            except TimeoutError:
                pass
