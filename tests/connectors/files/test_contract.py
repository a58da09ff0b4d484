"""The connector contract for ``protocol: files`` (a real drop directory)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.connectors.contract import CONNECTION, ConnectorContract, Peer


class TestFilesContract(ConnectorContract):
    protocol = "files"

    @pytest.fixture
    async def peer(self, tmp_path: Path) -> AsyncIterator[Peer]:
        drop = tmp_path / "drop"
        drop.mkdir()
        n = itertools.count()

        async def produce() -> None:
            i = next(n)
            (drop / f"oven-{i}.csv").write_text(
                f"ts,zone1\n2026-01-01T00:{i % 60:02d}:00Z,{180 + i}\n"
            )

        yield Peer(
            {
                "service": "contract",
                "connections": {
                    CONNECTION: {
                        "protocol": "files",
                        "directory": str(drop),
                        "poll_ms": 50,
                        "settle_ms": 50,
                        "batch_ms": 50,
                        "csv": {
                            "separator": ",",
                            "timestamp": ["ts"],
                            "timestamp_format": "iso8601",
                            "identity": "oven-1",
                        },
                    }
                },
            },
            produce,
        )
