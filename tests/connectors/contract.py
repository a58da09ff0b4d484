"""The contract every registered protocol connector passes.

Subclass :class:`ConnectorContract` as ``TestXxxContract`` in ``tests/connectors/<name>/``
and give it a ``peer`` fixture yielding a :class:`Peer`: a commissioning document with one
connection (``connection``) of the protocol against a real peer started by the fixture
(asyncua's server, pymodbus's server, Mosquitto, a drop directory; the simulator needs
none), and optionally ``produce``, which makes the peer send a reading (for protocols
that only report changes).

The suite checks the port's lifecycle (telegraf's inputs): the template and the document
validate and the connector is built and ``init``-ed without any I/O; ``start`` and
``stop`` are idempotent; the connection's state is reported as ResourceStatus events;
readings arrive through the publisher as TelemetryBatch events of the connector's source.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from millrace.connectors._common.base import ProtocolConnector
from millrace.connectors.commissioning import Commissioning, validate_document
from millrace.connectors.registry import ProtocolSpec, protocols
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.telemetry_columns import samples_of
from millrace.pipeline.topics import STATUS, TELEMETRY

CONNECTION = "contract"


@dataclass
class Peer:
    document: dict[str, Any]
    produce: Callable[[], Awaitable[None]] | None = None


def build(document: Mapping[str, Any], spool: Path | None) -> ProtocolConnector:
    """The connector of :data:`CONNECTION`, built as the manager builds it."""
    commissioning = _valid(document)
    connection = commissioning.connections[CONNECTION]
    cls = protocols()[connection.protocol].connector_class()
    return cls(
        CONNECTION,
        connection,
        commissioning.endpoints_of(CONNECTION),
        commissioning.mappings_of(CONNECTION),
        service=commissioning.service,
        spool_dir=spool,
        runner="contract-runner",
        status_interval_s=3600,
    )


def _valid(document: Mapping[str, Any]) -> Commissioning:
    result, violations = validate_document(dict(document))
    errors = [v.line() for v in violations if v.level == "error"]
    assert result is not None and not errors, errors
    return result


async def until(cond: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.05)
    assert cond(), what


class ConnectorContract:
    protocol: str = "?"

    @pytest.fixture
    async def peer(self, tmp_path: Path) -> AsyncIterator[Peer]:
        raise NotImplementedError
        yield

    @pytest.fixture
    async def connector(self, peer: Peer, tmp_path: Path) -> AsyncIterator[ProtocolConnector]:
        c = build(peer.document, tmp_path / "spool")
        try:
            yield c
        finally:
            await c.stop()

    @property
    def spec(self) -> ProtocolSpec:
        return protocols()[self.protocol]

    # -- validation, without I/O --------------------------------------------------------
    def test_protocol_is_registered(self, connector: ProtocolConnector) -> None:
        assert type(connector) is self.spec.connector_class()
        assert connector.protocol == self.protocol
        assert connector.resource_id == connector.source == f"{self.protocol}:{CONNECTION}"

    def test_validation_and_construction_do_no_io(
        self, peer: Peer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("I/O during validation or construction")

        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(socket, "create_connection", refuse)
        monkeypatch.setattr(asyncio, "open_connection", refuse)
        _valid(yaml.safe_load(self.spec.template))
        c = build(peer.document, None)
        c.init()
        assert c.state == ("stopped", "") and not c.connected
        assert c.snapshot()["desired_state"] == "stopped"

    def test_a_misspelt_key_is_a_violation_naming_it(self, peer: Peer) -> None:
        doc = yaml.safe_load(yaml.safe_dump(peer.document))
        doc["connections"][CONNECTION]["bogus_key"] = 1
        result, violations = validate_document(doc)
        assert result is None
        paths = [v.json_path for v in violations if v.level == "error"]
        assert f"$.connections.{CONNECTION}.bogus_key" in paths, paths

    # -- lifecycle ----------------------------------------------------------------------
    async def test_stop_before_start_is_a_no_op(self, connector: ProtocolConnector) -> None:
        await connector.stop()
        await connector.stop()
        assert connector.state == ("stopped", "")

    async def test_start_and_stop_are_idempotent(
        self, connector: ProtocolConnector, peer: Peer
    ) -> None:
        pub = MemoryEventPublisher()
        await connector.start(pub)
        tasks = list(connector._tasks)
        await connector.start(pub)  # a second start changes nothing
        assert connector._tasks == tasks
        await connector.wait_connected(20)
        await connector.stop()
        await connector.stop()
        assert connector.state == ("stopped", "") and not connector.connected
        assert all(t.done() for t in tasks)
        # and it starts again after a stop
        await connector.start(pub)
        await connector.wait_connected(20)
        assert connector.snapshot()["desired_state"] == "running"
        await connector.stop()

    async def test_state_is_reported(self, connector: ProtocolConnector) -> None:
        pub = MemoryEventPublisher()
        await connector.start(pub)
        await connector.wait_connected(20)

        def states() -> list[str]:
            return [
                e["current_state"]
                for k, e in pub.published.get(STATUS, [])
                if k == connector.resource_id
            ]

        await until(lambda: "running" in states(), "a running status")
        await connector.stop()
        events = [e for k, e in pub.published[STATUS] if k == connector.resource_id]
        assert states()[-1] == "stopped"
        assert states().index("running") > 0  # connecting first
        for e in events:
            assert e["resource_id"] == connector.resource_id
            assert e["resource_type"] == "connection"
            assert e["runner"] == "contract-runner"
            assert e["service_id"] == connector.service
            assert "readings" in e["metrics"]
        assert connector.snapshot()["current_state"] == "stopped"

    async def test_readings_are_published_as_telemetry_batches(
        self, connector: ProtocolConnector, peer: Peer
    ) -> None:
        pub = MemoryEventPublisher()
        await connector.start(pub)
        await connector.wait_connected(20)

        async def arrived() -> bool:
            if peer.produce is not None:
                await peer.produce()
            await asyncio.sleep(0.2)
            return bool(pub.published.get(TELEMETRY))

        async with asyncio.timeout(30):
            while not await arrived():
                pass
        await connector.stop()
        batches = pub.published[TELEMETRY]
        for key, batch in batches:
            assert key == batch["identity"]
            assert batch["source"] == connector.source
            assert samples_of(batch), batch
            for s in samples_of(batch):
                assert isinstance(s["ts_us"], int) and s["values"]
        readings = sum(len(s["values"]) for _, b in batches for s in samples_of(b))
        assert readings == connector.metrics()["readings"] > 0
        assert connector.metrics()["batches"] == len(batches)


def registered_folders(root: Path) -> set[str]:
    """The protocol folders under ``connectors/`` (``_common`` and the like excluded)."""
    return {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()} - {
        "_common"
    }
