"""The connector contract for ``protocol: simulator`` (no peer needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.connectors.contract import CONNECTION, ConnectorContract, Peer


class TestSimulatorContract(ConnectorContract):
    protocol = "simulator"

    @pytest.fixture
    async def peer(self, tmp_path: Path) -> AsyncIterator[Peer]:
        yield Peer(
            {
                "service": "contract",
                "connections": {
                    CONNECTION: {
                        "protocol": "simulator",
                        "devices": 3,
                        "signals": 4,
                        "interval_ms": 50,
                        "batch_ms": 50,
                    }
                },
            }
        )
