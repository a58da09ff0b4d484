"""The Modbus connector against pymodbus's own TCP server on 127.0.0.1: every type and
byte/word order decoded, coalesced requests, live changes, write-back, exception
responses per endpoint, undecodable registers, reconnects and unreachable servers.

Expected register contents are computed here with struct, independently of the
connector's codec."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import pytest
from pymodbus.simulator import DataType, SimData

from millrace.connectors.modbus import ModbusConnection, ModbusEndpoint
from millrace.connectors.modbus.connector import ModbusConnector
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.errors import ConnectorError

from .peer import ModbusPeer, endpoint_state, latest, readings, statuses, until

pytestmark = pytest.mark.integration


def reg_words(fmt: str, value: Any, byte_order: str = "big", word_order: str = "big") -> list[int]:
    """The registers holding ``value`` packed as struct ``fmt`` in the given orders."""
    raw = struct.pack(">" + fmt, value)
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def conn(port: int, host: str = "127.0.0.1", **kw: Any) -> ModbusConnection:
    settings: dict[str, Any] = {
        "timeout_ms": 1000,
        "batch_ms": 20,
        "reconnect": {"initial_ms": 50, "max_ms": 200, "jitter": 0},
        **kw,
    }
    return ModbusConnection(protocol="modbus", host=host, port=port, **settings)


def ep(signal: str, register: str, address: int, **kw: Any) -> ModbusEndpoint:
    return ModbusEndpoint(
        connection="plc", identity="m1", signal=signal, register=register, address=address, **kw
    )


# signal, address, data type, byte order, word order, struct format, value
HOLDING = [
    ("i16", 0, "int16", "big", "big", "h", -1234),
    ("u16", 1, "uint16", "big", "big", "H", 54321),
    ("i32", 2, "int32", "big", "big", "i", -123456789),
    ("u32", 4, "uint32", "big", "little", "I", 3_000_000_000),
    ("i64", 6, "int64", "little", "little", "q", -1234567890123),
    ("f32", 10, "float32", "big", "little", "f", 21.5),
    ("f32b", 12, "float32", "little", "big", "f", -0.15625),
    ("f64", 14, "float64", "big", "big", "d", -3.25e10),
]


def holding_map() -> list[int]:
    regs = [0] * 30
    for _, address, _, bo, wo, fmt, value in HOLDING:
        words = reg_words(fmt, value, bo, wo)
        regs[address : address + len(words)] = words
    regs[18:22] = [int.from_bytes(b"PRESS-7\x00"[i : i + 2], "big") for i in range(0, 8, 2)]
    regs[22] = 1000  # scaled: 1000 * 0.1 - 5
    regs[23] = 1  # a bool kept in a register
    return regs


async def test_every_type_and_order_decoded_in_coalesced_reads(peer_factory: Any) -> None:
    inputs = [777, *reg_words("i", -70000, "big", "little")]
    peer: ModbusPeer = await peer_factory(
        [SimData(0, values=holding_map(), datatype=DataType.REGISTERS)],
        inputs=[SimData(0, values=inputs, datatype=DataType.REGISTERS)],
        coils=[True, False, True, True] + [False] * 12,
        discrete=[False, True] + [False] * 14,
    )
    slow = {"interval_ms": 60_000}  # one poll round in this test
    endpoints = [
        ep(s, "holding", a, data_type=t, byte_order=bo, word_order=wo, **slow)
        for s, a, t, bo, wo, _, _ in HOLDING
    ]
    endpoints += [
        ep("name", "holding", 18, data_type="string", length=4, **slow),
        ep("scaled", "holding", 22, scale=0.1, offset=-5, unit="bar", **slow),
        ep("flag", "holding", 23, data_type="bool", **slow),
        ep("bad", "holding", 500, **slow),  # outside the server's registers
        ep("in_u16", "input", 0, **slow),
        ep("in_i32", "input", 1, data_type="int32", word_order="little", **slow),
        ep("c0", "coil", 0, **slow),
        ep("c1", "coil", 1, **slow),
        ep("c3", "coil", 3, data_type="bool", **slow),
        ep("d1", "discrete", 1, **slow),
    ]
    pub = MemoryEventPublisher()
    c = ModbusConnector("plc", conn(peer.port), endpoints)
    await c.start(pub)
    try:
        await until(c, lambda: len(latest(pub)) == len(endpoints) - 1, what="all values")
        await until(c, lambda: endpoint_state(pub, "bad") is not None, what="bad endpoint status")
    finally:
        await c.stop()

    expected: dict[str, Any] = {s: v for s, _, _, _, _, _, v in HOLDING}
    expected.update(
        name="PRESS-7", flag=True, in_u16=777, in_i32=-70000, c0=True, c1=False, c3=True, d1=True
    )
    got = latest(pub)
    assert got.pop("scaled") == pytest.approx(95.0)
    assert got == expected
    assert all(type(got[s]) is type(v) for s, v in expected.items())  # ints stay ints
    assert endpoint_state(pub, "bad") == (
        "error",
        "illegal data address at holding register 500 of unit 1 (exception 2)",
    )
    assert endpoint_state(pub, "f64") == ("running", "")
    # coalesced: one request per register kind, plus the far-away bad address
    assert [(r.kind, r.address, r.count) for r in c.reads] == [
        ("coil", 0, 4),
        ("discrete", 1, 1),
        ("holding", 0, 24),
        ("holding", 500, 1),
        ("input", 0, 3),
    ]
    assert [peer.count(k) for k in ("holding", "input", "coil", "discrete")] == [2, 1, 1, 1]
    # one poll round: all readings of a request share its poll time
    ts = {sig: t for _, sig, t, _ in readings(pub)}
    assert len({ts[s] for s, *_ in HOLDING}) == 1


async def test_changes_writes_split_reads_and_bad_registers(peer_factory: Any) -> None:
    regs = [0] * 30
    regs[0] = 17
    regs[1:3] = reg_words("f", 40.0, "big", "little")  # temp = raw * 0.5
    regs[10:12] = [0xFFFE, 0x4142]  # not UTF-8
    regs[28] = 99
    peer: ModbusPeer = await peer_factory(
        [SimData(0, values=regs, datatype=DataType.REGISTERS)],
        coils=[False] * 16,
    )
    fast = {"interval_ms": 30}
    endpoints = [
        ep("level", "holding", 0, **fast),
        ep(
            "temp",
            "holding",
            1,
            data_type="float32",
            word_order="little",
            scale=0.5,
            writable=True,
            **fast,
        ),
        ep("sp", "holding", 3, data_type="int16", scale=0.1, writable=True, **fast),
        ep("label", "holding", 10, data_type="string", length=2, **fast),
        ep("edge", "holding", 28, **fast),
        ep("beyond", "holding", 30, **fast),  # one past the server's last register
        ep("pump", "coil", 2, writable=True, **fast),
        ep("wrong", "coil", 4, data_type="float32"),  # not valid: reported, not polled
    ]
    pub = MemoryEventPublisher()
    c = ModbusConnector("plc", conn(peer.port), endpoints)
    await c.start(pub)
    try:
        await until(c, lambda: {"level", "temp", "edge", "pump"} <= latest(pub).keys())
        assert latest(pub)["temp"] == 20.0 and latest(pub)["level"] == 17
        # the coalesced read 28..30 was refused for 30: split, 28 keeps reporting
        await until(c, lambda: endpoint_state(pub, "beyond") is not None)
        assert endpoint_state(pub, "beyond") == (
            "error",
            "illegal data address at holding register 30 of unit 1 (exception 2)",
        )
        assert c.counters["reads_split"] == 1
        n_edge = sum(1 for r in readings(pub) if r[1] == "edge")
        await until(c, lambda: sum(1 for r in readings(pub) if r[1] == "edge") > n_edge + 2)
        # the device changes a register: the next reading shows it
        await peer.set(3, 0, [4321])
        await until(c, lambda: latest(pub)["level"] == 4321, what="changed register")
        # write-back, unscaled and encoded as the device stores it
        await c.execute({"identity": "m1", "resource": "temp", "value": 30.0})
        assert await peer.get(3, 1, 2) == reg_words("f", 60.0, "big", "little")
        await c.execute({"identity": "m1", "resource": "sp", "value": -12.3})
        assert await peer.get(3, 3, 1) == reg_words("h", -123)
        await c.execute({"identity": "m1", "resource": "pump", "value": True})
        assert (await peer.get(1, 2, 1))[0] is True
        await until(
            c,
            lambda: (
                latest(pub).get("temp") == 30.0
                and latest(pub).get("sp") == pytest.approx(-12.3)
                and latest(pub).get("pump") is True
            ),
            what="written values read back",
        )
        with pytest.raises(ConnectorError, match="out of range for int16"):
            await c.execute({"identity": "m1", "resource": "sp", "value": 5000.0})
        with pytest.raises(ConnectorError, match="not writable"):
            await c.execute({"identity": "m1", "resource": "level", "value": 1})
        # undecodable text: dead-lettered once, the endpoint in error, the rest goes on
        state = endpoint_state(pub, "label")
        assert state is not None and state[0] == "error" and "not UTF-8" in state[1]
        await peer.set(3, 10, [0x4142, 0])
        await until(c, lambda: latest(pub).get("label") == "AB", what="repaired text")
        assert endpoint_state(pub, "label") == ("running", "")
    finally:
        await c.stop()
    dead = pub.published.get("deadletter", [])
    assert len(dead) == 1
    assert dead[0][0] == "m1" and dead[0][1]["payload"] == b"\xff\xfeAB"
    assert "holding registers 10..11 of unit 1" in dead[0][1]["reason"]
    state = endpoint_state(pub, "wrong")
    assert state is not None and state[0] == "error" and "data_type must be bool" in state[1]
    assert "wrong" not in latest(pub)


async def test_reconnects_after_the_server_restarts(peer_factory: Any) -> None:
    peer: ModbusPeer = await peer_factory(
        [SimData(0, values=[5, 6, 7], datatype=DataType.REGISTERS)]
    )
    pub = MemoryEventPublisher()
    endpoints = [ep("a", "holding", 0, interval_ms=20), ep("b", "holding", 1, interval_ms=20)]
    c = ModbusConnector("plc", conn(peer.port), endpoints)
    await c.start(pub)
    rid = "modbus:plc"
    try:
        await until(c, lambda: len(readings(pub)) >= 6)
        await peer.stop()
        await until(
            c,
            lambda: any(
                s == "reconnecting" and "connection lost" in i for _, s, i in statuses(pub)
            ),
            what="loss reported",
        )
        await until(
            c,
            lambda: (rid, "error", f"Connection refused (127.0.0.1:{peer.port})") in statuses(pub),
        )
        before = len(readings(pub))
        await peer.start()  # same port
        await until(
            c,
            lambda: any(
                s == "running" and i.startswith("reconnected; no data for")
                for _, s, i in statuses(pub)
            ),
            what="reconnected",
        )
        await until(c, lambda: len(readings(pub)) >= before + 6, what="readings after restart")
    finally:
        await c.stop()
    states = [(s, i) for r, s, i in statuses(pub) if r == rid]
    assert states[:2] == [("connecting", ""), ("running", "")]
    assert ("reconnecting", "connection lost: connection closed by the device") in states
    assert states[-1] == ("stopped", "")
    assert c.metrics()["reconnects"] == 1
    for sig, value in (("a", 5), ("b", 6)):
        series = [(t, v) for _, s, t, v in readings(pub) if s == sig]
        times = [t for t, _ in series]
        assert times == sorted(set(times))  # no timestamp twice, always advancing
        assert {v for _, v in series} == {value}


async def test_unreachable_server_is_a_clear_status() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for host, info in (
        ("127.0.0.1", f"Connection refused (127.0.0.1:{port})"),
        ("no-such-host.invalid", f"Host not found (no-such-host.invalid:{port})"),
    ):
        pub = MemoryEventPublisher()
        c = ModbusConnector("plc", conn(port, host=host), [ep("a", "holding", 0, writable=True)])
        await c.start(pub)
        try:
            await until(c, lambda: ("modbus:plc", "error", info) in statuses(pub), what=info)  # noqa: B023
            with pytest.raises(ConnectorError, match="not connected"):
                await c.execute({"identity": "m1", "resource": "a", "value": 1})
        finally:
            await c.stop()
        assert statuses(pub)[-1][1] == "stopped"
        assert readings(pub) == []


async def test_a_server_that_never_answers() -> None:
    """TCP accepted but no Modbus answer: the endpoints say so, and after a few
    unanswered requests the link is dropped and re-established."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pub = MemoryEventPublisher()
    c = ModbusConnector("plc", conn(port, timeout_ms=100), [ep("a", "holding", 0, interval_ms=50)])
    await c.start(pub)
    try:
        await until(
            c,
            lambda: (
                endpoint_state(pub, "a")
                == ("error", "no response within 100 ms from holding register 0 of unit 1")
            ),
        )
        await until(
            c,
            lambda: (
                ("modbus:plc", "reconnecting", "connection lost: the device stopped answering")
                in statuses(pub)
            ),
        )
        await until(c, lambda: len(accepted) >= 2, what="a new connection")
    finally:
        await c.stop()
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()
    assert readings(pub) == []
