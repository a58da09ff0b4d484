"""A real Modbus TCP server (pymodbus's own) on 127.0.0.1, and helpers to observe what a
connector published."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from millrace.connectors._common.base import ProtocolConnector
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.telemetry_columns import samples_of

#: function code -> register kind, to count the requests the server received
FUNCTION_KINDS = {
    1: "coil",
    2: "discrete",
    3: "holding",
    4: "input",
    5: "coil",
    15: "coil",
    16: "holding",
}


class ModbusPeer:
    """pymodbus's TCP server over a fixed register map (device id 0 answers every unit
    id), restartable on the same port; counts the requests it receives."""

    def __init__(
        self,
        holding: list[SimData],
        inputs: list[SimData] | None = None,
        coils: list[bool] | None = None,
        discrete: list[bool] | None = None,
    ) -> None:
        self.blocks = (
            [SimData(0, values=coils or [False] * 16, datatype=DataType.BITS)],
            [SimData(0, values=discrete or [False] * 16, datatype=DataType.BITS)],
            holding,
            inputs or [SimData(0, values=[0] * 8, datatype=DataType.REGISTERS)],
        )
        self.requests: list[tuple[int, int, int]] = []  # (function code, address, count)
        self.server: ModbusTcpServer | None = None
        self.port = 0

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.append((pdu.function_code, pdu.address, pdu.count))
        return pdu

    async def start(self) -> None:
        device = SimDevice(0, simdata=self.blocks)
        self.server = ModbusTcpServer(
            device, address=("127.0.0.1", self.port), trace_pdu=self._trace
        )
        await self.server.serve_forever(background=True)
        assert self.server.transport is not None
        self.port = self.server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
            await asyncio.sleep(0)  # let the transports close

    async def set(self, function_code: int, address: int, values: list[int] | list[bool]) -> None:
        """Change values as the device's own logic would (3: holding, 4: input, 1: coils)."""
        assert self.server is not None
        await self.server.async_setValues(0, function_code, address, values)

    async def get(self, function_code: int, address: int, count: int) -> list[Any]:
        assert self.server is not None
        return list(await self.server.async_getValues(0, function_code, address, count))

    def count(self, kind: str) -> int:
        """Read requests received for ``kind``."""
        reads = {1, 2, 3, 4}
        return sum(1 for fc, _, _ in self.requests if fc in reads and FUNCTION_KINDS[fc] == kind)


async def until(
    c: ProtocolConnector, check: Callable[[], bool], timeout: float = 10.0, what: str = ""
) -> None:
    """Flush ``c`` until ``check()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        await c.flush()
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not reached within {timeout} s: {what}")


def readings(pub: MemoryEventPublisher) -> list[tuple[str, str, int, Any]]:
    """(identity, signal, ts_us, value) of every published reading, in order."""
    return [
        (e["identity"], sig, s["ts_us"], v)
        for _, e in pub.published.get("telemetry", [])
        for s in samples_of(e)
        for sig, v in s["values"].items()
    ]


def latest(pub: MemoryEventPublisher) -> dict[str, Any]:
    """signal -> its last value."""
    return {sig: v for _, sig, _, v in readings(pub)}


def statuses(pub: MemoryEventPublisher, rtype: str = "connection") -> list[tuple[str, str, str]]:
    """(resource id, state, info) of the published ResourceStatus events of ``rtype``."""
    return [
        (e["resource_id"], e["current_state"], e["info"])
        for _, e in pub.published.get("status", [])
        if e["resource_type"] == rtype
    ]


def endpoint_state(pub: MemoryEventPublisher, signal: str) -> tuple[str, str] | None:
    """The last (state, info) published for the endpoint whose resource ends in ``signal``."""
    last = None
    for rid, state, info in statuses(pub, "endpoint"):
        if rid.endswith("/" + signal):
            last = (state, info)
    return last
