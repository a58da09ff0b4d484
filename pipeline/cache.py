"""One value read through a slow source, kept for a while: :class:`LastGoodCache`.

Used for the resource definitions every ingest request and every connector batch is
checked against (``projections.definitions`` reads them; the API and the connector edge
cache them here). A refresh that fails (the store busy, restarting, migrating) keeps
the last good value: a check against definitions a second old is better than none, and
far better than refusing every reading while the store is away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("millrace.cache")


class LastGoodCache(Generic[T]):
    """``load()``'s result, loaded again at most once per ``ttl_s`` (by ``clock``, a
    monotonic clock in seconds unless a test gives its own).

    A failed load keeps the last good value and is retried after ``ttl_s``; before any
    load succeeded, a failure returns ``default`` when one is given and raises
    otherwise. :meth:`invalidate` makes the next :meth:`get` load (a write of this
    process shows at once; others' within ``ttl_s``)."""

    def __init__(
        self,
        load: Callable[[], Awaitable[T]],
        ttl_s: float,
        *,
        default: T | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.load = load
        self.ttl_s = ttl_s
        self.default = default
        self.clock = clock
        self.failures = 0
        self._value: T | None = None
        self._good = False
        self._at = float("-inf")

    async def get(self) -> T:
        now = self.clock()
        if now - self._at < self.ttl_s:
            if self._good:
                return self._value  # type: ignore[return-value]
            if self.default is not None:
                return self.default
        self._at = now
        try:
            value = await self.load()
        except Exception as exc:
            self.failures += 1
            if self._good:
                log.warning("refresh failed, keeping the last value: %s", exc)
                return self._value  # type: ignore[return-value]
            if self.default is not None:
                log.warning("load failed, using the default: %s", exc)
                return self.default
            self._at = float("-inf")  # nothing to keep: the next call tries again
            raise
        self._value, self._good = value, True
        return value

    def invalidate(self) -> None:
        self._at = float("-inf")
