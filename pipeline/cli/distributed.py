"""The distributed deployment's processes: ``millrace connect`` (connectors producing
to Kafka) and ``millrace api`` (the API over a ClickHouse server, writes to Kafka).
Part of the composition root."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

from api.auth import KeyStore
from api.context import ApiSettings, AppContext
from api.limits import RequestLimits
from connectors.commissioning import Commissioning
from connectors.manager import ConnectorManager, route_commands
from connectors.simulator import SimulatorConnector
from pipeline.cli.config import MillraceConfig
from pipeline.connector import Connector
from pipeline.errors import ConfigError
from pipeline.log.kafka import KafkaEventLog, KafkaLogConfig
from pipeline.publisher import LogPublisher
from pipeline.runtime.executors import OwnThreads

log = logging.getLogger("millrace")


def kafka_log(cfg: MillraceConfig) -> KafkaEventLog:
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


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_connect(
    cfg: MillraceConfig,
    stop: asyncio.Event | None = None,
    commissioning: Commissioning | None = None,
) -> None:
    """Connectors only, producing to Kafka, until SIGINT/SIGTERM (or ``stop``).

    The commissioning file's connections run under a ConnectorManager (store-and-
    forward under ``data_dir/spool``) and Commands for their endpoints are followed on
    the ``commands`` topic under a consumer group of this host and service.
    """
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    event_log = kafka_log(cfg)
    await event_log.start()
    connectors: list[Connector] = []
    if cfg.simulator.devices > 0:
        connectors.append(SimulatorConnector(cfg.simulator))
    commissioning = commissioning or Commissioning()
    manager = ConnectorManager(commissioning, spool_root=Path(cfg.data_dir) / "spool")
    publisher = LogPublisher(event_log)
    router = None
    try:
        for c in connectors:
            c.init()
            await c.start(publisher)
        await manager.start(publisher)
        if len(manager):
            group = f"millrace-connectors-{commissioning.service}-{socket.gethostname()}"
            router = asyncio.create_task(
                route_commands(event_log, manager, stop, publisher, group=group)
            )
        log.info(
            "millrace connect: %d connector(s) producing to Kafka",
            len(connectors) + len(manager),
        )
        await stop.wait()
    finally:
        for c in connectors:
            await c.stop()
        await manager.stop()
        if router is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(router, 5)
        await event_log.close()


async def run_api(cfg: MillraceConfig, stop: asyncio.Event | None = None) -> None:
    """The API over a ClickHouse server; ingest and other writes go to Kafka."""
    from api.app import create_app
    from api.server import build_server
    from projections.store.clickhouse import ClickHouseServerStore

    if not cfg.distributed.clickhouse_url:
        raise ConfigError("set MILLRACE_CLICKHOUSE_URL (or distributed.clickhouse_url)")
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    event_log = kafka_log(cfg)
    await event_log.start()
    store = ClickHouseServerStore(
        cfg.distributed.clickhouse_url,
        pool_size=cfg.api.read_sessions,
        cluster=cfg.distributed.clickhouse_cluster,
    )
    # analyst SQL on connections and threads of its own: no API read waits for them
    analyst_store = ClickHouseServerStore(
        cfg.distributed.clickhouse_url,
        pool_size=cfg.api.sql_sessions,
        cluster=cfg.distributed.clickhouse_cluster,
    )
    sql_threads = OwnThreads("millrace-sql", cfg.api.sql_sessions)
    Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
    keys = KeyStore(Path(cfg.data_dir) / "api_keys.json", os.environ.get("MILLRACE_API_KEY"))
    publisher = LogPublisher(event_log)

    def status() -> dict[str, Any]:
        return {"mode": "distributed", "published": publisher.published}

    from api.stream import LogTail, StreamHub
    from pipeline.codec import default_codec

    hub = StreamHub(
        max_streams=cfg.api.stream_max_connections,
        max_streams_per_owner=cfg.api.stream_max_per_key,
    )
    # Kafka offset requests cross the network: poll the ends less often
    tail = LogTail(event_log, default_codec(), hub, poll_s=0.5)
    ctx = AppContext(
        stream=hub,
        store=store,
        publisher=publisher,
        keys=keys,
        settings=ApiSettings(
            max_batch_samples=cfg.ingest.max_batch_samples,
            max_batch_readings=cfg.ingest.max_batch_readings,
            limits=RequestLimits.of(cfg.api, cfg.ingest),
            strict_signals=cfg.ingest.strict_signals,
            known_signals=frozenset(cfg.ingest.signals),
            **cfg.api.sql_limits(),
        ),
        status=status,
        registry=cfg.identities,
        analyst_store=analyst_store,
        sql_executor=sql_threads.executor,
    )
    server = build_server(create_app(ctx), cfg.api.host, cfg.api.port, cfg.api.server)
    task = asyncio.create_task(server.serve())
    tail_task = asyncio.create_task(tail.run(stop), name="stream-tail")
    try:
        await stop.wait()
    finally:
        hub.close()  # ends open event streams, or uvicorn waits on them
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(tail_task, 5)
        with contextlib.suppress(Exception):
            await task
        sql_threads.shutdown(wait=False, cancel_futures=True)
        store.close()
        analyst_store.close()
        await event_log.close()


async def run_process(cfg: MillraceConfig, stop: asyncio.Event | None = None) -> None:
    """A faust worker folding Kafka into the projections: a ClickHouse server when
    MILLRACE_CLICKHOUSE_URL is set (any number of workers), else chDB in ``data_dir``
    (one worker). Partitions are the unit of parallelism."""
    from pipeline.cli.engine import processors
    from pipeline.runtime.faust_runtime import FaustRuntimeConfig, build_app
    from projections.migrations import migrate
    from projections.store.base import ProjectionStore
    from projections.writer import ProjectionWriter

    d = cfg.distributed
    if not d.kafka_bootstrap:
        raise ConfigError("set MILLRACE_KAFKA_BOOTSTRAP (or distributed.kafka_bootstrap)")
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    store: ProjectionStore
    if d.clickhouse_url:
        from projections.store.clickhouse import ClickHouseServerStore

        store = ClickHouseServerStore(d.clickhouse_url, cluster=d.clickhouse_cluster)
    else:
        from projections.store.chdb import ChdbStore

        store = ChdbStore(Path(cfg.data_dir) / "chdb")
    migrate(store, cluster=d.clickhouse_cluster if d.clickhouse_url else None)
    writer = ProjectionWriter(store)
    app = build_app(
        FaustRuntimeConfig(
            bootstrap=d.kafka_bootstrap,
            topic_prefix=d.topic_prefix,
            max_records=cfg.runtime.max_records,
            datadir=str(Path(cfg.data_dir) / "faust"),
        ),
        lambda: writer,
        processors(),
    )
    await app.start()
    log.info("millrace process: faust worker consuming from %s", d.kafka_bootstrap)
    try:
        await stop.wait()
    finally:
        await app.stop()
        store.close()
