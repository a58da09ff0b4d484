"""The MQTT connector against a real Mosquitto broker (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aiomqtt
import pytest

from millrace.connectors._common.models import MappingConfig
from millrace.connectors.mqtt.config import MqttConnection, MqttEndpoint
from millrace.connectors.mqtt.connector import MqttConnector
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.errors import ConnectorError
from millrace.pipeline.telemetry_columns import samples_of

from .conftest import PASSWORD, TLS_HOST, USERNAME, Broker

pytestmark = pytest.mark.integration

Reading = tuple[str, str, int, Any]  # identity, signal, ts_us, value


def connection(port: int, **kw: Any) -> MqttConnection:
    fields: dict[str, Any] = {
        "protocol": "mqtt",
        "host": "127.0.0.1",
        "port": port,
        "batch_ms": 20,
        "connect_timeout_s": 5,
        "reconnect": {"initial_ms": 50, "max_ms": 200, "jitter": 0},
    }
    fields.update(kw)
    return MqttConnection(**fields)


def endpoint(topic: str, identity: str, signal: str, **kw: Any) -> MqttEndpoint:
    return MqttEndpoint(connection="c", topic=topic, identity=identity, signal=signal, **kw)


def readings(pub: MemoryEventPublisher) -> list[Reading]:
    return [
        (e["identity"], signal, s["ts_us"], v)
        for _, e in pub.published.get("telemetry", [])
        for s in samples_of(e)
        for signal, v in s["values"].items()
    ]


def states(pub: MemoryEventPublisher) -> list[tuple[str, str]]:
    return [
        (e["current_state"], e["info"])
        for _, e in pub.published.get("status", [])
        if e["resource_type"] == "connection"
    ]


def dead_letters(pub: MemoryEventPublisher) -> list[dict[str, Any]]:
    return [dict(e) for _, e in pub.published.get("deadletter", [])]


def has_state(pub: MemoryEventPublisher, state: str) -> bool:
    return any(s == state for s, _ in states(pub))


async def until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(
    connector: MqttConnector, pub: MemoryEventPublisher, connected: bool = True
) -> AsyncIterator[MqttConnector]:
    await connector.start(pub)
    try:
        if connected:
            await connector.wait_connected(10)
        yield connector
    finally:
        await connector.stop()


async def publish(port: int, messages: list[tuple[str, bytes | str, int]]) -> None:
    """Publish in order from a separate client; QoS 1 waits for the broker's PUBACK."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic, payload, qos in messages:
            await client.publish(topic, payload, qos=qos)


def us(dt: datetime) -> int:
    """Microseconds since the epoch, computed with integer arithmetic."""
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


async def test_wildcard_topics_map_to_identity_signal_and_time(mosquitto: Broker) -> None:
    pub = MemoryEventPublisher()
    eps = [
        endpoint(
            "plant/+/temp",
            "{1}",
            "temp",
            value_path="$.v",
            timestamp_path="$.ts",
            timestamp_format="epoch_ms",
            data_type="float64",
        ),
        endpoint("plant/+/running", "{1}", "running", data_type="bool", qos=0),
        endpoint("site/#", "site-{1}", "{-1}"),
        endpoint(
            "hall/temp/outdoor",
            "hall",
            "outdoor",
            value_path="$.reading['value']",
            timestamp_path="$.reading.at",
            timestamp_format="iso8601",
        ),
    ]
    c = MqttConnector("c", connection(mosquitto.port), eps)
    async with running(c, pub):
        t0 = time.time_ns() // 1000
        await publish(
            mosquitto.port,
            [
                ("plant/press-1/temp", b'{"v": 81.5, "ts": 1714564800000}', 1),
                ("plant/press-2/temp", b'{"v": 70, "ts": 1714564800500}', 0),
                ("plant/press-1/running", b"true", 1),
                ("plant/press-2/running", b"0", 0),
                ("site/hall-2/door/north", b"open", 1),
                ("site/hall-2/humidity", b"41.5", 1),
                (
                    "hall/temp/outdoor",
                    b'{"reading": {"value": -3.25, "at": "2024-05-01T12:00:00.250+02:00"}}',
                    1,
                ),
                ("elsewhere/press-1/temp", b"1", 1),  # subscribed by nothing
            ],
        )
        await until(lambda: len(readings(pub)) == 7, "7 readings")
        t1 = time.time_ns() // 1000
    got = readings(pub)
    from_payload = {(i, s, ts, v) for i, s, ts, v in got if s in ("temp", "outdoor")}
    assert from_payload == {
        ("press-1", "temp", 1_714_564_800_000_000, 81.5),
        ("press-2", "temp", 1_714_564_800_500_000, 70.0),
        ("hall", "outdoor", us(datetime(2024, 5, 1, 10, 0, 0, 250_000, tzinfo=UTC)), -3.25),
    }
    received = {(i, s, v) for i, s, ts, v in got if s not in ("temp", "outdoor")}
    assert received == {
        ("press-1", "running", True),
        ("press-2", "running", False),
        ("site-hall-2", "north", "open"),
        ("site-hall-2", "humidity", 41.5),
    }
    assert all(t0 <= ts <= t1 for i, s, ts, v in got if s not in ("temp", "outdoor"))
    assert type(next(v for i, s, _, v in got if i == "press-2" and s == "temp")) is float
    assert dead_letters(pub) == []
    endpoint_states = {
        e["resource_id"]: e["current_state"]
        for _, e in pub.published["status"]
        if e["resource_type"] == "endpoint"
    }
    assert endpoint_states["mqtt:c/{1}/temp"] == "running"
    assert c.metrics()["messages"] == 7


async def test_qos1_messages_wait_in_a_persistent_session_qos0_do_not(mosquitto: Broker) -> None:
    conn = connection(
        mosquitto.port, client_id=f"millrace-qos-{uuid.uuid4().hex[:8]}", clean_session=False
    )
    eps = [
        endpoint("q/one", "dev", "one", qos=1, data_type="int32"),
        endpoint("q/zero", "dev", "zero", qos=0, data_type="int32"),
    ]

    def values(pub: MemoryEventPublisher, signal: str) -> list[Any]:
        return [v for _, s, _, v in readings(pub) if s == signal]

    first = MemoryEventPublisher()
    async with running(MqttConnector("c", conn, eps), first):
        await publish(mosquitto.port, [("q/one", b"1", 1), ("q/zero", b"1", 1)])
        await until(lambda: len(readings(first)) == 2, "both while connected")
    # the connector is away; the broker keeps its session (clean_session: false)
    await publish(mosquitto.port, [("q/one", b"2", 1), ("q/zero", b"2", 1), ("q/one", b"3", 1)])
    second = MemoryEventPublisher()
    async with running(MqttConnector("c", conn, eps), second):
        await until(lambda: values(second, "one") == [2, 3], "queued QoS 1 messages")
        await publish(mosquitto.port, [("q/zero", b"3", 1)])
        await until(lambda: values(second, "zero") == [3], "QoS 0 after reconnecting")
    assert values(first, "one") == [1] and values(first, "zero") == [1]
    assert values(second, "one") == [2, 3] and values(second, "zero") == [3]


async def test_one_json_payload_maps_to_many_signals(mosquitto: Broker) -> None:
    pub = MemoryEventPublisher()
    maps = [
        MappingConfig(
            connection="c",
            topic="meters/+/state",
            identity_path="$.id",
            timestamp_path="$.time",
            timestamp_format="iso8601",
            values={"power_kw": "$.p.w", "energy": "$.e[0]", "status": "$.status"},
            scale=0.001,
        ),
        MappingConfig(
            connection="c",
            topic="flat/+/data",
            identity="flat-{1}",
            values={"a": "$.a", "b": "$['b.c']"},
            qos=0,
        ),
    ]
    c = MqttConnector("c", connection(mosquitto.port), [], maps)
    async with running(c, pub):
        await publish(
            mosquitto.port,
            [
                (
                    "meters/m-12/state",
                    json.dumps(
                        {
                            "id": "m-12",
                            "time": "2024-05-01T12:00:00Z",
                            "p": {"w": 1200},
                            "e": [5100, 1],
                            "status": "ok",
                        }
                    ),
                    1,
                ),
                ("flat/7/data", b'{"a": 1, "b.c": true}', 1),
                ("flat/7/data", b'{"a": 2}', 1),  # a partial update: b is not sent
            ],
        )
        await until(lambda: len(readings(pub)) == 6, "6 readings")
    ts = us(datetime(2024, 5, 1, 12, tzinfo=UTC))
    meter = [e for k, e in pub.published["telemetry"] if k == "m-12"]
    samples = [s for e in meter for s in samples_of(e)]
    # one payload, one sample: every signal shares the payload's time
    assert samples == [
        {
            "ts_us": ts,
            "values": {"power_kw": 1200 * 0.001, "energy": 5100 * 0.001, "status": "ok"},
            "quality": 0,
        }
    ]
    flat = [(i, s, v) for i, s, _, v in readings(pub) if i == "flat-7"]
    assert flat == [("flat-7", "a", 1), ("flat-7", "b", True), ("flat-7", "a", 2)]
    assert dead_letters(pub) == []


async def test_malformed_payloads_become_dead_letters_and_the_rest_flows(
    mosquitto: Broker,
) -> None:
    pub = MemoryEventPublisher()
    eps = [
        endpoint(
            "dev/+/t",
            "{1}",
            "t",
            value_path="$.v",
            timestamp_path="$.ts",
            timestamp_format="epoch_s",
            data_type="float64",
        )
    ]
    maps = [
        MappingConfig(connection="c", topic="mm/x", identity="m", values={"a": "$.a", "b": "$.b"})
    ]
    bad = [
        (b"not json{", "payload is not JSON"),
        (b'{"x": 1, "ts": 1700000001}', "value missing: $.v not found"),
        (b'{"v": "hot", "ts": 1700000002}', "value 'hot' is a string, expected float64"),
        (b'{"v": 2.0, "ts": "yesterday"}', "timestamp 'yesterday' is not a number (epoch_s)"),
        (b"\xff\xfe", "payload is not JSON"),
    ]
    c = MqttConnector("c", connection(mosquitto.port), eps, maps)
    async with running(c, pub):
        await publish(
            mosquitto.port,
            [
                ("dev/d1/t", b'{"v": 1.5, "ts": 1700000000}', 1),
                *[("dev/d1/t", payload, 1) for payload, _ in bad],
                ("mm/x", b'{"a": 5, "b": [1]}', 1),
                ("dev/d1/t", b'{"v": 2.5, "ts": 1700000003}', 1),
            ],
        )
        await until(lambda: len(readings(pub)) == 3, "the good readings")
        await until(lambda: len(dead_letters(pub)) == 6, "6 dead letters")
    got = readings(pub)
    assert [r for r in got if r[0] == "d1"] == [
        ("d1", "t", 1_700_000_000_000_000, 1.5),
        ("d1", "t", 1_700_000_003_000_000, 2.5),
    ]
    assert [(i, s, v) for i, s, _, v in got if i == "m"] == [("m", "a", 5)]
    letters = dead_letters(pub)
    for (payload, words), letter in zip(bad, letters[:5], strict=True):
        assert letter["payload"] == payload
        assert letter["key"] == b"dev/d1/t"
        assert letter["error_type"] == "DecodeError"
        assert letter["reason"].startswith("endpoint {1}/t (topic dev/+/t): ")
        assert words in letter["reason"], letter["reason"]
    assert letters[5]["key"] == b"mm/x"
    assert "b ($.b): value is an array" in letters[5]["reason"]
    assert states(pub)[:2] == [("connecting", ""), ("running", "")]
    assert not any(s == "reconnecting" for s, _ in states(pub))
    assert c.metrics()["deadletters"] == 6


async def test_username_and_password_accepted_and_refused(mosquitto: Broker) -> None:
    eps = [endpoint("auth/v", "dev", "v")]
    good, wrong, anonymous = MemoryEventPublisher(), MemoryEventPublisher(), MemoryEventPublisher()
    accepted = MqttConnector(
        "c", connection(mosquitto.auth_port, username=USERNAME, password=PASSWORD), eps
    )
    refused = MqttConnector(
        "c", connection(mosquitto.auth_port, username=USERNAME, password="guess"), eps
    )
    no_login = MqttConnector("c", connection(mosquitto.auth_port), eps)
    async with (
        running(accepted, good),
        running(refused, wrong, connected=False),
        running(no_login, anonymous, connected=False),
    ):
        async with aiomqtt.Client(
            "127.0.0.1", mosquitto.auth_port, username=USERNAME, password=PASSWORD
        ) as client:
            await client.publish("auth/v", b"7", qos=1)
        await until(lambda: readings(good) != [], "a reading with valid credentials")
        for pub in (wrong, anonymous):
            await until(partial(has_state, pub, "error"), "error status")
    assert [v for *_, v in readings(good)] == [7]
    for pub in (wrong, anonymous):
        error = next(info for s, info in states(pub) if s == "error")
        assert error.startswith("Not authorized: the broker refused the connection"), error
        assert "check username and password" in error
        assert not any(s == "running" for s, _ in states(pub))
        assert readings(pub) == []
    assert PASSWORD not in repr(accepted.connection)


@pytest.mark.parametrize(
    ("host", "tls", "port_name", "outcome"),
    [
        (TLS_HOST, {"ca": True}, "tls_port", "running"),
        ("127.0.0.1", {"ca": True}, "tls_port", "IP address mismatch"),
        ("127.0.0.1", {"ca": True, "insecure": True}, "tls_port", "running"),
        (TLS_HOST, {}, "tls_port", "self-signed certificate in certificate chain"),
        (TLS_HOST, {"ca": True, "client": True}, "mtls_port", "running"),
        # the broker's alert, or (TLS 1.3: the broker closed before the client read it)
        # the EOF with the connector's hint; either way the words name the certificate
        (TLS_HOST, {"ca": True}, "mtls_port", "client certificate|certificate required"),
        (TLS_HOST, {"ca": True}, "port", "TLS handshake failed"),  # a plain port
    ],
    ids=[
        "verified",
        "mismatch",
        "insecure",
        "unknown-ca",
        "client-cert",
        "no-client-cert",
        "plain",
    ],
)
async def test_tls(
    mosquitto: Broker, host: str, tls: dict[str, bool], port_name: str, outcome: str
) -> None:
    certs = mosquitto.certs
    assert certs is not None
    settings: dict[str, Any] = {"insecure": tls.get("insecure", False)}
    if tls.get("ca"):
        settings["ca_file"] = str(certs.ca)
    if tls.get("client"):
        settings |= {"cert_file": str(certs.client_cert), "key_file": str(certs.client_key)}
    pub = MemoryEventPublisher()
    conn = connection(getattr(mosquitto, port_name), host=host, tls=settings)
    c = MqttConnector("c", conn, [endpoint("tls/v", "dev", "v")])
    async with running(c, pub, connected=False):
        await until(lambda: any(s in ("running", "error") for s, _ in states(pub)), "a state")
        if outcome == "running":
            await publish(mosquitto.port, [("tls/v", b"1", 1)])  # any listener: one broker
            await until(lambda: readings(pub) != [], "a reading over TLS")
    s = states(pub)
    if outcome == "running":
        assert ("running", "") in s and not any(st == "error" for st, _ in s)
    else:
        error = next(info for st, info in s if st == "error")
        assert any(o in error for o in outcome.split("|")), error
        assert not any(st == "running" for st, _ in s)


async def test_commands_are_published_to_the_command_topic(mosquitto: Broker) -> None:
    conn = connection(mosquitto.port, command_topic="plant/{identity}/set/{signal}")
    eps = [
        endpoint(
            "plant/+/setpoint",
            "{1}",
            "setpoint",
            writable=True,
            data_type="float64",
            scale=2.0,
            offset=1.0,
        ),
        endpoint("line/speed", "line-1", "speed", writable=True, data_type="int16"),
        endpoint("plant/+/temp", "{1}", "temp"),
    ]
    plain = connection(
        mosquitto.port, command_topic="plain/{identity}/{signal}", command_format="plain"
    )
    got: list[tuple[str, bytes]] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as observer:
        await observer.subscribe([("plant/+/set/+", 1), ("plain/#", 1)])

        async def observe() -> None:
            async for m in observer.messages:
                got.append((m.topic.value, bytes(m.payload)))

        watcher = asyncio.create_task(observe())
        pub = MemoryEventPublisher()
        c = MqttConnector("c", conn, eps)
        p = MqttConnector("p", plain, [endpoint("x/+", "{1}", "mode", writable=True)])
        async with running(c, pub), running(p, MemoryEventPublisher()):
            assert c.handles("press-9", "setpoint") and c.handles("line-1", "speed")
            assert not c.handles("press-9", "temp") and not c.handles("a/b", "setpoint")
            await c.execute({"identity": "press-9", "resource": "setpoint", "value": 21.0})
            await c.execute({"identity": "line-1", "resource": "speed", "value": 1500.0})
            await p.execute({"identity": "pump-2", "resource": "mode", "value": "auto"})
            with pytest.raises(ConnectorError, match="not writable"):
                await c.execute({"identity": "press-9", "resource": "temp", "value": 1})
            with pytest.raises(ConnectorError, match="out of range for int16"):
                await c.execute({"identity": "line-1", "resource": "speed", "value": 1e6})
            await until(lambda: len(got) == 3, "3 commands at the observer")
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    by_topic = dict(got)
    setpoint = json.loads(by_topic["plant/press-9/set/setpoint"])
    assert setpoint["value"] == (21.0 - 1.0) / 2.0
    assert (setpoint["identity"], setpoint["signal"]) == ("press-9", "setpoint")
    speed = json.loads(by_topic["plant/line-1/set/speed"])
    assert speed["value"] == 1500 and isinstance(speed["value"], int)
    assert by_topic["plain/pump-2/mode"] == b"auto"
    assert c.metrics()["commands_written"] == 2 and c.metrics()["commands_failed"] == 1


async def test_broker_restart_reconnects_and_resubscribes(fresh_broker: Broker) -> None:
    pub = MemoryEventPublisher()
    c = MqttConnector("c", connection(fresh_broker.port), [endpoint("r/+", "{1}", "v")])

    def values() -> list[Any]:
        return [v for *_, v in readings(pub)]

    async with running(c, pub):
        await publish(fresh_broker.port, [("r/a", b"1", 1)])
        await until(lambda: values() == [1], "a reading before the restart")
        fresh_broker.kill()
        await until(lambda: ("error", "Connection refused") in states(pub), "refused reconnects")
        fresh_broker.start()  # same port, no persistence: no subscriptions survive
        await until(lambda: states(pub)[-1][0] == "running", "running again")
        await publish(fresh_broker.port, [("r/a", b"2", 1), ("r/b", b"3", 0)])
        await until(lambda: values() == [1, 2, 3], "readings after the restart")
    s = states(pub)
    lost = [info for st, info in s if st == "reconnecting" and info.startswith("connection lost")]
    assert lost and "broker connection lost" in lost[0], s
    back = [info for st, info in s if st == "running"][1]
    assert back.startswith("reconnected; no data for "), s
    assert c.metrics()["reconnects"] == 1


async def test_a_peer_that_never_answers_times_out_with_a_clear_status() -> None:
    """A TCP server that accepts and stays silent (no CONNACK): not an MQTT broker."""
    peers: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pub = MemoryEventPublisher()
    c = MqttConnector("c", connection(port, connect_timeout_s=0.3), [endpoint("a", "d", "s")])
    try:
        async with running(c, pub, connected=False):
            await until(partial(has_state, pub, "error"), "an error status")
    finally:
        server.close()
        for w in peers:
            w.close()
        await server.wait_closed()
    error = next(info for s, info in states(pub) if s == "error")
    assert error == "no answer from the broker within 0.3 s (CONNACK)"


async def test_invalid_mapping_built_in_code_is_a_connection_error() -> None:
    """Mappings are not validated by a model: the connector reports them, no network."""
    pub = MemoryEventPublisher()
    maps = [MappingConfig(connection="c", topic="a/#/b", identity="x", values={"v": "$.v"})]
    c = MqttConnector("c", connection(1), [], maps)
    async with running(c, pub, connected=False):
        await until(partial(has_state, pub, "error"), "an error status")
    error = next(info for s, info in states(pub) if s == "error")
    assert error == (
        "invalid configuration: mapping 0 (topic a/#/b): '#' must be the last level of a "
        "topic filter"
    )
