"""RunnerHeartbeat: a process's own sign of life on the status topic.

Connectors report their resources with the name of the runner (process or host) that
runs them, but a runner with nothing to report, or one that died, says nothing. A
runner therefore publishes an explicit heartbeat every ``interval_s``: a
ResourceStatus of resource type ``runner`` (resource ``runner:<name>``) carrying
``metrics["interval_s"]``, from which ``GET /api/v1/resource-runners`` counts missed
heartbeats. On stop it publishes a last event with desired and current state
``stopped`` (a runner stopped on purpose is not a deviation).

A heartbeat may carry the process's own figures (``figures``): the process role's
runtime counters (records, batches, readings folded, dead letters, errors, paused), as
metrics named ``figure.<name>``. That is how an API process of the distributed
deployment shows the workers' figures (``projections.remote_figures``), and ``info``
its texts (the archiver's store and last error, ``pipeline.archive.health``).

A heartbeat that cannot be published (the log unreachable) is logged and the next one
tried on time; the heartbeat never stops the process it belongs to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from millrace.pipeline.clock import now_us
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.events import status_event
from millrace.pipeline.processors.status import RUNNER_TYPE
from millrace.pipeline.topics import STATUS

log = logging.getLogger("millrace.heartbeat")

RUNNER_PREFIX = "runner:"
#: the metrics of a heartbeat that are the process's figures
FIGURE_PREFIX = "figure."


class RunnerHeartbeat:
    """Publishes ``runner:<name>`` heartbeats through ``publisher`` (see the module doc)."""

    def __init__(
        self,
        publisher: EventPublisher,
        name: str,
        interval_s: float = 10.0,
        *,
        service_id: str = "millrace",
        clock: Callable[[], int] = now_us,
        figures: Callable[[], dict[str, float]] | None = None,
        info: Callable[[], str] | None = None,
    ) -> None:
        if not name:
            raise ValueError("name: a runner needs a name")
        if not interval_s > 0:
            raise ValueError(f"interval_s: must be positive, got {interval_s}")
        self.publisher = publisher
        self.name = name
        self.interval_s = float(interval_s)
        self.service_id = service_id
        self.clock = clock
        self.figures = figures
        #: the heartbeat's text (e.g. the archiver's store and last error, as JSON)
        self.info = info
        self.resource_id = RUNNER_PREFIX + name
        self.sent = 0

    def event(self, state: str) -> dict[str, Any]:
        """The ResourceStatus of this runner in ``state`` (desired = current)."""
        metrics = {"interval_s": self.interval_s}
        if self.figures is not None:
            metrics |= {FIGURE_PREFIX + k: float(v) for k, v in self.figures().items()}
        return status_event(
            self.resource_id,
            service_id=self.service_id,
            resource_type=RUNNER_TYPE,
            desired_state=state,
            current_state=state,
            info=self.info() if self.info is not None else "",
            runner=self.name,
            ts_us=self.clock(),
            metrics=metrics,
        )

    async def beat(self, state: str = "running") -> bool:
        """Publish one heartbeat; False (logged) when the log did not take it."""
        try:
            await self.publisher.publish(STATUS, [(self.resource_id, self.event(state))])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("runner %s: heartbeat not published", self.name, exc_info=True)
            return False
        self.sent += 1
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Beat every ``interval_s`` until ``stop`` is set, then publish ``stopped``."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            await self.beat("running")
            next_at += self.interval_s
            # a slow publish skips the beats it overran instead of sending a burst
            while next_at <= loop.time():
                next_at += self.interval_s
            try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
                async with asyncio.timeout(next_at - loop.time()):
                    await stop.wait()
            except TimeoutError:
                pass
        await self.beat("stopped")
