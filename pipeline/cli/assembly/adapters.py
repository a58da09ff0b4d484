"""The adapters a deployment chooses: the event log, the projection stores (opened per
purpose) and the processor runtime. Constructing them does no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from millrace.pipeline.cli.config import MillraceConfig
from millrace.pipeline.errors import ConfigError
from millrace.pipeline.log.base import EventLog
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.log.local.upkeep import LogUpkeep
from millrace.pipeline.runtime.stage import Stage
from millrace.projections.store.base import ProjectionStore

Role = Literal["connect", "process", "api"]
ROLES: tuple[Role, ...] = ("connect", "process", "api")
#: what a store is opened for: the sink's writes, API reads, analyst SQL, checkpoints
Purpose = Literal["pipeline", "read", "analyst", "checkpoints", "tasks", "replay"]
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
        # two: the fold worker's store reads (pipeline.runtime.ahead) run beside inserts
        return ChdbStore(path, sessions=2, settings=PIPELINE_SETTINGS)

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
