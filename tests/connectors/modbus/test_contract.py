"""The connector contract for ``protocol: modbus`` (pymodbus's server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pymodbus.simulator import DataType, SimData

from tests.connectors.contract import CONNECTION, ConnectorContract, Peer


class TestModbusContract(ConnectorContract):
    protocol = "modbus"

    @pytest.fixture
    async def peer(self, tmp_path: Path, peer_factory: Callable[..., Any]) -> AsyncIterator[Peer]:
        server = await peer_factory(
            holding=[SimData(0, values=[1234, 7, 0, 0], datatype=DataType.REGISTERS)]
        )
        yield Peer(
            {
                "service": "contract",
                "connections": {
                    CONNECTION: {
                        "protocol": "modbus",
                        "host": "127.0.0.1",
                        "port": server.port,
                        "batch_ms": 50,
                        "reconnect": {"initial_ms": 100, "max_ms": 1000},
                    }
                },
                "endpoints": [
                    {
                        "connection": CONNECTION,
                        "identity": "press-1",
                        "signal": "strokes",
                        "register": "holding",
                        "address": 0,
                        "data_type": "uint16",
                        "interval_ms": 100,
                    }
                ],
            }
        )
