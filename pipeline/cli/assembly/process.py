"""The ``process`` role's stages: the processor runtime (asyncio or faust), the alarm
runner, the rule seeding, the identity watch, the task runner and, with an archive
configured, the archiver (the last five are singletons)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from millrace.pipeline.alarms.evaluator import Evaluator
from millrace.pipeline.alarms.runner import AlarmRunner
from millrace.pipeline.alarms.seeding import ConfigRuleSeeder
from millrace.pipeline.cli.assembly.adapters import CONSUMERS
from millrace.pipeline.errors import ConfigError
from millrace.pipeline.identities.watch import WatchSettings
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.restore import KIND as RESTORE
from millrace.pipeline.restore import RestoreTask
from millrace.pipeline.restore.offload import OffloadedRestoreTask
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.runtime.hold import PauseHold
from millrace.pipeline.runtime.stage import LoopStage, ServiceStage, Stage
from millrace.pipeline.runtime.worker import FoldWorker
from millrace.pipeline.tasks import TaskRunner, register_kind
from millrace.pipeline.topics import AUDIT
from millrace.projections.alarms import AlarmQueries
from millrace.projections.checkpoints import StoreCheckpoints
from millrace.projections.replay import ReplayParts, replay_handler
from millrace.projections.replay_cluster import ClusterShadows, server_nodes
from millrace.projections.replay_live import DistributedLive
from millrace.projections.restore import held_readings
from millrace.projections.shadow import ServerShadows, Shadows
from millrace.projections.store.base import ProjectionStore
from millrace.projections.watch_queries import IdentityWatch
from millrace.projections.writer import ProjectionWriter

if TYPE_CHECKING:
    from millrace.pipeline.cli.assembly.facade import Assembly


def process_stages(asm: Assembly) -> list[Stage]:
    """The role's stages, in start order; sets the assembly's runtime, alarms, seeder,
    watch and task runner."""
    cfg = asm.config
    runtime: Stage
    if asm.adapters.runtime == "asyncio":
        folds = processors(
            cfg.ingest.idempotency_window_s * 1_000_000, cfg.ingest.batch_filter_mib * 2**20
        )
        worker = cfg.runtime.worker
        asm.runtime = EmbeddedRuntime(
            asm.log,
            ProjectionWriter(asm.store("pipeline")),
            folds,
            codec=asm.codec,
            max_records=cfg.runtime.max_records,
            idle_sleep_s=cfg.runtime.idle_sleep_ms / 1000,
            linger_s=cfg.runtime.linger_ms / 1000,
            linger_below=cfg.runtime.linger_below,
            worker=FoldWorker(folds, worker.topics) if worker.enabled else None,
        )
        runtime = LoopStage(
            "runtime",
            asm.runtime.run,
            stop_timeout_s=30.0,  # it notices the stop after its current batch
            health=lambda: asm.runtime.health() if asm.runtime else {},
        )
    else:
        runtime = faust_stage(asm)
    asm.alarms = alarms = AlarmRunner(
        asm.log,
        asm.publisher,
        StoreCheckpoints(asm.store("checkpoints")),
        asm.codec,
        Evaluator,
        tick_s=cfg.alarms.tick_s,
        # decode once: the in-process runtime's decoded events (faust workers: none)
        feed=asm.runtime.feed if asm.runtime is not None else None,
    )
    read = asm.store("read")

    def in_force() -> dict[str, Any]:
        current, _ = AlarmQueries(read).rules(10_000, 0)
        return {r["rule_id"]: r["definition"] for r in current}

    def published() -> None:
        if asm.runtime is not None:
            asm.runtime.wake()
        alarms.wake()

    asm.seeder = ConfigRuleSeeder(
        cfg.alarms.rules, asm.publisher, in_force, asm.wait_applied, on_published=published
    )
    asm.watch = watch = IdentityWatch(
        read,
        asm.publisher,
        WatchSettings(
            default_inactivity_timeout_s=cfg.identities.inactivity_timeout_s,
            command_timeout_s=cfg.identities.command_timeout_s,
        ),
        # the readings TTL goes ON CLUSTER to the shards' tables
        cluster=cfg.distributed.clickhouse_cluster if cfg.distributed.clickhouse_url else None,
    )
    # restore.worker: the archive store's files folded in worker processes
    restore_task = OffloadedRestoreTask if cfg.restore.worker else RestoreTask
    register_kind(
        RESTORE,
        restore_task(
            ProjectionWriter(asm.store("tasks")),
            asm.archive_store(),
            asm.publisher,
            allowed_prefixes=tuple(cfg.restore.allowed_url_prefixes),
            codec=asm.codec,
            chunk=cfg.restore.chunk_records,
            held=held_readings(asm.store("tasks")),
            forget=progress_forget(asm, asm.store("tasks")),
            log=asm.log,  # a foreign file's records go onto the log (restore.republish)
        ),
    )

    def replay_parts() -> ReplayParts | None:
        store, archive = asm.store("replay"), asm.archive_store()
        window_us = cfg.ingest.idempotency_window_s * 1_000_000
        live = asm.runtime if asm.runtime is not None else distributed_live(asm, store)
        return ReplayParts(
            asm.log,
            store,
            live,
            asm.codec,
            archive,
            lambda: processors(window_us),
            shadows=cluster_shadows(asm, store),
        )

    # replay while running holds the in-process runtime, or every faust worker through
    # the log; on a ClickHouse cluster it swaps every node's tables
    register_kind("replay", replay_handler(replay_parts))
    asm.tasks = TaskRunner(asm.log, asm.publisher, codec=asm.codec)
    return [
        # first: it reads the pause/resume in force before the runtime folds anything
        *pause_stages(asm),
        runtime,
        LoopStage("alarms", alarms.run, singleton=True, health=lambda: asdict(alarms.stats)),
        asm.seeder,
        LoopStage(
            "identity-watch",
            watch.run,
            singleton=True,
            stop_timeout_s=0.0,  # cancelled at stop: a tick is redone by the next start
            health=lambda: dict(watch.stats),
        ),
        asm.tasks,
        *archiver_stages(asm),
    ]


def distributed_live(asm: Assembly, store: ProjectionStore) -> DistributedLive:
    """The faust workers as a replay's live fold: their progress in the store, held by
    the pause they answer (``projections.replay_live``)."""
    log = asm.log

    def needed() -> set[TopicPartition]:
        topics = {t for p in processors() for t in p.topics}
        return {TopicPartition(t, n) for t in topics for n in range(log.partitions(t))}

    hold = PauseHold(log, asm.publisher, needed, codec=asm.codec)
    return DistributedLive(store, hold, CONSUMERS["faust"])


def cluster_shadows(asm: Assembly, store: ProjectionStore) -> Shadows | None:
    """On a ClickHouse cluster, where a replay builds and swaps its shadows (every
    node, ``projections.replay_cluster``); None elsewhere (the store itself)."""
    dist = asm.config.distributed
    if not (dist.clickhouse_url and dist.clickhouse_cluster):
        return None
    return ClusterShadows(store, dist.clickhouse_cluster, server_nodes(dist.clickhouse_url))


def progress_forget(asm: Assembly, store: ProjectionStore) -> Callable[[str], None]:
    """How a finished restore file's sink progress rows are deleted: from every node's
    ``progress_local`` ON CLUSTER on a ClickHouse cluster (where ``progress`` is a
    Distributed table, which takes no DELETE), else from ``progress`` itself."""
    return (cluster_shadows(asm, store) or ServerShadows(store)).forget


def pause_stages(asm: Assembly) -> list[Stage]:
    """Pause and resume through the log (``pipeline.runtime.control``), in both
    deployments: every process-role member follows the audit topic's pause/resume
    events. A faust worker holds or releases its takes, and answers each pause with a
    ``held`` event once its take in flight has ended (``pipeline.runtime.hold``: a
    distributed replay's swap waits for every answer); the in-process runtime sets its
    ``suspended`` flag (the embedded route has already suspended it at once, so there
    this only repeats what is true; a replay's hold is a lock of its own, untouched)."""
    from millrace.pipeline.runtime.control import PauseFollower
    from millrace.pipeline.runtime.hold import held_event

    app = asm.faust_app

    def gate(paused: bool) -> None:
        if app is not None:
            handler_gate = app.millrace_handler().gate
            if paused:
                handler_gate.clear()
            else:
                handler_gate.set()
            return
        runtime = asm.runtime
        if runtime is None:
            return
        if paused:
            runtime.suspended = True  # the batch in flight ends; the next step folds nothing
        elif runtime.suspended:
            runtime.resume()

    async def answer(pause: dict[str, Any]) -> None:
        """A faust worker answers a pause once its take in flight ended
        (``pipeline.runtime.hold``: a distributed replay waits for every answer)."""
        if app is None:
            return  # the in-process runtime: its replay holds it in-process
        handler = app.millrace_handler()
        await handler.quiet()
        if handler.gate.is_set():
            return  # resumed meanwhile
        worker = f"{socket.gethostname()}:{os.getpid()}"
        event = held_event(pause, worker, app.millrace_assigned())
        await asm.publisher.publish(AUDIT, [("runtime", event)])

    return [PauseFollower(asm.log, gate, asm.codec, on_held=answer)]


def archiver_stages(asm: Assembly) -> list[Stage]:
    """The archiver when ``archive.url`` is set (sets ``asm.archiver``); the local log's
    retention then waits for it."""
    cfg = asm.config.archive
    if not cfg.enabled:
        return []
    from millrace.pipeline.archive.archiver import Archiver

    store = asm.archive_store()
    assert store is not None  # cfg.enabled
    local = asm.log if isinstance(asm.log, LocalEventLog) else None
    sync = local.flush_async if local is not None and local.config.fsync != "batch" else None
    asm.archiver = Archiver(
        asm.log, store, cfg, publisher=asm.publisher, codec=asm.codec, sync=sync
    )
    if local is not None:
        local.hold_retention(asm.archiver.archived_end)
    return [asm.archiver]


def faust_stage(asm: Assembly) -> Stage:
    """The distributed runtime: a faust worker app writing through the projection writer."""
    from millrace.pipeline.runtime.faust_runtime import FaustRuntimeConfig, build_app

    cfg = asm.config
    bootstrap = asm.adapters.kafka_bootstrap
    if not bootstrap:
        raise ConfigError("set MILLRACE_KAFKA_BOOTSTRAP (or distributed.kafka_bootstrap)")
    writer = ProjectionWriter(asm.store("pipeline"))
    asm.faust_app = build_app(
        FaustRuntimeConfig(
            bootstrap=bootstrap,
            topic_prefix=asm.adapters.topic_prefix,
            max_records=cfg.runtime.max_records,
            datadir=str(Path(cfg.data_dir) / "faust"),
        ),
        lambda: writer,
        processors(
            cfg.ingest.idempotency_window_s * 1_000_000, cfg.ingest.batch_filter_mib * 2**20
        ),
    )
    return ServiceStage("runtime", asm.faust_app.start, asm.faust_app.stop)
