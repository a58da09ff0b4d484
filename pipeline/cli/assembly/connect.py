"""The ``connect`` role's stages: the runner heartbeat, the connector manager (the
commissioning file's connections) and the command router. Connector data is checked
against the resource definitions in the store whenever the process has one."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from millrace.connectors.definitions import DefinitionCheckingPublisher
from millrace.connectors.manager import ConnectorManager, route_commands
from millrace.pipeline.cache import LastGoodCache
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.heartbeat import RunnerHeartbeat
from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.pipeline.runtime.stage import LoopStage, ServiceStage, Stage
from millrace.projections.definitions import definition_map

if TYPE_CHECKING:
    from millrace.pipeline.cli.assembly.facade import Assembly

log = logging.getLogger("millrace")


def connector_publisher(asm: Assembly) -> EventPublisher:
    """Connector data checked against the resource definitions in the store."""
    if asm.adapters.stores is None:
        log.warning(
            "no store (distributed.clickhouse_url): connector data is not checked "
            "against resource definitions"
        )
        return asm.publisher
    store = asm.store("read")

    async def load() -> dict[str, ResourceDefinition]:
        return await asyncio.to_thread(definition_map, store)

    # no definitions until the store answers once: connector data flows unchecked
    cache: LastGoodCache[dict[str, ResourceDefinition]] = LastGoodCache(load, 2.0, default={})
    return DefinitionCheckingPublisher(asm.publisher, cache.get)


def connect_stages(asm: Assembly) -> list[Stage]:
    """The role's stages, in start order; sets the assembly's heartbeat and manager."""
    checked = connector_publisher(asm)
    asm.heartbeat = heartbeat = RunnerHeartbeat(asm.publisher, asm.runner_name, 10.0)
    stages: list[Stage] = [
        LoopStage(
            "runner-heartbeat",
            heartbeat.run,
            stop_timeout_s=5.0,
            health=lambda: {"sent": heartbeat.sent},
        )
    ]
    spool = Path(asm.config.data_dir) / "spool"
    asm.manager = manager = ConnectorManager(asm.commissioning, spool_root=spool)

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
    if asm.distributed:
        # one group per host and service: every connect process sees every command
        group = f"millrace-connectors-{asm.commissioning.service}-{socket.gethostname()}"
    else:
        group = "millrace-connectors"

    async def route(stop: asyncio.Event) -> None:
        if asm.distributed and not len(manager):
            await stop.wait()  # no connections here: leave commands to the others
            return
        await route_commands(asm.log, manager, stop, asm.publisher, group=group)

    stages.append(LoopStage("command-router", route, stop_timeout_s=5.0))
    return stages
