"""The distributed deployment's processes, one role each (``pipeline.cli.assembly``):
``millrace connect`` (connectors producing to Kafka), ``millrace process`` (a faust
worker folding Kafka into the projections, and the singleton stages) and ``millrace
api`` (the API over a ClickHouse server, writes to Kafka). Part of the composition root.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from millrace.connectors.commissioning import Commissioning
from millrace.pipeline.cli.assembly import Adapters, Assembly, Role, distributed_adapters, kafka_log
from millrace.pipeline.cli.config import MillraceConfig
from millrace.pipeline.log.kafka import KafkaEventLog
from millrace.pipeline.runtime.stage import Stage, run_stages

log = logging.getLogger("millrace")

__all__ = ["kafka_log", "run_api", "run_connect", "run_process", "run_role"]

#: wraps a singleton stage so that it runs only while this process leads
#: (``pipeline.runtime.singleton``); identity: every process runs it
SingletonWrapper = Callable[[Stage], Stage]


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def _no_wrap(stage: Stage) -> Stage:
    return stage


async def run_role(
    role: Role,
    cfg: MillraceConfig,
    adapters: Adapters,
    stop: asyncio.Event | None = None,
    commissioning: Commissioning | None = None,
    wrap_singleton: SingletonWrapper = _no_wrap,
) -> None:
    """Run ``role``'s stages on ``adapters`` until SIGINT/SIGTERM (or ``stop``)."""
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    assembly = Assembly(cfg, adapters, commissioning, wrap_singleton=wrap_singleton)
    stages = assembly.build([role])
    if isinstance(adapters.log, KafkaEventLog):
        await adapters.log.start()
    try:
        if role == "process":
            from millrace.projections.migrations import migrate

            cluster = cfg.distributed.clickhouse_cluster if cfg.distributed.clickhouse_url else None
            await asyncio.to_thread(migrate, assembly.store("pipeline"), cluster=cluster)
        if role == "api":
            Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
        log.info("millrace %s: %s", role, ", ".join(s.name for s in stages))
        await run_stages(stages, stop)
    finally:
        assembly.close()
        await adapters.log.close()


async def run_connect(
    cfg: MillraceConfig,
    stop: asyncio.Event | None = None,
    commissioning: Commissioning | None = None,
    wrap_singleton: SingletonWrapper = _no_wrap,
) -> None:
    """Connectors only, producing to Kafka. The commissioning file's connections run
    under a ConnectorManager (store-and-forward under ``data_dir/spool``); Commands for
    their endpoints are followed on the ``commands`` topic under a consumer group of
    this host and service. With ``distributed.clickhouse_url``, connector data is
    checked against the resource definitions as in ``millrace run``."""
    adapters = distributed_adapters(cfg, store="optional")
    await run_role("connect", cfg, adapters, stop, commissioning, wrap_singleton)


async def run_api(
    cfg: MillraceConfig,
    stop: asyncio.Event | None = None,
    wrap_singleton: SingletonWrapper = _no_wrap,
) -> None:
    """The API over a ClickHouse server; ingest and other writes go to Kafka;
    read-your-writes waits on the progress the process role commits to the store."""
    adapters = distributed_adapters(cfg, store="required")
    await run_role("api", cfg, adapters, stop, None, wrap_singleton)


async def run_process(
    cfg: MillraceConfig,
    stop: asyncio.Event | None = None,
    wrap_singleton: SingletonWrapper | None = None,
) -> None:
    """A faust worker folding Kafka into the projections: a ClickHouse server when
    MILLRACE_CLICKHOUSE_URL is set (any number of workers), else chDB in ``data_dir``
    (one worker). Partitions are the unit of parallelism. Beside it the singleton
    stages: the alarm runner, the file's alarm rules and the identity watch, each run
    by one process of the role at a time (a Kafka leader group per stage, with
    failover: ``pipeline.runtime.singleton``)."""
    adapters = distributed_adapters(cfg, store="chdb")
    if wrap_singleton is None:
        from millrace.pipeline.log.kafka import KafkaEventLog
        from millrace.pipeline.runtime.singleton import kafka_singleton_wrapper

        assert isinstance(adapters.log, KafkaEventLog)
        wrap_singleton = kafka_singleton_wrapper(
            adapters.log.config, session_timeout_s=cfg.distributed.leader_session_timeout_s
        )
    await run_role("process", cfg, adapters, stop, None, wrap_singleton)
