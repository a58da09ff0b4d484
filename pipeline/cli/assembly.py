"""One assembly for both deployments: the stages of a set of roles, built from the
chosen adapters. Part of the composition root (it may import every package).

Roles and their stages (``pipeline.runtime.stage``), in start order; they stop in
reverse order:

``process``
    ``runtime`` (asyncio: ``EmbeddedRuntime``; faust: a faust worker app),
    ``alarms`` (the alarm runner), ``alarm-rule-seeding`` (the file's rules),
    ``identity-watch``. The last three are *singleton* stages: the assembly passes them
    to ``wrap_singleton`` (identity unless the deployment gives a leadership wrapper).
``api``
    ``stream-tail`` (live streams) and ``api-server``.
``connect``
    ``runner-heartbeat`` (this process's sign of life, where connectors run),
    ``connector-manager`` (the commissioning file's connections, the ``simulator:``
    section among them as a ``protocol: simulator`` connection) and
    ``command-router``. Connector data is checked against the resource definitions in
    the store (``DefinitionCheckingPublisher``) whenever the role has a store: always in
    ``millrace run``, with ``distributed.clickhouse_url`` in ``millrace connect``.

Adapters add stages of their own: the local log its ``log-upkeep``.
``millrace run`` = every role, local log, chDB, asyncio runtime, one process;
``millrace connect`` / ``process`` / ``api`` = one role each on Kafka and a ClickHouse
server (``process`` also on chDB in ``data_dir``), faust for ``process``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from millrace.api.auth import KeyStore
from millrace.api.context import ApiSettings, AppContext
from millrace.api.limits import RequestLimits
from millrace.api.serve import ApiServerStage
from millrace.api.stream import LogTail, StreamHub
from millrace.connectors.commissioning import Commissioning
from millrace.connectors.definitions import DefinitionCheckingPublisher, cached_definitions
from millrace.connectors.manager import ConnectorManager, route_commands
from millrace.pipeline.alarms.evaluator import Evaluator
from millrace.pipeline.alarms.runner import AlarmRunner
from millrace.pipeline.alarms.seeding import ConfigRuleSeeder
from millrace.pipeline.cli.config import MillraceConfig
from millrace.pipeline.clock import now_us
from millrace.pipeline.codec import default_codec
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.errors import ConfigError
from millrace.pipeline.heartbeat import RunnerHeartbeat
from millrace.pipeline.identities.watch import WatchSettings
from millrace.pipeline.log.base import EventLog
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.log.local.upkeep import LogUpkeep
from millrace.pipeline.processors.catalog import processors
from millrace.pipeline.progress import (
    AppliedWaiter,
    Positions,
    behind,
    runtime_positions,
    sink_positions,
)
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.embedded import EmbeddedRuntime
from millrace.pipeline.runtime.executors import OwnThreads
from millrace.pipeline.runtime.stage import LoopStage, ServiceStage, Stage
from millrace.projections.alarms import AlarmQueries
from millrace.projections.checkpoints import StoreCheckpoints
from millrace.projections.registry import RegistryQueries
from millrace.projections.store.base import ProjectionStore
from millrace.projections.watch_queries import IdentityWatch
from millrace.projections.writer import ProjectionWriter

log = logging.getLogger("millrace")

Role = Literal["connect", "process", "api"]
ROLES: tuple[Role, ...] = ("connect", "process", "api")
#: what a store is opened for: the sink's writes, API reads, analyst SQL, checkpoints
Purpose = Literal["pipeline", "read", "analyst", "checkpoints"]
StoreFactory = Callable[[Purpose], ProjectionStore]
#: the consumer name under which each runtime commits its progress to the sink
CONSUMERS = {"asyncio": "projections", "faust": "millrace-projections"}


@dataclass
class Adapters:
    """The chosen adapters. Constructing them does no I/O (no file opened, no socket):
    the deployment opens the log and migrates the store before the stages start."""

    log: EventLog
    #: opens a store for a purpose; None: this process has no store
    stores: StoreFactory | None
    runtime: Literal["asyncio", "faust"] = "asyncio"
    #: the Kafka bootstrap servers and topic prefix, for the faust runtime
    kafka_bootstrap: str | None = None
    topic_prefix: str = ""

    def stages(self) -> list[Stage]:
        """The adapters' own upkeep stages."""
        if isinstance(self.log, LocalEventLog):
            return [LogUpkeep(self.log, self.log.config)]
        return []


def local_adapters(cfg: MillraceConfig) -> Adapters:
    """``millrace run``: the local log and chDB in ``data_dir``, the asyncio runtime."""
    data = Path(cfg.data_dir)
    return Adapters(LocalEventLog(data / "log", cfg.log), chdb_stores(cfg))


def chdb_stores(cfg: MillraceConfig) -> StoreFactory:
    """chDB sessions in ``data_dir/chdb``: the writer's, a pool for API reads, a pool
    for analyst SQL whose queries give way to the others' (see projections.store.chdb)."""
    from millrace.projections.store.chdb import ANALYST_SETTINGS, PIPELINE_SETTINGS, ChdbStore

    path = Path(cfg.data_dir) / "chdb"

    def open_store(purpose: Purpose) -> ProjectionStore:
        if purpose == "read":
            return ChdbStore(path, sessions=cfg.api.read_sessions, settings=PIPELINE_SETTINGS)
        if purpose == "analyst":
            return ChdbStore(path, sessions=cfg.api.sql_sessions, settings=ANALYST_SETTINGS)
        return ChdbStore(path, settings=PIPELINE_SETTINGS)

    return open_store


def clickhouse_stores(cfg: MillraceConfig) -> StoreFactory:
    """Connection pools to the ClickHouse server of ``distributed.clickhouse_url``."""
    from millrace.projections.store.clickhouse import ClickHouseServerStore

    d = cfg.distributed
    if not d.clickhouse_url:
        raise ConfigError("set MILLRACE_CLICKHOUSE_URL (or distributed.clickhouse_url)")
    url = d.clickhouse_url
    sizes = {"read": cfg.api.read_sessions, "analyst": cfg.api.sql_sessions}

    def open_store(purpose: Purpose) -> ProjectionStore:
        return ClickHouseServerStore(
            url, pool_size=sizes.get(purpose, 4), cluster=d.clickhouse_cluster
        )

    return open_store


def kafka_log(cfg: MillraceConfig) -> EventLog:
    from millrace.pipeline.log.kafka import KafkaEventLog, KafkaLogConfig

    d = cfg.distributed
    if not d.kafka_bootstrap:
        raise ConfigError("set MILLRACE_KAFKA_BOOTSTRAP (or distributed.kafka_bootstrap)")
    return KafkaEventLog(
        KafkaLogConfig(
            bootstrap_servers=d.kafka_bootstrap,
            topic_prefix=d.topic_prefix,
            partitions=d.partitions,
            replication_factor=d.replication_factor,
        )
    )


def distributed_adapters(
    cfg: MillraceConfig, *, store: Literal["required", "optional", "chdb"]
) -> Adapters:
    """Kafka and a ClickHouse server (``store="chdb"``: chDB in ``data_dir`` when no
    server is configured; ``"optional"``: no store without one), the faust runtime."""
    d = cfg.distributed
    stores: StoreFactory | None
    if d.clickhouse_url or store == "required":
        stores = clickhouse_stores(cfg)
    elif store == "chdb":
        stores = chdb_stores(cfg)
    else:
        stores = None
    return Adapters(
        kafka_log(cfg),
        stores,
        "faust",
        kafka_bootstrap=d.kafka_bootstrap,
        topic_prefix=d.topic_prefix,
    )


def _identity(stage: Stage) -> Stage:
    return stage


class Assembly:
    """The parts of one process and the stages they run as (see the module doc).

    Parts are made when a role's stages are built; :meth:`close` releases the stores
    and threads they opened (the log is the deployment's: it opened it)."""

    def __init__(
        self,
        config: MillraceConfig,
        adapters: Adapters,
        commissioning: Commissioning | None = None,
        *,
        wrap_singleton: Callable[[Stage], Stage] = _identity,
        runner_name: str | None = None,
    ) -> None:
        self.config = config
        self.adapters = adapters
        self.log = adapters.log
        self.commissioning = commissioning or Commissioning()
        self.wrap_singleton = wrap_singleton
        self.runner_name = runner_name or socket.gethostname()
        self.codec = default_codec()
        self.publisher = LogPublisher(self.log, self.codec)
        self.distributed = adapters.runtime == "faust"
        self._stores: dict[str, ProjectionStore] = {}
        self.runtime: EmbeddedRuntime | None = None
        self.faust_app: Any = None
        self.alarms: AlarmRunner | None = None
        self.seeder: ConfigRuleSeeder | None = None
        self.watch: IdentityWatch | None = None
        self.manager: ConnectorManager | None = None
        self.heartbeat: RunnerHeartbeat | None = None
        self.stream_hub: StreamHub | None = None
        self.stream_tail: LogTail | None = None
        self.sql_threads: OwnThreads | None = None
        self.keys: KeyStore | None = None
        self.stages: list[Stage] = []
        self._waiter: AppliedWaiter | None = None
        self.started_us = now_us()

    # -- stores ------------------------------------------------------------------------

    def store(self, purpose: Purpose) -> ProjectionStore:
        """The store opened for ``purpose`` (once); ConfigError without a store."""
        if purpose not in self._stores:
            if self.adapters.stores is None:
                raise ConfigError(f"this process has no store (needed for {purpose})")
            self._stores[purpose] = self.adapters.stores(purpose)
        return self._stores[purpose]

    # -- read-your-writes --------------------------------------------------------------

    @property
    def wait_applied(self) -> AppliedWaiter:
        """Waits on the sink's committed progress (``pipeline.progress``): through the
        in-process runtime when there is one, else the progress the store holds."""
        if self._waiter is None:
            positions: Positions
            if self.runtime is not None:
                positions = runtime_positions(self.runtime, self.log)
                wake: Callable[[], None] | None = self.runtime.wake
                poll_s = 0.005
            else:
                consumer = CONSUMERS[self.adapters.runtime]
                positions = sink_positions(ProjectionWriter(self.store("read")), consumer)
                wake, poll_s = None, 0.05
            topics = {t for p in processors() for t in p.topics}
            self._waiter = AppliedWaiter(
                self.log, positions, topics=topics, wake=wake, poll_s=poll_s
            )
        return self._waiter

    def lag(self) -> int:
        """Records of the local log the in-process runtime has not applied yet."""
        runtime, event_log = self.runtime, self.log
        if runtime is None or not isinstance(event_log, LocalEventLog):
            return 0
        tps = runtime.topic_partitions()
        ends = {i: event_log.offsets_sync(tp.topic, tp.partition)[1] for i, tp in enumerate(tps)}
        return behind(ends, {i: runtime.position(tp) for i, tp in enumerate(tps)})

    # -- stages ------------------------------------------------------------------------

    def build(self, roles: Iterable[Role]) -> list[Stage]:
        """The stages of ``roles`` (and the adapters' own), in start order."""
        wanted = set(roles)
        unknown = wanted - set(ROLES)
        if unknown:
            raise ConfigError(f"unknown role(s) {sorted(unknown)}; one of {list(ROLES)}")
        stages: list[Stage] = []
        if "process" in wanted:
            stages += self._process_stages()
        stages += self.adapters.stages()
        if "api" in wanted:
            stages.append(self._stream_stage())
        if "connect" in wanted:
            stages += self._connect_stages()
        if "api" in wanted:
            stages.append(self._api_stage())
        self.stages = [self.wrap_singleton(s) if s.singleton else s for s in stages]
        return self.stages

    def _process_stages(self) -> list[Stage]:
        cfg = self.config
        runtime: Stage
        if self.adapters.runtime == "asyncio":
            self.runtime = EmbeddedRuntime(
                self.log,
                ProjectionWriter(self.store("pipeline")),
                processors(),
                codec=self.codec,
                max_records=cfg.runtime.max_records,
                idle_sleep_s=cfg.runtime.idle_sleep_ms / 1000,
            )
            runtime = LoopStage(
                "runtime",
                self.runtime.run,
                stop_timeout_s=30.0,  # it notices the stop after its current batch
                health=lambda: asdict(self.runtime.stats) if self.runtime else {},
            )
        else:
            runtime = self._faust_stage()
        self.alarms = AlarmRunner(
            self.log,
            self.publisher,
            StoreCheckpoints(self.store("checkpoints")),
            self.codec,
            Evaluator,
            tick_s=cfg.alarms.tick_s,
        )
        alarms = self.alarms
        read = self.store("read")

        def in_force() -> dict[str, Any]:
            current, _ = AlarmQueries(read).rules(10_000, 0)
            return {r["rule_id"]: r["definition"] for r in current}

        def published() -> None:
            if self.runtime is not None:
                self.runtime.wake()
            alarms.wake()

        self.seeder = ConfigRuleSeeder(
            cfg.alarms.rules, self.publisher, in_force, self.wait_applied, on_published=published
        )
        self.watch = IdentityWatch(
            read,
            self.publisher,
            WatchSettings(
                default_inactivity_timeout_s=cfg.identities.inactivity_timeout_s,
                command_timeout_s=cfg.identities.command_timeout_s,
            ),
            # the readings TTL goes ON CLUSTER to the shards' tables
            cluster=cfg.distributed.clickhouse_cluster if cfg.distributed.clickhouse_url else None,
        )
        watch = self.watch
        return [
            runtime,
            LoopStage("alarms", alarms.run, singleton=True, health=lambda: asdict(alarms.stats)),
            self.seeder,
            LoopStage(
                "identity-watch",
                watch.run,
                singleton=True,
                stop_timeout_s=0.0,  # cancelled at stop: a tick is redone by the next start
                health=lambda: dict(watch.stats),
            ),
        ]

    def _faust_stage(self) -> Stage:
        from millrace.pipeline.runtime.faust_runtime import FaustRuntimeConfig, build_app

        cfg = self.config
        bootstrap = self.adapters.kafka_bootstrap
        if not bootstrap:
            raise ConfigError("set MILLRACE_KAFKA_BOOTSTRAP (or distributed.kafka_bootstrap)")
        writer = ProjectionWriter(self.store("pipeline"))
        self.faust_app = build_app(
            FaustRuntimeConfig(
                bootstrap=bootstrap,
                topic_prefix=self.adapters.topic_prefix,
                max_records=cfg.runtime.max_records,
                datadir=str(Path(cfg.data_dir) / "faust"),
            ),
            lambda: writer,
            processors(),
        )
        return ServiceStage("runtime", self.faust_app.start, self.faust_app.stop)

    def _connector_publisher(self) -> EventPublisher:
        """Connector data checked against the resource definitions in the store."""
        if self.adapters.stores is None:
            log.warning(
                "no store (distributed.clickhouse_url): connector data is not checked "
                "against resource definitions"
            )
            return self.publisher
        queries = RegistryQueries(self.store("read"), self.config.identities.inactivity_timeout_s)

        async def definitions() -> dict[str, Any]:
            defs = await asyncio.to_thread(queries.definitions)
            return {name: d["definition"] for name, d in defs.items()}

        return DefinitionCheckingPublisher(self.publisher, cached_definitions(definitions))

    def _connect_stages(self) -> list[Stage]:
        checked = self._connector_publisher()
        self.heartbeat = RunnerHeartbeat(self.publisher, self.runner_name, 10.0)
        heartbeat = self.heartbeat
        stages: list[Stage] = [
            LoopStage(
                "runner-heartbeat",
                heartbeat.run,
                stop_timeout_s=5.0,
                health=lambda: {"sent": heartbeat.sent},
            )
        ]
        spool = Path(self.config.data_dir) / "spool"
        self.manager = manager = ConnectorManager(self.commissioning, spool_root=spool)

        async def start_manager() -> None:
            await manager.start(checked)

        stages.append(
            ServiceStage(
                "connector-manager",
                start_manager,
                manager.stop,
                health=lambda: {"connections": len(manager)},
            )
        )
        if self.distributed:
            # one group per host and service: every connect process sees every command
            group = f"millrace-connectors-{self.commissioning.service}-{socket.gethostname()}"
        else:
            group = "millrace-connectors"

        async def route(stop: asyncio.Event) -> None:
            if self.distributed and not len(manager):
                await stop.wait()  # no connections here: leave commands to the others
                return
            await route_commands(self.log, manager, stop, self.publisher, group=group)

        stages.append(LoopStage("command-router", route, stop_timeout_s=5.0))
        return stages

    def _stream_stage(self) -> Stage:
        api = self.config.api
        self.stream_hub = StreamHub(
            max_streams=api.stream_max_connections, max_streams_per_owner=api.stream_max_per_key
        )
        # Kafka offset requests cross the network: poll its ends less often
        poll_s = 0.1 if isinstance(self.log, LocalEventLog) else 0.5
        self.stream_tail = tail = LogTail(self.log, self.codec, self.stream_hub, poll_s=poll_s)
        return LoopStage(
            "stream-tail", tail.run, stop_timeout_s=5.0, health=lambda: {"skipped": tail.skipped}
        )

    def _api_stage(self) -> Stage:
        from millrace.api.app import create_app

        hub = self.stream_hub
        return ApiServerStage(
            lambda: create_app(self.app_context()),
            self.config.api.host,
            self.config.api.port,
            self.config.api.server,
            on_stop=hub.close if hub is not None else None,  # ends open event streams
            timeout_graceful_shutdown=5,
        )

    # -- the API's context -------------------------------------------------------------

    def key_store(self) -> KeyStore:
        if self.keys is None:
            data = Path(self.config.data_dir)
            data.mkdir(parents=True, exist_ok=True)
            self.keys = KeyStore(data / "api_keys.json", os.environ.get("MILLRACE_API_KEY") or None)
        return self.keys

    def status(self) -> dict[str, Any]:
        """``GET /status``: the in-process runtime's figures, or the distributed ones."""
        if self.runtime is None or self.alarms is None:
            return {"mode": "distributed", "published": self.publisher.published}
        manager = self.manager.snapshot() if self.manager is not None else []
        return {
            "started_us": self.started_us,
            "lag_records": self.lag(),
            "runtime": asdict(self.runtime.stats),
            "alarms": asdict(self.alarms.stats),
            "published": self.publisher.published,
            "connectors": manager,
        }

    def app_context(self) -> AppContext:
        cfg = self.config
        ing = cfg.ingest
        self.sql_threads = self.sql_threads or OwnThreads("millrace-sql", cfg.api.sql_sessions)
        manager = self.manager
        return AppContext(
            store=self.store("read"),
            publisher=self.publisher,
            keys=self.key_store(),
            settings=ApiSettings(
                max_batch_samples=ing.max_batch_samples,
                max_batch_readings=ing.max_batch_readings,
                limits=RequestLimits.of(cfg.api, ing),
                strict_signals=ing.strict_signals,
                known_signals=frozenset(ing.signals),
                **cfg.api.sql_limits(),
            ),
            status=self.status,
            on_ingest=self.runtime.wake if self.runtime is not None else (lambda: None),
            connectors=manager.snapshot if manager is not None else list,
            registry=cfg.identities,
            wait_applied=self.wait_applied,
            stream=self.stream_hub,
            analyst_store=self.store("analyst"),
            sql_executor=self.sql_threads.executor,
        )

    def close(self) -> None:
        """Release the threads and stores this assembly opened."""
        if self.runtime is not None:
            self.runtime.close()
        if self.sql_threads is not None:
            self.sql_threads.shutdown(wait=False, cancel_futures=True)
        for store in self._stores.values():
            store.close()
        self._stores.clear()


def build_stages(
    roles: Collection[Role],
    adapters: Adapters,
    config: MillraceConfig,
    commissioning: Commissioning | None = None,
    *,
    wrap_singleton: Callable[[Stage], Stage] = _identity,
) -> tuple[Assembly, list[Stage]]:
    """The stages of ``roles`` on ``adapters`` (see the module doc), and the assembly
    that holds their parts."""
    assembly = Assembly(config, adapters, commissioning, wrap_singleton=wrap_singleton)
    return assembly, assembly.build(roles)


__all__ = [
    "ROLES",
    "Adapters",
    "Assembly",
    "build_stages",
    "distributed_adapters",
    "kafka_log",
    "local_adapters",
]
