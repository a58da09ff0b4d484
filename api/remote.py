"""The figures of the processes a distributed API process does not run, for
``/status``, ``/health/ready``, ``/metrics`` and ``/system/info`` of ``millrace api``.

Read when a route asks (:meth:`RemoteFigures.refresh`, at most every ``max_age_s``),
never in the background:

* ``lag_records``: the processing group's committed offsets on Kafka against the end
  offsets of the processors' topics (a faust worker commits no further than its sink
  wrote, ``pipeline.runtime.faust_runtime``), summed over their partitions;
* ``paused``: the last pause/resume control event on the audit topic, followed as the
  workers follow it (an ``AuditFollower`` that starts from the last one on the log),
  so it is right even while the paused workers fold nothing into the audits table;
* the workers' counters: the figures their runner heartbeats carry
  (``projections.remote_figures``), summed over the workers heard from within
  ``stale_after_s`` (while paused, over the last heartbeats folded: the pause holds
  them back too);
* ``alarm_lag_records``: the log's end offsets against the alarm runner's last
  checkpoint in the store (saved at least every second while it runs);
* the connectors: their connections' states as they reported them;
* ``archive``: the archiver's health as the worker running it reports it on its
  heartbeat (``pipeline.archive.health``), shaped as ``millrace run`` shows it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from millrace.pipeline.clock import now_us
from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.log.base import EventLog, TopicPartition
from millrace.pipeline.runtime.control import control_of
from millrace.pipeline.runtime.control_follow import AuditFollower
from millrace.projections.remote_figures import stored_connectors, worker_figures
from millrace.projections.store.base import ProjectionStore

log = logging.getLogger("millrace.api.remote")


async def behind(
    event_log: EventLog,
    topics: Iterable[str],
    done: Callable[[TopicPartition], Awaitable[int | None]],
) -> int:
    """Records of ``topics`` past the positions ``done`` gives (a partition without one
    counts from its first retained offset)."""
    lag = 0
    for topic in sorted(topics):
        for p in range(event_log.partitions(topic)):
            first, end = await event_log.offsets(topic, p)
            pos = await done(TopicPartition(topic, p))
            lag += max(0, end - max(first, pos if pos is not None else first))
    return lag


async def group_lag(event_log: EventLog, group: str, topics: Iterable[str]) -> int:
    """Records of ``topics`` that consumer ``group`` has not committed."""
    return await behind(event_log, topics, lambda tp: event_log.committed(group, tp))


class RemoteFigures:
    """The process role's and the connectors' figures, as seen from an API process."""

    def __init__(
        self,
        event_log: EventLog,
        store: ProjectionStore,
        group: str,
        topics: Iterable[str],
        codec: AvroCodec,
        *,
        max_age_s: float = 1.0,
        stale_after_s: float = 35.0,
        clock: Callable[[], int] = now_us,
        alarm_positions: Callable[[], Mapping[TopicPartition, int] | None] | None = None,
        alarm_topics: Iterable[str] = (),
    ) -> None:
        self.log, self.store, self.group = event_log, store, group
        self.topics = frozenset(topics)
        self.max_age_s, self.stale_after_s, self.clock = max_age_s, stale_after_s, clock
        self.lag_records = 0
        #: the alarm runner's checkpointed positions (a blocking store read), its topics
        self.alarm_positions, self.alarm_topics = alarm_positions, tuple(alarm_topics)
        self.alarm_lag_records = 0
        self.paused = False
        self.workers: list[dict[str, Any]] = []
        self.connectors: list[dict[str, Any]] = []
        self.errors = 0
        self._read_at: float | None = None
        self._lock = asyncio.Lock()
        self._control = AuditFollower(
            event_log,
            lambda e: control_of(e) is not None,
            self._on_control,
            codec,
            resume_last=True,
        )

    def _on_control(self, event: dict[str, Any]) -> None:
        self.paused = bool(control_of(event))

    async def refresh(self, *, force: bool = False) -> None:
        """Read the figures again unless read less than ``max_age_s`` ago."""
        async with self._lock:
            now = time.monotonic()
            if not force and self._read_at is not None and now - self._read_at < self.max_age_s:
                return
            try:
                await self._control.poll()
                self.lag_records = await group_lag(self.log, self.group, self.topics)
            except Exception as exc:  # the readiness check's log probe says why
                self.errors += 1
                log.warning("processing group lag unreadable: %s", exc)
            # paused, the workers' heartbeats are not folded either: their last ones stand
            since = 0 if self.paused else self.clock() - int(self.stale_after_s * 1_000_000)
            try:
                self.workers = await asyncio.to_thread(worker_figures, self.store, since)
                self.connectors = await asyncio.to_thread(stored_connectors, self.store)
                if self.alarm_positions is not None:
                    self.alarm_lag_records = await self._alarm_lag(self.alarm_positions)
            except Exception as exc:
                self.errors += 1
                log.warning("workers' figures unreadable: %s", exc)
            self._read_at = now

    async def _alarm_lag(self, positions: Callable[[], Mapping[TopicPartition, int] | None]) -> int:
        saved = await asyncio.to_thread(positions) or {}

        async def done(tp: TopicPartition) -> int | None:
            return saved.get(tp)

        return await behind(self.log, self.alarm_topics, done)

    def status(self) -> dict[str, Any]:
        """``/status``'s figures, shaped as ``millrace run`` gives them, summed over the
        workers."""

        def total(name: str) -> int:
            return int(sum(w["figures"].get(name, 0.0) for w in self.workers))

        archive = next((w["archive"] for w in self.workers if "archive" in w), None)
        return {
            **({"archive": archive} if archive is not None else {}),
            "lag_records": self.lag_records,
            "alarm_lag_records": self.alarm_lag_records,
            "paused": self.paused,
            "runtime": {
                "records": total("records"),
                "batches": total("batches"),
                "rows": {"readings": total("readings")},
                "deadletters": total("deadletters"),
                "errors": total("errors"),
            },
            "alarms": {"events": total("alarm_events")},
            "workers": self.workers,
            "connectors": self.connectors,
        }
