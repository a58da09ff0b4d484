"""The connector contract for ``protocol: mqtt`` (Mosquitto)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from tests.connectors.contract import CONNECTION, ConnectorContract, Peer

from .conftest import Broker


class TestMqttContract(ConnectorContract):
    protocol = "mqtt"

    @pytest.fixture
    async def peer(self, tmp_path: Path, mosquitto: Broker) -> AsyncIterator[Peer]:
        topic = f"contract/{tmp_path.name}"

        async def produce() -> None:
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
                await client.publish(f"{topic}/h7/humidity", b"41.5", qos=1)

        yield Peer(
            {
                "service": "contract",
                "connections": {
                    CONNECTION: {
                        "protocol": "mqtt",
                        "host": "127.0.0.1",
                        "port": mosquitto.port,
                        "batch_ms": 50,
                    }
                },
                "endpoints": [
                    {
                        "connection": CONNECTION,
                        "identity": "{2}",
                        "signal": "humidity",
                        "topic": f"{topic}/+/humidity",
                    }
                ],
            },
            produce,
        )
