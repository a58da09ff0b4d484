"""Unit ids: a gateway in front of several serial units, each its own register map.

pymodbus's server holds two devices (unit 1 and unit 2) with different values at the
same addresses; the connector must read each endpoint from its own unit, write a
Command to the right one, and report a unit the gateway does not have as that
endpoint's error without disturbing the others.
"""

from __future__ import annotations

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from millrace.connectors.modbus.connector import ModbusConnector
from millrace.pipeline.connector import MemoryEventPublisher

from .peer import endpoint_state, latest, until
from .test_connector import conn, ep


def _device(unit: int, first: int) -> SimDevice:
    blocks = (
        [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
        [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
        [SimData(0, values=[first, first + 1, 0, 0], datatype=DataType.REGISTERS)],
        [SimData(0, values=[0] * 4, datatype=DataType.REGISTERS)],
    )
    return SimDevice(unit, simdata=blocks)


async def test_each_endpoint_reads_and_writes_its_own_unit() -> None:
    server = ModbusTcpServer([_device(1, 100), _device(2, 200)], address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    assert server.transport is not None
    port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    slow = {"interval_ms": 60_000}
    endpoints = [
        ep("u1_a", "holding", 0, unit_id=1, **slow),
        ep("u1_b", "holding", 1, unit_id=1, **slow),
        ep("u2_a", "holding", 0, unit_id=2, writable=True, **slow),
        ep("u2_b", "holding", 1, unit_id=2, **slow),
        ep("u9_a", "holding", 0, unit_id=9, **slow),  # no such unit behind the gateway
    ]
    pub = MemoryEventPublisher()
    c = ModbusConnector("plc", conn(port), endpoints)
    await c.start(pub)
    try:
        await until(c, lambda: len(latest(pub)) == 4, what="the four values")
        await until(c, lambda: endpoint_state(pub, "u9_a") is not None, what="unit 9 status")
        assert latest(pub) == {"u1_a": 100, "u1_b": 101, "u2_a": 200, "u2_b": 201}
        state, info = endpoint_state(pub, "u9_a") or ("", "")
        assert state == "error" and "unit 9" in info, info
        assert endpoint_state(pub, "u1_a") == ("running", "")
        # a Command for unit 2 lands in unit 2 only
        await c.execute({"identity": "m1", "resource": "u2_a", "value": 4242})
        assert list(await server.async_getValues(2, 3, 0, 1)) == [4242]
        assert list(await server.async_getValues(1, 3, 0, 1)) == [100]
    finally:
        await c.stop()
        await server.shutdown()
