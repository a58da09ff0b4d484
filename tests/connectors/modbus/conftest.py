"""Fixtures of the Modbus connector tests: real pymodbus servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from .peer import ModbusPeer


@pytest.fixture
async def peer_factory() -> AsyncIterator[Callable[..., Any]]:
    """Starts ModbusPeers and stops them at the end of the test."""
    peers: list[ModbusPeer] = []

    async def make(*a: Any, **kw: Any) -> ModbusPeer:
        p = ModbusPeer(*a, **kw)
        await p.start()
        peers.append(p)
        return p

    yield make
    for p in peers:
        await p.stop()
