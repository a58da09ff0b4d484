"""The OPC UA connector against asyncua's own Server on 127.0.0.1: subscriptions,
server-side deadband, status codes as quality, write-back, reconnect without
duplicates, unreachable servers, username login and Sign&Encrypt."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asyncua import ua

from millrace.connectors.opcua.config import OpcuaConnection, OpcuaEndpoint
from millrace.connectors.opcua.connector import OpcuaConnector
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.errors import ConnectorError

from .conftest import BlackHoleProxy, OpcServer, Users, free_port, of, readings, states, until

pytestmark = pytest.mark.integration

D = ua.VariantType.Double


def conn(url: str, **kw: Any) -> OpcuaConnection:
    kw.setdefault("reconnect", {"initial_ms": 50, "max_ms": 200, "jitter": 0})
    kw.setdefault("timeout_ms", 2000)
    return OpcuaConnection(protocol="opcua", url=url, batch_ms=20, **kw)


def ep(signal: str, node_id: str, **kw: Any) -> OpcuaEndpoint:
    kw.setdefault("interval_ms", 50)
    return OpcuaEndpoint(
        connection="plc",
        identity=kw.pop("identity", "press-1"),
        signal=signal,
        node_id=node_id,
        **kw,
    )


def now_us() -> int:
    return time.time_ns() // 1000


async def test_values_scale_identity_and_bad_quality() -> None:
    srv = await OpcServer(
        free_port(),
        {
            "Temp": (20.0, D, False),
            "Count": (0, ua.VariantType.UInt64, False),
            "Mode": ("idle", ua.VariantType.String, False),
        },
    ).start()
    pub = MemoryEventPublisher()
    c = OpcuaConnector(
        "plc",
        conn(srv.url),
        [
            ep("temp", "ns=2;s=Temp", scale=2.0, offset=1.0),
            ep("count", "nsu=urn:millrace:test;s=Count", identity="counter-7", interval_ms=80),
            ep("mode", "/2:Plant/2:Mode"),
            ep("missing", "ns=2;s=NoSuchNode"),
            ep("nopath", "/2:Plant/2:Nope"),
        ],
    )
    try:
        await c.start(pub)
        await c.wait_connected()
        await until(lambda: len(of(pub, "temp")) == 1 and of(pub, "mode"), what="initial values")
        t0 = now_us()
        sent = [(t0 + 1000 * i, 20.0 + i * 0.5) for i in range(1, 6)]
        for ts, v in sent:
            await srv.put("Temp", v, ts)
            await asyncio.sleep(0.07)  # > sampling interval: each value is a sample
        big = 2**64 - 5  # beyond int64: kept exactly, as text
        await srv.put("Count", big, t0 + 10)
        await srv.put("Mode", "run", t0 + 20)
        bad = ua.StatusCodes.BadSensorFailure
        await srv.put("Temp", None, t0 + 9000, status=bad)
        await asyncio.sleep(0.07)
        uncertain = ua.StatusCodes.UncertainLastUsableValue
        await srv.put("Temp", 23.0, t0 + 10_000, status=uncertain)
        await until(lambda: len(of(pub, "temp")) == 8, what=f"8 values: {of(pub, 'temp')}")
        await until(lambda: (t0 + 10, str(big), 0) in of(pub, "count"), what="count")
        await until(lambda: (t0 + 20, "run", 0) in of(pub, "mode"), what="mode")
    finally:
        await c.stop()
        await srv.stop()

    temp = of(pub, "temp")
    assert temp[0][1:] == (20.0 * 2 + 1, 0)
    assert temp[1:6] == [(ts, v * 2 + 1, 0) for ts, v in sent]
    # a Bad value without a value is still reported, with its status as signed int32
    ts, value, q = temp[6]
    assert ts == t0 + 9000 and value == "nan" and q == bad - 2**32 and q < 0
    assert temp[7] == (t0 + 10_000, 47.0, uncertain)
    assert {(i, s) for i, s, *_ in readings(pub)} == {
        ("press-1", "temp"),
        ("counter-7", "count"),
        ("press-1", "mode"),
    }
    ep_states = dict(
        (e["resource_id"], (e["current_state"], e["info"]))
        for _, e in pub.published["status"]
        if e["resource_type"] == "endpoint"
    )
    assert ep_states["opcua:plc/press-1/missing"] == (
        "error",
        "cannot monitor ns=2;s=NoSuchNode: BadNodeIdUnknown",
    )
    assert ep_states["opcua:plc/press-1/temp"] == ("running", "")
    assert ep_states["opcua:plc/press-1/nopath"] == (
        "error",
        "browse path /2:Plant/2:Nope not found under Objects",
    )


async def test_server_side_deadband_suppresses_small_changes() -> None:
    srv = await OpcServer(free_port(), {"Level": (0.0, D, False), "Raw": (0.0, D, False)}).start()
    pub = MemoryEventPublisher()
    # deadband 1.0 in endpoint units; with scale 10 the server filters at 0.1 raw
    c = OpcuaConnector(
        "plc",
        conn(srv.url),
        [
            ep("level", "ns=2;s=Level", deadband=1.0),
            ep("raw", "ns=2;s=Raw", deadband=1.0, scale=10),
        ],
    )
    sequence = [10.0, 10.2, 12.0, 12.5, 20.0, 19.4, 17.0]
    raw_sequence = [1.0, 1.05, 1.2, 1.25, 2.0]
    try:
        await c.start(pub)
        await c.wait_connected()
        await until(lambda: of(pub, "level") and of(pub, "raw"), what="initial values")
        t0 = now_us()
        for i, v in enumerate(sequence):
            await srv.put("Level", v, t0 + i)
            if i < len(raw_sequence):
                await srv.put("Raw", raw_sequence[i], t0 + i)
            await asyncio.sleep(0.08)
        await until(lambda: len(of(pub, "level")) >= 5, what="level changes")
        await asyncio.sleep(0.2)
    finally:
        await c.stop()
        await srv.stop()

    def expected(values: list[float], band: float, scale: float = 1.0) -> list[float]:
        out, last = [0.0], 0.0
        for v in values:
            if abs(v - last) > band:
                out.append(v * scale)
            last = v  # the sequences are chosen so that "last sample" and
            # "last reported" give the same result
        return out

    assert (
        [v for _, v, _ in of(pub, "level")]
        == expected(sequence, 1.0)
        == [0.0, 10.0, 12.0, 20.0, 17.0]
    )
    assert [v for _, v, _ in of(pub, "raw")] == pytest.approx(expected(raw_sequence, 0.1, 10))
    assert c.metrics()["deadband_suppressed"] == 0  # nothing was filtered client-side


async def test_command_is_written_with_the_nodes_type() -> None:
    srv = await OpcServer(
        free_port(),
        {
            "Setpoint": (0, ua.VariantType.Int16, True),
            "Speed": (0.0, ua.VariantType.Float, True),
            "Enable": (False, ua.VariantType.Boolean, True),
            "ReadOnly": (1.0, D, False),
        },
    ).start()
    pub = MemoryEventPublisher()
    c = OpcuaConnector(
        "plc",
        conn(srv.url),
        [
            ep("setpoint", "ns=2;s=Setpoint", writable=True, scale=0.5),
            ep("speed", "ns=2;s=Speed", writable=True),
            ep("enable", "/2:Plant/2:Enable", writable=True),
            ep("ro", "ns=2;s=ReadOnly", writable=True),
        ],
    )
    try:
        await c.start(pub)
        await c.wait_connected()
        await c.execute({"identity": "press-1", "resource": "setpoint", "value": 21.0})
        await c.execute({"identity": "press-1", "resource": "speed", "value": 3})
        await c.execute({"identity": "press-1", "resource": "enable", "value": True})
        sp, speed, enable = (
            await srv.get("Setpoint"),
            await srv.get("Speed"),
            await srv.get("Enable"),
        )
        assert (sp.Value, sp.VariantType) == (42, ua.VariantType.Int16)
        assert (speed.Value, speed.VariantType) == (3.0, ua.VariantType.Float)
        assert (enable.Value, enable.VariantType) == (True, ua.VariantType.Boolean)
        with pytest.raises(ConnectorError, match="outside the range of Int16"):
            await c.execute({"identity": "press-1", "resource": "setpoint", "value": 40000})
        with pytest.raises(ConnectorError, match="not a whole number"):
            await c.execute({"identity": "press-1", "resource": "setpoint", "value": 1.3})
        with pytest.raises(ConnectorError, match="refused the write to ns=2;s=ReadOnly"):
            await c.execute({"identity": "press-1", "resource": "ro", "value": 2.0})
        assert (await srv.get("Setpoint")).Value == 42
        # the written value comes back through the subscription, scaled
        await until(lambda: (21.0, 0) in [(v, q) for _, v, q in of(pub, "setpoint")])
    finally:
        await c.stop()
        await srv.stop()
    assert c.metrics()["commands_written"] == 3 and c.metrics()["commands_failed"] == 3


async def test_server_restart_reconnects_without_duplicates() -> None:
    port = free_port()
    variables = {"Temp": (0.0, D, False)}
    srv = await OpcServer(port, variables).start()
    pub = MemoryEventPublisher()
    c = OpcuaConnector("plc", conn(srv.url), [ep("temp", "ns=2;s=Temp")])
    t0 = now_us()
    written: list[tuple[int, float]] = []
    try:
        await c.start(pub)
        await c.wait_connected()
        for i in range(1, 6):
            written.append((t0 + i, float(i)))
            await srv.put("Temp", float(i), t0 + i)
            await asyncio.sleep(0.07)
        await until(lambda: len(of(pub, "temp")) == 6, what="values before the restart")
        await srv.stop()
        await until(lambda: any(s == "reconnecting" for s, _ in states(pub)), what="loss seen")
        await until(lambda: any(s == "error" for s, _ in states(pub)), what="refused")
        # the server comes back with the last value it had (same source time): the
        # re-subscription sends it again and it must not be published twice
        srv = OpcServer(port, variables)
        await srv.start()
        await srv.put("Temp", 5.0, t0 + 5)
        await until(
            lambda: any(s == "running" and i.startswith("reconnected") for s, i in states(pub)),
            what="reconnected",
        )
        await until(lambda: c.metrics()["duplicates_dropped"] >= 1, what="re-sent value dropped")
        for i in range(6, 9):
            written.append((t0 + i, float(i)))
            await srv.put("Temp", float(i), t0 + i)
            await asyncio.sleep(0.07)
        await until(lambda: len(of(pub, "temp")) == 9, what="values after the restart")
    finally:
        await c.stop()
        await srv.stop()
    temp = of(pub, "temp")
    assert [(ts, v) for ts, v, _ in temp[1:]] == written
    stamps = [ts for ts, _, _ in temp]
    assert len(stamps) == len(set(stamps))
    s = states(pub)
    lost = [i for st, i in s if st == "reconnecting" and i.startswith("connection lost")]
    assert lost == ["connection lost: the server closed the connection"]
    assert any(st == "error" and i.startswith("Connection refused by 127.0.0.1") for st, i in s)
    back = [i for st, i in s if st == "running" and i]
    assert back and back[0].startswith("reconnected; no data for ")
    assert s[-1] == ("stopped", "")
    assert c.metrics()["reconnects"] == 1


async def test_silent_server_is_detected_by_the_watchdog() -> None:
    """A server that stops answering without closing the socket (a cable pulled
    somewhere between): the watchdog probe ends the session."""
    srv = await OpcServer(free_port(), {"Temp": (0.0, D, False)}).start()
    proxy = await BlackHoleProxy(srv.port).start()
    pub = MemoryEventPublisher()
    c = OpcuaConnector(
        "plc",
        conn(
            f"opc.tcp://127.0.0.1:{proxy.port}/millrace/test",
            watchdog_interval_ms=300,
            timeout_ms=500,
        ),
        [ep("temp", "ns=2;s=Temp")],
    )
    t0 = now_us()
    try:
        await c.start(pub)
        await c.wait_connected()
        await until(lambda: len(of(pub, "temp")) == 1)
        proxy.frozen = True
        await srv.put("Temp", 1.0, t0 + 1)  # lost in the black hole
        await until(lambda: c.state[0] != "running", timeout=5, what="loss detected")
        proxy.frozen = False
        await until(
            lambda: c.state == ("running", c.state[1]) and c.state[1].startswith("reconnected"),
            what="reconnected",
        )
        await srv.put("Temp", 2.0, t0 + 2)
        await until(lambda: (t0 + 2, 2.0, 0) in of(pub, "temp"), what="value after reconnect")
    finally:
        await c.stop()
        await proxy.stop()
        await srv.stop()
    assert (
        "reconnecting",
        "connection lost: the server did not answer the watchdog probe within 0.3 s",
    ) in states(pub)
    # the value set while the server was unreachable arrives with the re-subscription
    assert [(ts, v) for ts, v, _ in of(pub, "temp")][1:] == [(t0 + 1, 1.0), (t0 + 2, 2.0)]


async def test_unreachable_server_reports_error_and_keeps_trying() -> None:
    # a peer that accepts TCP and never answers the OPC UA Hello
    accepted: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    closed_port = free_port()
    pub = MemoryEventPublisher()
    refused = OpcuaConnector(
        "plc", conn(f"opc.tcp://127.0.0.1:{closed_port}"), [ep("t", "ns=2;s=T")]
    )
    mute = OpcuaConnector(
        "mute",
        conn(f"opc.tcp://127.0.0.1:{silent_port}", timeout_ms=300),
        [ep("t", "ns=2;s=T")],
    )
    try:
        await refused.start(pub)
        await mute.start(pub)
        await until(lambda: refused.state[0] == "error" and mute.state[0] == "error")
        await until(lambda: refused.metrics()["errors"] >= 3, what="retries")
        assert refused.state == (
            "error",
            f"Connection refused by 127.0.0.1:{closed_port} (is the OPC UA server running?)",
        )
        assert mute.state == (
            "error",
            f"Host not reachable: 127.0.0.1:{silent_port} did not answer within 0.3 s",
        )
        assert not refused.connected and "telemetry" not in pub.published
    finally:
        await refused.stop()
        await mute.stop()
        silent.close()
        for w in accepted:
            w.close()
        await silent.wait_closed()


async def test_username_login_accepted_and_refused() -> None:
    srv = await OpcServer(
        free_port(),
        {"Temp": (1.5, D, False)},
        user_manager=Users(),
        identity_tokens=[ua.UserNameIdentityToken],
    ).start()
    pub = MemoryEventPublisher()
    good = OpcuaConnector(
        "plc", conn(srv.url, username="operator", password="s3cret"), [ep("t", "ns=2;s=Temp")]
    )
    wrong = OpcuaConnector(
        "wrong", conn(srv.url, username="operator", password="guess"), [ep("t", "ns=2;s=Temp")]
    )
    anonymous = OpcuaConnector("anon", conn(srv.url), [ep("t", "ns=2;s=Temp")])
    try:
        for c in (good, wrong, anonymous):
            await c.start(pub)
        await good.wait_connected()
        await until(lambda: [(v, q) for _, v, q in of(pub, "t")] == [(1.5, 0)])
        await until(lambda: wrong.state[0] == "error" and anonymous.state[0] == "error")
    finally:
        for c in (good, wrong, anonymous):
            await c.stop()
        await srv.stop()
    assert next(i for s, i in states(pub, "opcua:wrong") if s == "error") == (
        "Login refused by the server (BadUserAccessDenied) for user 'operator'"
    )
    assert next(i for s, i in states(pub, "opcua:anon") if s == "error").startswith(
        "Login refused by the server (BadIdentityTokenRejected) for anonymous login"
    )


@pytest.mark.parametrize(
    ("mode", "policy"),
    [
        ("SignAndEncrypt", ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt),
        ("Sign", ua.SecurityPolicyType.Basic256Sha256_Sign),
    ],
)
async def test_signed_sessions_with_generated_certificates(
    pki: dict[str, Any], mode: str, policy: Any
) -> None:
    srv = await OpcServer(
        free_port(),
        {"Temp": (7.25, D, True)},
        certificate=pki["server_cert"],
        private_key=pki["server_key"],
        policies=[policy],
    ).start()
    pub = MemoryEventPublisher()
    secure = OpcuaConnector(
        "plc",
        conn(
            srv.url,
            security_policy="Basic256Sha256",
            security_mode=mode,
            certificate=str(pki["client_cert"]),
            private_key=str(pki["client_key"]),
            server_certificate=str(pki["server_cert"]),
        ),
        [ep("t", "ns=2;s=Temp", writable=True)],
    )
    plain = OpcuaConnector("plain", conn(srv.url), [ep("t", "ns=2;s=Temp")])
    try:
        await secure.start(pub)
        await plain.start(pub)
        await secure.wait_connected()
        await until(lambda: [v for _, v, _ in of(pub, "t")] == [7.25])
        await secure.execute({"identity": "press-1", "resource": "t", "value": 8.5})
        assert (await srv.get("Temp")).Value == 8.5
        await until(lambda: plain.state[0] == "error")
    finally:
        await secure.stop()
        await plain.stop()
        await srv.stop()
    # the server has only a signed endpoint: an unsecured client is turned away
    assert next(i for s, i in states(pub, "opcua:plain") if s == "error") == (
        "The server offers no endpoint with security_policy None and security_mode None"
    )
