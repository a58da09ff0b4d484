"""The ``connect`` role's stages: the connector manager (the
commissioning file's connections), the services, the command router and, where the API
runs in another process, the connector control that follows the audit topic
(``connectors.control``). Connector data is checked against the resource definitions
in the store whenever the process has one."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from millrace.connectors.commissioning import Commissioning
from millrace.connectors.control import apply_control, is_connector_control
from millrace.connectors.definitions import DefinitionCheckingPublisher
from millrace.connectors.manager import ConnectorManager, route_commands
from millrace.connectors.services import ServiceApplier, service_text
from millrace.pipeline.cache import LastGoodCache
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.pipeline.runtime.control_follow import AuditFollower
from millrace.pipeline.runtime.stage import LoopStage, ServiceStage, Stage
from millrace.pipeline.services.follow import ServiceFollower
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


def static_part(commissioning: Commissioning) -> Commissioning:
    """The connections that are not the file's service (the ``simulator:`` section):
    they run as they are; the file's own ones run as a service (``services`` stage)."""
    if commissioning.document is None:
        return commissioning
    own = commissioning.document.get("connections") or {}
    rest = {n: c for n, c in commissioning.connections.items() if n not in own}
    return replace(commissioning, connections=rest)


def connect_stages(asm: Assembly) -> list[Stage]:
    """The role's stages, in start order; sets the assembly's manager."""
    checked = connector_publisher(asm)
    stages: list[Stage] = []
    spool = Path(asm.config.data_dir) / "spool"
    asm.manager = manager = ConnectorManager(static_part(asm.commissioning), spool_root=spool)

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
    # the file's service and those installed through the API, at runtime
    text = service_text(asm.commissioning)
    doc = asm.commissioning.document or {}
    follower = ServiceFollower(
        asm.log,
        asm.codec,
        asm.publisher,
        ServiceApplier(manager, asm.runner_name),
        initial=(asm.commissioning.service, text, str(doc.get("description") or ""))
        if text is not None
        else None,
        actor=f"runner:{asm.runner_name}",
    )
    stages.append(LoopStage("services", follower.run, stop_timeout_s=10.0, health=follower.health))
    if asm.distributed:
        # one group per runner (the host name by default) and service: every connect
        # process sees every command
        group = f"millrace-connectors-{asm.commissioning.service}-{asm.runner_name}"
    else:
        group = "millrace-connectors"

    async def route(stop: asyncio.Event) -> None:
        await route_commands(asm.log, manager, stop, asm.publisher, group=group)

    stages.append(LoopStage("command-router", route, stop_timeout_s=5.0))
    if "api" not in asm.roles:
        # the API of another process controls the connectors through the log; an API
        # of this process acts on the manager itself
        control = AuditFollower(asm.log, is_connector_control, apply_control(manager), asm.codec)
        stages.append(
            LoopStage("connector-control", control.run, health=lambda: {"applied": control.handled})
        )
    return stages
