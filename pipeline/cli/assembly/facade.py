"""The ``Assembly``: the parts of one process and the stages its roles run as (the
role builders are ``process``, ``connect`` and ``api`` beside this module)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

# the role modules (``process``, ``connect``, ``api``, ``operations``) are imported where
# a role's stages are built: a process role does not load FastAPI, nor the connectors
from millrace.pipeline.cli.assembly import heartbeat, settings
from millrace.pipeline.cli.assembly.adapters import CONSUMERS, ROLES, Adapters, Purpose, Role
from millrace.pipeline.clock import now_us
from millrace.pipeline.codec import default_codec
from millrace.pipeline.errors import ConfigError
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.progress import (
    AppliedWaiter,
    Positions,
    behind,
    runtime_positions,
    sink_positions,
)
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.gc_policy import GcStage
from millrace.pipeline.runtime.stage import Stage

if TYPE_CHECKING:
    from millrace.api.auth import KeyStore
    from millrace.api.context import AppContext
    from millrace.api.remote import RemoteFigures
    from millrace.api.stream import LogTail, StreamHub
    from millrace.api.users.access import AccessControl
    from millrace.connectors.commissioning import Commissioning
    from millrace.connectors.manager import ConnectorManager
    from millrace.pipeline.alarms.runner import AlarmRunner
    from millrace.pipeline.alarms.seeding import ConfigRuleSeeder
    from millrace.pipeline.archive.archiver import Archiver
    from millrace.pipeline.archive.store import ArchiveStore
    from millrace.pipeline.cli.config import MillraceConfig
    from millrace.pipeline.heartbeat import RunnerHeartbeat
    from millrace.pipeline.runtime.config_follow import RuntimeSetting
    from millrace.pipeline.runtime.embedded import EmbeddedRuntime
    from millrace.pipeline.runtime.executors import OwnThreads
    from millrace.pipeline.tasks import TaskRunner
    from millrace.projections.store.base import ProjectionStore
    from millrace.projections.watch_queries import IdentityWatch


def _identity(stage: Stage) -> Stage:
    return stage


class Assembly:
    """The parts of one process and the stages they run as (see the package doc).

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
        if commissioning is None:
            from millrace.connectors.commissioning import Commissioning

            commissioning = Commissioning()
        self.commissioning = commissioning
        self.wrap_singleton = wrap_singleton
        self.runner_name = runner_name or config.runner_name or socket.gethostname()
        self.codec = default_codec()
        self.publisher = LogPublisher(self.log, self.codec)
        self.distributed = adapters.runtime == "faust"
        self._stores: dict[str, ProjectionStore] = {}
        self.runtime: EmbeddedRuntime | None = None
        self.faust_app: Any = None
        self.alarms: AlarmRunner | None = None
        self.seeder: ConfigRuleSeeder | None = None
        self.watch: IdentityWatch | None = None
        self.tasks: TaskRunner | None = None
        self.archiver: Archiver | None = None
        self._archive_store: ArchiveStore | None = None
        self.manager: ConnectorManager | None = None
        self.heartbeat: RunnerHeartbeat | None = None
        self.stream_hub: StreamHub | None = None
        self.stream_tail: LogTail | None = None
        self.sql_threads: OwnThreads | None = None
        self.keys: KeyStore | None = None
        self.access: AccessControl | None = None
        #: the workers' figures, in an API process without a runtime (distributed)
        self.remote: RemoteFigures | None = None
        #: the runtime settings of this process (``assembly.settings``)
        self.settings: dict[str, RuntimeSetting] = {}
        self.stages: list[Stage] = []
        #: the roles this process runs (set by :meth:`build`)
        self.roles: set[Role] = set()
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

    def archive_store(self) -> ArchiveStore | None:
        """The archive store of ``archive.url`` (opened once; no I/O), or None."""
        cfg = self.config.archive
        if self._archive_store is None and cfg.url:
            from millrace.pipeline.archive.store import ArchiveStore

            self._archive_store = ArchiveStore(cfg.url, cfg.storage_options)
        return self._archive_store

    # -- read-your-writes --------------------------------------------------------------

    @property
    def wait_applied(self) -> AppliedWaiter:
        """Waits on the sink's committed progress (``pipeline.progress``): through the
        in-process runtime when there is one, else the progress the store holds."""
        if self._waiter is None:
            from millrace.pipeline.processors.catalog import processors
            from millrace.projections.writer import ProjectionWriter

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
        self.roles = wanted
        # first: the runtime settings on the log are in force before anything runs
        stages: list[Stage] = [settings.config_stage(self)]
        # a role's module is imported only when the role runs here (``api`` loads FastAPI)
        if "process" in wanted:
            from millrace.pipeline.cli.assembly import process

            stages += process.process_stages(self)
        stages += self.adapters.stages()
        if "api" in wanted:
            from millrace.pipeline.cli.assembly import api

            stages.append(api.stream_stage(self))
        if wanted & {"connect", "process"}:  # this process's sign of life (and figures)
            stages.append(heartbeat.heartbeat_stage(self))
        if "connect" in wanted:
            from millrace.pipeline.cli.assembly import connect

            stages += connect.connect_stages(self)
        if "api" in wanted:
            stages.append(api.api_stage(self))
        if "process" in wanted:  # last: it freezes what the stages before it built
            stages.append(GcStage(self.config.runtime.gc))
        self.stages = [self.wrap_singleton(s) if s.singleton else s for s in stages]
        return self.stages

    # -- the API's view ----------------------------------------------------------------

    def key_store(self) -> KeyStore:
        from millrace.pipeline.cli.assembly import api

        return api.key_store(self)

    def status(self) -> dict[str, Any]:
        """``GET /status``: the in-process runtime's figures, or the distributed ones."""
        archive = {"archive": self.archiver.health()} if self.archiver is not None else {}
        if self.runtime is None or self.alarms is None:
            remote = self.remote.status() if self.remote is not None else {}
            return {
                "mode": "distributed",
                "published": self.publisher.published,
                **archive,
                **remote,
            }
        from millrace.pipeline.cli.assembly import operations

        manager = self.manager.snapshot() if self.manager is not None else []
        return {
            **archive,
            "started_us": self.started_us,
            "lag_records": self.lag(),
            "alarm_lag_records": operations.alarm_lag(self),
            "paused": self.runtime.suspended,
            "runtime": asdict(self.runtime.stats),
            "alarms": asdict(self.alarms.stats),
            "published": self.publisher.published,
            "connectors": manager,
        }

    def app_context(self) -> AppContext:
        from millrace.pipeline.cli.assembly import api

        return api.app_context(self)

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
    """The stages of ``roles`` on ``adapters`` (see the package doc), and the assembly
    that holds their parts."""
    assembly = Assembly(config, adapters, commissioning, wrap_singleton=wrap_singleton)
    return assembly, assembly.build(roles)
