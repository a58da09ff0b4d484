"""Alarm rules of the configuration file, defined as events at start.

:class:`ConfigRuleSeeder` is a stage (``pipeline.runtime.stage``): it appends
RULE_DEFINED for every rule of the file that is new or differs from the one in force
(rules made through the API are left alone), retrying until that is done, since a
file's rule must never be silently missing; then it returns. It waits until the
projections have applied the ``alarms`` topic first, so "in force" is current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from millrace.pipeline.alarms.rules import AlarmRule, parse_rule, rule_event
from millrace.pipeline.clock import now_us
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.runtime.stage import Stage
from millrace.pipeline.topics import ALARMS

log = logging.getLogger("millrace.alarms")


class ConfigRuleSeeder(Stage):
    """Defines the file's alarm rules (see the module doc)."""

    name = "alarm-rule-seeding"
    singleton = True
    stop_timeout_s = 0.0  # nothing to finish: a later start seeds again

    def __init__(
        self,
        rules: Sequence[AlarmRule],
        publisher: EventPublisher,
        in_force: Callable[[], Mapping[str, Any]],
        wait_applied: Callable[[str, float], Awaitable[bool]],
        *,
        on_published: Callable[[], None] | None = None,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.rules = list(rules)
        self.publisher = publisher
        self.in_force = in_force  # rule_id -> definition, read from the projections
        self.wait_applied = wait_applied
        self.on_published = on_published
        self.clock = clock
        self.defined: int | None = None  # rules appended, once done

    async def define(self) -> int:
        """One attempt; return how many rules were appended."""
        if not self.rules:
            return 0
        if not await self.wait_applied(ALARMS, 60):
            raise TimeoutError("the runtime has not applied the alarms topic yet")
        in_force = await asyncio.to_thread(self.in_force)
        events = []
        for rule in self.rules:
            known = in_force.get(rule.id)
            if known is not None and parse_rule(known) == rule:
                continue
            events.append((f"rule:{rule.id}", rule_event(rule, rule.id, self.clock(), "config")))
        await self.publisher.publish(ALARMS, events)
        if self.on_published is not None:
            self.on_published()
        return len(events)

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                self.defined = await self.define()
                return
            except Exception:  # e.g. the store busy at start: the API still works
                log.exception("alarm rules of the configuration file not defined yet")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)

    def health(self) -> dict[str, Any]:
        return {"rules": len(self.rules), "defined": self.defined}
