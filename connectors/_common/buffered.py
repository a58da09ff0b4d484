"""BufferedPublisher: publishes through the real publisher, stores and forwards when it fails.

While the spool is empty a publish goes straight through; when it fails (or the spool
is not empty, to keep the order) the events are Avro-encoded into the
:class:`~millrace.connectors._common.spool.Spool` and a drain task replays them oldest first,
with backoff, as soon as the log answers again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.connector import Event, EventPublisher

from .backoff import Backoff
from .spool import Spool

log = logging.getLogger("millrace.connectors.spool")


class BufferedPublisher(EventPublisher):
    """Publishes through ``inner``; spools and replays when it fails."""

    def __init__(
        self,
        inner: EventPublisher,
        spool: Spool,
        codec: AvroCodec | None = None,
        backoff: Backoff | None = None,
        timeout_s: float = 10.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.inner = inner
        self.spool = spool
        self.codec = codec or default_codec()
        self.backoff = backoff or Backoff(0.2, 10.0)
        self.timeout_s = timeout_s
        self.on_change = on_change
        self.failures = 0
        self.last_error = ""
        self._drain: asyncio.Task[None] | None = None

    @property
    def buffering(self) -> bool:
        return len(self.spool) > 0

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        if not events:
            return
        if not self.buffering:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
                async with asyncio.timeout(self.timeout_s):
                    await self.inner.publish(topic, events)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the log is unreachable: keep the events
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("publish to %s failed (%s); buffering", topic, self.last_error)
        encoded = [(k, self.codec.encode(topic, e)) for k, e in events]
        self.spool.append(topic, encoded)
        self._ensure_drain()
        if self.on_change:
            self.on_change()

    def _ensure_drain(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._drain_loop(), name="millrace-spool-drain")

    async def _drain_loop(self) -> None:
        while (entry := self.spool.begin()) is not None:
            delivered = False
            try:
                events = [(k, self.codec.decode(entry.topic, v)) for k, v in entry.events]
                async with asyncio.timeout(self.timeout_s):
                    await self.inner.publish(entry.topic, events)
                    delivered = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                # pops it, or (dropped by an overflow meanwhile) counts it if not delivered
                self.spool.settle(entry, delivered)
            if self.on_change:
                self.on_change()
            if not delivered:
                await asyncio.sleep(self.backoff.next())
                continue
            self.backoff.reset()

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until the spool is empty (True) or ``timeout_s`` passed (False)."""
        if self.buffering:
            self._ensure_drain()
        if self._drain is None:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._drain)
        except TimeoutError:
            return False
        return not self.buffering

    async def close(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
            try:
                await self._drain
            except (asyncio.CancelledError, Exception):
                pass
            self._drain = None
