"""Whether an identity may post readings: locked or (when registration is required)
unknown identities are refused, read from one store query a second for all of them.

HTTP ingest checks the identity of every request. Asked one identity at a time (a
primary-key read, cached for a second per identity), a fleet of devices posting in
turn missed the cache on nearly every request, and a chDB query costs milliseconds of
CPU whatever it reads: more than turning the request's thousand readings into columns.
The gate instead holds the set of locked identities (and, with
``registry.require_registered``, the set of registered ones), taken by one query at
most every ``ttl_s`` seconds, shared by all requests (one refresh at a time; the others
wait for it). Writes of this process (lock, delete, register) mark it stale once the
projections hold them (``api.registry.emit``), so the next request reads it again:
read-your-writes as before, and other processes' writes within ``ttl_s``, as the
per-identity cache gave.

More than ``max_identities`` registered identities (with registration required): the
set is not kept and each identity is asked on its own (``api.registry.identity_status``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from millrace.projections.registry import RegistryQueries

LOCKED, MISSING = "locked", "missing"


class IngestGate:
    """The refusal an identity's readings get: ``"locked"``, ``"missing"`` or None."""

    def __init__(
        self,
        queries: RegistryQueries,
        require_registered: bool,
        point: Callable[[str], Awaitable[str | None]],
        *,
        ttl_s: float = 1.0,
        max_identities: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queries = queries
        self.require_registered = require_registered
        #: the identity's status asked on its own (too many identities to hold)
        self.point = point
        self.ttl_s = ttl_s
        self.max_identities = max_identities
        self.clock = clock
        self._locked: frozenset[str] = frozenset()
        #: registered identities (registration required and few enough), else None
        self._present: frozenset[str] | None = None
        self._taken = -math.inf
        self._refresh = asyncio.Lock()

    def invalidate(self) -> None:
        """This process changed an identity: read the sets again at the next request."""
        self._taken = -math.inf

    async def refusal(self, identity: str) -> str | None:
        if self.clock() - self._taken >= self.ttl_s:
            async with self._refresh:
                if self.clock() - self._taken >= self.ttl_s:
                    await self._take()
        if identity in self._locked:
            return LOCKED
        if not self.require_registered:
            return None
        if self._present is None:
            status = await self.point(identity)
            return LOCKED if status == LOCKED else MISSING if status is None else None
        return None if identity in self._present else MISSING

    async def _take(self) -> None:
        started = self.clock()  # the sets are at least this recent
        locked, present = await asyncio.to_thread(
            self.queries.gate_sets,
            self.require_registered,
            self.max_identities,
        )
        self._locked, self._present = locked, present
        self._taken = started


__all__ = ["LOCKED", "MISSING", "IngestGate"]
