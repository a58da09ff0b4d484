"""ConnectorManager: the connectors a commissioning file names, run together.

Builds one :class:`ProtocolConnector` per enabled connection (each with its own
store-and-forward directory), starts and stops them, routes Command events to the
connector that can write the target, and gives the API their state and metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from millrace.connectors._common.base import ProtocolConnector
from millrace.connectors.commissioning import Commissioning
from millrace.connectors.registry import protocols
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.errors import ConnectorError

log = logging.getLogger("millrace.connectors")


class ConnectorManager:
    def __init__(
        self,
        commissioning: Commissioning,
        spool_root: Path | None = None,
        runner: str | None = None,
    ) -> None:
        self.commissioning = commissioning
        self.spool_root, self.runner = spool_root, runner
        self.connectors: dict[str, ProtocolConnector] = {}
        #: connection name -> (its service, fingerprint of its configuration)
        self.owners: dict[str, tuple[str, str]] = {}
        self._publisher: EventPublisher | None = None
        self._lock = asyncio.Lock()
        # the connections given at construction run for no service: services never
        # stop them (``apply_service``)
        for name, c in self._build(commissioning).items():
            self.connectors[name] = c
            self.owners[name] = ("", fingerprint(commissioning, name))
        self._seen_commands: dict[str, None] = {}

    def _build(self, commissioning: Commissioning) -> dict[str, ProtocolConnector]:
        """A connector per enabled connection (constructors do no I/O)."""
        specs = protocols()
        out: dict[str, ProtocolConnector] = {}
        for name, conn in commissioning.connections.items():
            if not conn.enabled:
                continue
            cls = specs[conn.protocol].connector_class()
            out[name] = cls(
                name,
                conn,
                commissioning.endpoints_of(name),
                commissioning.mappings_of(name),
                service=commissioning.service,
                spool_dir=self.spool_root / name if self.spool_root is not None else None,
                runner=self.runner,
            )
        return out

    async def apply_service(
        self, service: str, commissioning: Commissioning | None, *, disabled: bool = False
    ) -> list[ProtocolConnector]:
        """Run ``commissioning``'s connections as ``service``'s (None: none of them).

        Only connections whose configuration changed (their own settings, endpoints or
        mappings) restart; the others keep running. A connection name another service
        runs here is left to it (logged). Returns the connectors stopped and not
        restarted; with ``disabled`` their resources report desired and current state
        ``disabled`` (not a deviation)."""
        async with self._lock:
            wanted = self._build(commissioning) if commissioning is not None else {}
            prints = {n: fingerprint(commissioning, n) for n in wanted} if commissioning else {}
            for name in list(wanted):
                owner = self.owners.get(name)
                if owner is not None and owner[0] != service:
                    log.error(
                        "service %s: connection %r already runs for service %s",
                        service,
                        name,
                        owner[0],
                    )
                    del wanted[name]
            mine = [n for n, (svc, _) in self.owners.items() if svc == service]
            stop = [n for n in mine if n not in wanted or self.owners[n][1] != prints[n]]
            stopped = [self.connectors.pop(n) for n in stop]
            for n in stop:
                del self.owners[n]
            await asyncio.gather(*(c.stop() for c in stopped))
            gone = [c for c in stopped if c.name not in wanted]
            if disabled and self._publisher is not None:
                for c in gone:
                    await publish_disabled(self._publisher, c)
            for name, c in wanted.items():
                if name in self.owners:
                    continue  # unchanged: keeps polling
                self.connectors[name] = c
                self.owners[name] = (service, prints[name])
                if self._publisher is not None:
                    await c.start(self._publisher)
            return gone

    def __len__(self) -> int:
        return len(self.connectors)

    async def start(self, publisher: EventPublisher) -> None:
        self._publisher = publisher
        for c in list(self.connectors.values()):
            await c.start(publisher)

    async def stop(self) -> None:
        self._publisher = None
        await asyncio.gather(*(c.stop() for c in list(self.connectors.values())))

    async def control(self, name: str, action: str) -> dict[str, Any] | None:
        """``start``, ``stop`` or ``restart`` connector ``name`` (an operator's action;
        a service update or enable starts it again); its snapshot after, None when this
        process has no connector of that name."""
        async with self._lock:
            c = self.connectors.get(name)
            if c is None:
                return None
            if action in ("stop", "restart"):
                await c.stop()
            if action in ("start", "restart") and self._publisher is not None:
                await c.start(self._publisher)
            return c.snapshot()

    def snapshot(self) -> list[dict[str, Any]]:
        return [c.snapshot() for c in self.connectors.values()]

    async def dispatch(self, command: dict[str, Any]) -> str | None:
        """Write a Command to the connector that handles its target.

        Returns the connector name, or None when no connector of this process can
        write it (another ``millrace connect`` may). A replayed command id is ignored.
        """
        cid = command.get("command_id", "")
        if cid in self._seen_commands:
            return None
        self._seen_commands[cid] = None
        if len(self._seen_commands) > 100_000:
            self._seen_commands.pop(next(iter(self._seen_commands)))
        expires = command.get("expires_us")
        for name, c in list(self.connectors.items()):
            if c.handles(command["identity"], command["resource"]):
                if expires is not None and c.now_us() > expires:
                    log.warning("command %s expired before it was written", cid)
                    return None
                try:
                    await c.execute(command)
                except ConnectorError as exc:
                    log.warning("command %s failed: %s", cid, exc)
                return name
        return None


def fingerprint(commissioning: Commissioning, name: str) -> str:
    """A connection's configuration as text: equal texts run the same connector."""
    parts = {
        "service": commissioning.service,
        "connection": commissioning.connections[name].model_dump(mode="json"),
        "endpoints": [e.model_dump(mode="json") for e in commissioning.endpoints_of(name)],
        "mappings": [m.model_dump(mode="json") for m in commissioning.mappings_of(name)],
    }
    return json.dumps(parts, sort_keys=True, default=str)


async def publish_disabled(publisher: EventPublisher, connector: ProtocolConnector) -> None:
    """The connection's resource as its service left it: desired = current = disabled."""
    from millrace.pipeline.events import status_event
    from millrace.pipeline.topics import STATUS

    event = status_event(
        connector.resource_id,
        service_id=connector.service,
        resource_type="connection",
        desired_state="disabled",
        current_state="disabled",
        info="service disabled",
        runner=connector.runner,
        ts_us=connector.now_us(),
    )
    await publisher.publish(STATUS, [(connector.resource_id, event)])


async def route_commands(
    event_log: Any,
    manager: ConnectorManager,
    stop: asyncio.Event,
    publisher: EventPublisher | None = None,
    group: str = "millrace-connectors",
    idle_s: float = 0.2,
) -> None:
    """Follow the ``commands`` topic and hand each Command to ``manager``.

    Offsets are committed per partition after dispatch under ``group``, so a restart
    resumes after the last routed command; a replayed one is ignored by its id. A
    Command that cannot be decoded goes to ``deadletter``.
    """
    from millrace.pipeline.codec import default_codec
    from millrace.pipeline.errors import DecodeError
    from millrace.pipeline.events import dead_letter
    from millrace.pipeline.log.base import TopicPartition
    from millrace.pipeline.topics import COMMANDS, DEADLETTER

    codec = default_codec()
    tps = [TopicPartition(COMMANDS, p) for p in range(event_log.partitions(COMMANDS))]
    positions = {tp: (await event_log.committed(group, tp)) or 0 for tp in tps}
    while not stop.is_set():
        busy = False
        for tp in tps:
            records = await event_log.read(tp.topic, tp.partition, positions[tp], 500)
            if not records:
                continue
            busy = True
            for r in records:
                try:
                    command = codec.decode(COMMANDS, r.value)
                except DecodeError as exc:
                    log.warning("undecodable command at %s/%d@%d", tp.topic, tp.partition, r.offset)
                    if publisher is not None:
                        dl = dead_letter(
                            source_topic=tp.topic,
                            source_partition=tp.partition,
                            source_offset=r.offset,
                            key=r.key,
                            payload=r.value,
                            reason=str(exc),
                            error_type=type(exc).__name__,
                            stage="command",
                            ts_us=r.timestamp_us,
                        )
                        await publisher.publish(DEADLETTER, [(str(r.key or b""), dl)])
                    continue
                await manager.dispatch(dict(command))
            positions[tp] = records[-1].offset + 1
            await event_log.commit(group, {tp: positions[tp]})
        if not busy:
            try:
                await asyncio.wait_for(stop.wait(), idle_s)
            except TimeoutError:
                pass
