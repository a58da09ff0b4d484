"""The identity watch stage: reads the projections, asks the pure rules of
:mod:`millrace.pipeline.identities.watch` what that means at this time, and appends the
events they decide on; also keeps the readings retention in step with the definitions.

The stage does the I/O through a :class:`WatchQueries` port (one query per rule, and the
retention DDL), which ``projections.watch_queries`` implements over a projection store;
``pipeline`` never imports ``projections``. Store calls are blocking and run in a thread.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from millrace.pipeline.clock import now_us
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.identities import watch as rules
from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.pipeline.identities.watch import (
    ConnectivityRow,
    ExpiryRow,
    Finding,
    PendingRow,
    StaleRow,
    WatchMemory,
    WatchSettings,
)
from millrace.pipeline.topics import IDENTITY

log = logging.getLogger("millrace.watch")

T = TypeVar("T")


class WatchQueries(abc.ABC):
    """What the watch reads and the one thing it changes besides the log (present
    identities only; every method may block and may raise)."""

    @abc.abstractmethod
    def definitions(self) -> dict[str, ResourceDefinition]:
        """Every present resource definition this version can read."""

    @abc.abstractmethod
    def expiring(self, now: int) -> list[ExpiryRow]:
        """Whitelisted identities past their window, provisioned ones past their
        credential's expiry."""

    @abc.abstractmethod
    def pending(self) -> list[PendingRow]:
        """Set values with neither ack nor timeout, with the latest reading."""

    @abc.abstractmethod
    def stale(self, now: int, timeouts_us: Mapping[str, int]) -> list[StaleRow]:
        """Latest readings older than their resource's timeout, not yet reported."""

    @abc.abstractmethod
    def connectivity(self, now: int, default_timeout_s: int) -> list[ConnectivityRow]:
        """Connected identities silent past their timeout, and unconnected (unlocked)
        ones sending telemetry."""

    @abc.abstractmethod
    def has_retention(self) -> bool:
        """Whether the readings table has a TTL."""

    @abc.abstractmethod
    def set_retention(self, rules: frozenset[tuple[str, int]]) -> None:
        """Keep each resource's readings ``months`` months; an empty set removes the TTL."""


class IdentityWatchStage:
    """Evaluates the time rules every ``interval_s`` and publishes what they find."""

    def __init__(
        self,
        queries: WatchQueries,
        publisher: EventPublisher,
        settings: WatchSettings | None = None,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.queries = queries
        self.publisher = publisher
        self.settings = settings or WatchSettings()
        self.clock = clock
        self.stats: dict[str, Any] = {"ticks": 0, "published": {}, "errors": 0, "last_error": None}
        self.memory = WatchMemory()
        # the retention rules this instance last applied (None: not yet)
        self._retention: frozenset[tuple[str, int]] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``interval_s`` until ``stop``; a failed tick is logged and the
        next one tries again (nothing it found was marked emitted)."""
        while not stop.is_set():
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._error("tick", exc)
            try:
                await asyncio.wait_for(stop.wait(), self.settings.interval_s)
            except TimeoutError:
                pass

    async def tick(self) -> list[tuple[str, dict[str, Any]]]:
        """Evaluate every rule once; publish and return the new events. A rule whose
        query fails is logged and skipped (the others still run); a failed publish
        raises and nothing is remembered, so the next tick publishes it again."""
        now = self.clock()
        q, s = self.queries, self.settings
        self.stats["ticks"] += 1
        self.memory.forget(now)
        findings: list[Finding] = []
        expiring = await self._read("expiry", q.expiring, now)
        findings += rules.expiry(expiring or ())
        definitions = await self._read("definitions", q.definitions)
        if definitions is not None:
            pending = await self._read("control", q.pending)
            found, unreadable = rules.control(pending or (), now, definitions, s.command_timeout_s)
            for r in unreadable:
                log.warning("identity watch: %s.%s: set value is not JSON", r.identity, r.resource)
            findings += found
            timeouts = rules.stale_timeouts(definitions)
            if timeouts:
                findings += rules.stale(await self._read("stale", q.stale, now, timeouts) or ())
        rows = await self._read("connectivity", q.connectivity, now, s.default_inactivity_timeout_s)
        findings += rules.connectivity(rows or (), self.memory)
        if definitions is not None:
            await self._read("retention", self._apply_retention, definitions)
        fresh = self.memory.fresh(findings)
        events = rules.events(fresh, now)
        if events:
            await self.publisher.publish(IDENTITY, events)
        self.memory.remember(fresh, now)
        published = self.stats["published"]
        for _, ev in events:
            published[ev["type"]] = published.get(ev["type"], 0) + 1
        return events

    def _error(self, what: str, exc: BaseException) -> None:
        self.stats["errors"] += 1
        self.stats["last_error"] = f"{what}: {type(exc).__name__}: {exc}"
        log.error("identity watch: %s failed: %s", what, exc, exc_info=exc)

    async def _read(self, what: str, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)`` in a thread; None (logged, counted) when it fails."""
        try:
            return await asyncio.to_thread(fn, *args)
        except Exception as exc:
            self._error(what, exc)
            return None

    def _apply_retention(self, definitions: Mapping[str, ResourceDefinition]) -> None:
        """Rule 6: applied when the set changes, and once at the first tick (another
        instance, or this one before a restart, may have left a different TTL)."""
        wanted = rules.retention_rules(definitions)
        if wanted == self._retention:
            return
        if wanted or self._retention or self.queries.has_retention():
            self.queries.set_retention(wanted)
        self._retention = wanted
        log.info("identity watch: readings retention now %s", sorted(wanted) or "unlimited")
