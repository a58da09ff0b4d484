"""The connector contract for ``protocol: opcua`` (asyncua's server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asyncua import ua

from tests.connectors.contract import CONNECTION, ConnectorContract, Peer

from .conftest import OpcServer, free_port


class TestOpcUaContract(ConnectorContract):
    protocol = "opcua"

    @pytest.fixture
    async def peer(self, tmp_path: Path) -> AsyncIterator[Peer]:
        server = await OpcServer(
            free_port(), {"Temp": (21.5, ua.VariantType.Double, False)}
        ).start()
        try:
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
        finally:
            await server.stop()
