"""The connector contract for ``protocol: opcua`` (asyncua's server)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asyncua import ua

from tests.connectors.contract import CONNECTION, ConnectorContract, Peer

from .conftest import OpcServer, free_port


@pytest.fixture(scope="class")
def server() -> Iterator[OpcServer]:
    """One server for the class, on an event loop of its own (a thread): asyncua builds
    its whole standard address space at every start, which was most of this class's
    time when each test started a server. The tests only read ``Temp`` from it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    srv = OpcServer(free_port(), {"Temp": (21.5, ua.VariantType.Double, False)})
    try:
        run(srv.start())
        yield srv
        run(srv.stop())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class TestOpcUaContract(ConnectorContract):
    protocol = "opcua"

    @pytest.fixture
    async def peer(self, server: OpcServer) -> AsyncIterator[Peer]:
        yield Peer(
            {
                "service": "contract",
                "connections": {
                    CONNECTION: {"protocol": "opcua", "url": server.url, "batch_ms": 50}
                },
                "endpoints": [
                    {
                        "connection": CONNECTION,
                        "identity": "press-1",
                        "signal": "temp",
                        "node_id": "ns=2;s=Temp",
                        "interval_ms": 100,
                    }
                ],
            }
        )
