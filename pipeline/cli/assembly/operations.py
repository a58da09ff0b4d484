"""The operations API's view of an assembly (``api.operations.Operations``): log ring,
metrics, readiness, pause/resume, the running configuration masked and the settings
``PATCH /api/v1/config`` may change.

Pause and resume: the route's audit event (target_type ``pipeline``) is the control
event every process-role member follows (``pipeline.runtime.control``, the
``pause-follower`` stage). In ``millrace run`` the route also suspends the in-process
runtime at once (``EmbeddedRuntime.suspend``: under the same hold the replay swap takes
between two batches); ``millrace api`` of the distributed deployment only appends the
event. There the state, the lag and the runtime's counters shown are the workers'
(``api.remote``), and the connectors those ``millrace connect`` reported.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from importlib import metadata
from typing import TYPE_CHECKING, Any

from millrace.api import logring
from millrace.api.audit import SECRET_FIELDS
from millrace.api.context import AppContext
from millrace.api.operations import Operations, skip_while_paused
from millrace.api.prom import EngineMetrics
from millrace.api.remote import RemoteFigures
from millrace.pipeline.alarms.runner import NAME as ALARM_RUNNER
from millrace.pipeline.alarms.runner import TOPICS as ALARM_TOPICS
from millrace.pipeline.cli.assembly.adapters import CONSUMERS
from millrace.pipeline.cli.assembly.settings import on_change, runtime_settings
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.progress import behind
from millrace.pipeline.restore import masked_url
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.checkpoints import StoreCheckpoints
from millrace.projections.remote_figures import stored_connectors

if TYPE_CHECKING:
    from millrace.pipeline.cli.assembly.facade import Assembly

log = logging.getLogger("millrace.operations")


def masked(value: Any) -> Any:
    """``value`` with fields named like secrets as ``***`` (at any depth) and URL
    passwords (``scheme://user:***@host``, ``restore.masked_url``) hidden."""
    if isinstance(value, dict):
        return {
            k: "***" if SECRET_FIELDS.search(str(k)) and v not in (None, "") else masked(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str):
        return masked_url(value)
    return value


def _version() -> str:
    try:
        return metadata.version("millrace")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0.0.0"


def operations(asm: Assembly, ctx: AppContext) -> Operations:
    cfg = asm.config
    runtime = asm.runtime
    metrics = EngineMetrics(
        lambda: {**asm.status(), "alarm_lag_records": alarm_lag(asm)},
        connectors=asm.manager.snapshot if asm.manager is not None else list,
    )
    ops = Operations(
        logs=logring.install(),
        metrics=metrics,
        deployment="distributed" if asm.distributed else "embedded",
        version=_version(),
        build=os.environ.get("MILLRACE_BUILD", ""),
        started_us=asm.started_us,
        data_dir=str(cfg.data_dir),
        metrics_open=cfg.api.metrics_open,
        ready_max_lag=cfg.api.ready_max_lag,
        lag=asm.lag,
        config=lambda: masked(cfg.model_dump(mode="json")),
        settings=runtime_settings(asm),
    )
    # the API's own reads of "offline" follow the setting too
    on_change(
        ops.settings["identities.inactivity_timeout_s"],
        lambda v: setattr(ctx.queries, "default_inactivity_timeout_s", v),
    )
    metrics.store_errors = lambda: ops.store_errors
    if runtime is not None:
        runtime.on_batch = metrics.observe_batch
        ops.pause, ops.resume = runtime.suspend, runtime.resume
        ops.paused = lambda: runtime.suspended
        ctx.wait_applied = skip_while_paused(ctx.wait_applied, ops.paused)
    elif asm.distributed:
        # the route's audit event is the control event every worker follows
        # (``pipeline.runtime.control``); the state, lag and counters shown are the
        # workers' (``api.remote``: the audit topic, Kafka offsets, their heartbeats)
        topics = {t for p in processors() for t in p.topics}
        checkpoints = StoreCheckpoints(ctx.store)

        def alarm_positions() -> dict[TopicPartition, int] | None:
            saved = checkpoints.load(ALARM_RUNNER)
            return saved.positions if saved is not None else None

        asm.remote = remote = RemoteFigures(
            event_log=asm.log,
            store=ctx.store,
            group=CONSUMERS["faust"],
            topics=topics,
            codec=asm.codec,
            alarm_positions=alarm_positions,
            alarm_topics=ALARM_TOPICS,
        )
        ops.pause, ops.resume = _logged, lambda: None
        ops.paused = lambda: remote.paused
        # connectors run in ``millrace connect``: as they reported themselves
        ctx.connectors = partial(stored_connectors, ctx.store)
        ops.lag = lambda: remote.lag_records
        ops.refresh = remote.refresh
    event_log = asm.log

    async def log_writable() -> bool:
        if isinstance(event_log, LocalEventLog):
            return os.access(event_log.directory, os.W_OK)
        await event_log.offsets(TELEMETRY, 0)  # the brokers answer
        return True

    ops.log_writable = log_writable
    return ops


async def _logged() -> None:
    """Pausing the distributed runtime is its audit event (appended after the answer)."""


def alarm_lag(asm: Assembly) -> int:
    """Records of the local log the alarm runner has not evaluated (the distributed
    API: from its checkpoint, ``api.remote``; 0 elsewhere)."""
    if asm.remote is not None:
        return asm.remote.alarm_lag_records
    runner, event_log = asm.alarms, asm.log
    if runner is None or not isinstance(event_log, LocalEventLog):
        return 0
    ends: dict[int, int] = {}
    done: dict[int, int] = {}
    for topic in runner.topics:
        for p in range(event_log.partitions(topic)):
            i = len(ends)
            ends[i] = event_log.offsets_sync(topic, p)[1]
            done[i] = runner.position(TopicPartition(topic, p))
    return behind(ends, done)
