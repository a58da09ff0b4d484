"""The services API: install, list, show, update, enable, disable, remove, with the
connect role's services stage on the same log running them against a real Modbus
server (pymodbus); bad input (every violation with its json_path, 409, 404, parameters)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus.simulator import DataType, SimData

from millrace.api.service_files import masked, masked_placeholders
from millrace.connectors.commissioning import Commissioning
from millrace.connectors.manager import ConnectorManager
from millrace.connectors.services import ServiceApplier
from millrace.pipeline.codec import default_codec
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.services.follow import ServiceFollower
from millrace.pipeline.telemetry_columns import samples_of
from millrace.pipeline.topics import SERVICES
from tests.api.conftest import Api, assert_bad_field, error_of, uid
from tests.connectors.modbus.peer import ModbusPeer

V1 = "/api/v1"


def file(sid: str, conn: str, port: int | str, *, extra: str = "", params: str = "") -> str:
    return f"""{params}
service: {sid}
description: press line
connections:
  {conn}: {{protocol: modbus, host: 127.0.0.1, port: {port},
          reconnect: {{initial_ms: 50, max_ms: 200}}}}
endpoints:
  - {{connection: {conn}, identity: {sid}-press, signal: strokes, register: holding,
     address: 0, data_type: uint16, interval_ms: 20}}
{extra}"""


async def send(
    api: Api, method: str, path: str, body: str | None = None, key: str = "admin", **params: Any
) -> Any:
    headers = {**api.auth(api._key(key)), "content-type": "application/yaml"}
    return await api.client.request(
        method, f"{V1}{path}", content=body, headers=headers, params=params
    )


@pytest.fixture
async def peer() -> AsyncIterator[ModbusPeer]:
    p = ModbusPeer(holding=[SimData(0, values=[0] * 10, datatype=DataType.REGISTERS)])
    await p.start()
    await p.set(3, 0, [5, 6])
    yield p
    await p.stop()


class Connect:
    """The connect role's services stage on the app's log."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.manager = ConnectorManager(Commissioning())
        self.follower = ServiceFollower(
            api.log,
            default_codec(),
            LogPublisher(api.log),
            ServiceApplier(self.manager, "r1"),
            idle_s=0.02,
        )
        self.stop = asyncio.Event()

    async def __aenter__(self) -> Connect:
        await self.manager.start(LogPublisher(self.api.log))
        self.task = asyncio.create_task(self.follower.run(self.stop))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.stop.set()
        await self.task
        await self.manager.stop()

    async def settle(self) -> None:
        """Until the stage applied everything the log holds, connectors flushed."""
        for _ in range(500):
            ends = [
                (await self.api.log.offsets("services", p))[1]
                for p in range(self.api.log.partitions("services"))
            ]
            if ends == [self.follower._positions.get(p, 0) for p in range(len(ends))]:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the applier's start/stop after the fold
        for c in list(self.manager.connectors.values()):
            await c.flush()

    async def readings(self, signal: str) -> list[int]:
        for c in list(self.manager.connectors.values()):
            await c.flush()
        return [
            s["ts_us"]
            for r in await self.api.telemetry_records()
            for s in samples_of(r)
            if signal in s["values"]
        ]

    async def until(self, signal: str, n: int) -> list[int]:
        for _ in range(1000):
            got = await self.readings(signal)
            if len(got) >= n:
                return got
            await asyncio.sleep(0.01)
        raise AssertionError(f"{signal}: fewer than {n} readings")


async def test_service_lifecycle(api: Api, peer: ModbusPeer) -> None:
    sid, conn = uid("svc-"), uid("plc-")
    async with Connect(api) as connect:
        r = await send(api, "POST", "/services", file(sid, conn, peer.port))
        assert r.status_code == 201, r.text
        await connect.until("strokes", 3)

        listed = {
            s["id"]: s for s in (await send(api, "GET", "/services", key="viewer")).json()["data"]
        }
        assert listed[sid]["enabled"] is True
        assert (listed[sid]["connections"], listed[sid]["endpoints"]) == (1, 1)
        one = (await send(api, "GET", f"/services/{sid}", key="viewer")).json()["data"]
        assert one["file"]["connections"][conn]["port"] == peer.port
        ident = (await send(api, "GET", f"/identities/{sid}-press", key="viewer")).json()
        assert ident["attributes"]["source"] == f"service:{sid}", ident

        extra = (
            f"  - {{connection: {conn}, identity: {sid}-press, signal: second,"
            " register: holding, address: 1, data_type: uint16, interval_ms: 20}"
        )
        r = await send(api, "PUT", f"/services/{sid}", file(sid, conn, peer.port, extra=extra))
        assert r.status_code == 200, r.text
        assert r.json()["data"]["revision"] == 2
        await connect.until("second", 3)
        strokes = await connect.readings("strokes")
        assert len(strokes) == len(set(strokes)), "a reading doubled across the update"

        r = await send(api, "POST", f"/services/{sid}/disable")
        assert r.status_code == 200 and r.json()["data"]["enabled"] is False
        await connect.settle()
        assert connect.manager.connectors == {}
        # the connection's "disabled" status is published by the applier after it
        # stopped the connector (after the follower's position moved): fold until it is in
        for _ in range(500):
            await api.sync()
            one = (await send(api, "GET", f"/services/{sid}", key="viewer")).json()["data"]
            conns = [x for x in one["resources"] if x["resource_type"] == "connection"]
            if conns and all(x["desired_state"] == "disabled" for x in conns):
                break
            await asyncio.sleep(0.02)
        assert conns and all(x["desired_state"] == "disabled" for x in conns), conns
        assert one["deviations"] == 0
        # published after the connector stopped and flushed: nothing more comes from it
        stopped = len(await connect.readings("strokes"))
        await connect.settle()
        assert len(await connect.readings("strokes")) == stopped

        r = await send(api, "POST", f"/services/{sid}/enable")
        assert r.status_code == 200 and r.json()["data"]["status"] == "enabled"
        await connect.until("strokes", stopped + 3)

        r = await send(api, "DELETE", f"/services/{sid}")
        assert r.status_code == 204
        await connect.settle()
        assert connect.manager.connectors == {}
        assert (await send(api, "GET", f"/services/{sid}", key="viewer")).status_code == 404
        ids = [s["id"] for s in (await send(api, "GET", "/services")).json()["data"]]
        assert sid not in ids


async def test_parameters(api: Api, peer: ModbusPeer) -> None:
    sid, conn = uid("svc-"), uid("plc-")
    params = "parameters:\n  plcPort: {type: integer, description: the port}\n"
    text = file(sid, conn, '"${plcPort}"', params=params)
    r = await send(api, "POST", "/services", text)
    assert_bad_field(r, "$.parameters.plcPort")
    assert "required" in error_of(r)["details"][0]["message"]
    r = await send(api, "POST", "/services", text, parameters='{"plcPort": "x"}')
    assert_bad_field(r, "$.parameters.plcPort")
    assert "integer" in error_of(r)["message"]
    r = await send(api, "POST", "/services", text, parameters='{"nope": 1, "plcPort": 1}')
    assert_bad_field(r, "$.parameters.nope")
    async with Connect(api) as connect:
        r = await api.client.post(
            f"{V1}/services",
            json={"commissioning": text, "parameters": {"plcPort": peer.port}},
            headers=api.auth(api.admin),
        )
        assert r.status_code == 201, r.text
        assert r.json()["data"]["parameters"] == {"plcPort": peer.port}
        await connect.until("strokes", 2)
        await send(api, "DELETE", f"/services/{sid}")
        await connect.settle()


async def test_bad_input(api: Api) -> None:
    sid, conn = uid("svc-"), uid("plc-")
    bad = f"""
service: {sid}
connections:
  {conn}: {{protocol: modbus, host: 127.0.0.1, port: 99999999}}
  other: {{protocol: nope}}
endpoints:
  - {{connection: missing, identity: a, signal: b, register: holding, address: 0}}
"""
    r = await send(api, "POST", "/services", bad)
    assert r.status_code == 400, r.text
    paths = {d["json_path"] for d in error_of(r)["details"]}
    assert {
        f"$.connections.{conn}.port",
        "$.connections.other.protocol",
        "$.endpoints[0].connection",
    } <= paths
    r = await send(api, "POST", "/services", "a: [unclosed")
    assert r.status_code == 400 and error_of(r)["details"][0]["json_path"] == "$"

    good = file(sid, conn, 5020)
    assert (await send(api, "POST", "/services", good, key="viewer")).status_code == 403
    assert (await send(api, "POST", "/services", good)).status_code == 201
    r = await send(api, "POST", "/services", good)
    assert r.status_code == 409 and error_of(r)["details"][0]["field"] == "$.service"
    other = file(uid("svc-"), conn, 5020)
    r = await send(api, "POST", "/services", other)
    assert r.status_code == 409 and conn in error_of(r)["message"]
    r = await send(api, "PUT", f"/services/{sid}", file(uid("svc-"), uid("c-"), 5020))
    assert_bad_field(r, "$.service")
    for method, path in [
        ("GET", "/services/none"),
        ("PUT", "/services/none"),
        ("DELETE", "/services/none"),
        ("POST", "/services/none/enable"),
        ("POST", "/services/none/disable"),
    ]:
        r = await send(api, method, path, good if method == "PUT" else None)
        assert r.status_code == 404, (method, path, r.text)
        assert error_of(r)["details"][0]["field"] == "service_id"
    await send(api, "DELETE", f"/services/{sid}")


def test_masked_file() -> None:
    doc = {
        "connections": {"b": {"password": "hunter2", "token": "${TOKEN}", "port": 1}},
        "endpoints": [{"api_key": "k", "signal": "s"}],
    }
    assert masked(doc) == {
        "connections": {"b": {"password": "***", "token": "${TOKEN}", "port": 1}},
        "endpoints": [{"api_key": "***", "signal": "s"}],
    }


def test_a_masked_secret_sent_back_is_refused_by_path() -> None:
    doc = {
        "connections": {"b": {"password": "hunter2", "token": "${TOKEN}", "port": 1}},
        "endpoints": [{"api_key": "k", "signal": "s"}, {"signal": "***"}],
    }
    assert masked_placeholders(doc) == []
    # the file as GET /services/{id} shows it, sent back unchanged
    paths = [v.json_path for v in masked_placeholders(masked(doc))]
    assert paths == ["$.connections.b.password", "$.endpoints[0].api_key"]


async def test_put_of_a_masked_file_names_the_secret(api: Api) -> None:
    sid, conn = uid("svc-"), uid("c-")
    body = f"""
service: {sid}
connections:
  {conn}: {{protocol: mqtt, host: 127.0.0.1, port: 1883, username: u, password: "***"}}
"""
    r = await send(api, "POST", "/services", body)
    assert r.status_code == 400, r.text
    fields = [d["field"] for d in error_of(r)["details"]]
    assert f"$.connections.{conn}.password" in fields, fields


async def test_a_literal_password_is_refused_by_path_and_never_stored(api: Api) -> None:
    sid, conn = uid("svc-"), uid("c-")
    body = f"""
service: {sid}
connections:
  {conn}: {{protocol: mqtt, host: 127.0.0.1, port: 1883, username: u, password: hunter2}}
"""
    before = api.log.appended.get(SERVICES, 0)
    r = await send(api, "POST", "/services", body)
    assert r.status_code == 400, r.text
    assert "hunter2" not in r.text
    details = error_of(r)["details"]
    assert [d["field"] for d in details] == [f"$.connections.{conn}.password"]
    assert "${ENV}" in details[0]["message"]
    assert (await send(api, "GET", f"/services/{sid}")).status_code == 404
    assert api.log.appended.get(SERVICES, 0) == before  # nothing of it on the log


async def test_connector_control(api: Api, peer: ModbusPeer) -> None:
    sid, conn = uid("svc-"), uid("plc-")
    r = await send(api, "POST", f"/connectors/{conn}/stop", key="operator")
    assert r.status_code == 404  # none runs here, none reported
    async with Connect(api) as connect:
        api.ctx.connector_control = connect.manager.control
        api.ctx.connectors = connect.manager.snapshot
        assert (await send(api, "POST", "/services", file(sid, conn, peer.port))).status_code == 201
        await connect.until("strokes", 2)

        assert (
            await send(api, "POST", f"/connectors/{conn}/stop", key="viewer")
        ).status_code == 403
        r = await send(api, "POST", f"/connectors/{conn}/stop", key="operator")
        assert r.status_code == 200, r.text
        assert r.json()["data"]["desired_state"] == "stopped"
        stopped = len(await connect.readings("strokes"))
        await connect.settle()
        assert len(await connect.readings("strokes")) == stopped

        r = await send(api, "POST", f"/connectors/{conn}/start", key="operator")
        assert r.json()["data"]["desired_state"] == "running"
        await connect.until("strokes", stopped + 2)
        r = await send(api, "POST", f"/connectors/{conn}/restart", key="operator")
        assert r.status_code == 200 and r.json()["data"]["desired_state"] == "running"

        r = await send(api, "POST", "/connectors/nope/start", key="operator")
        assert r.status_code == 404 and error_of(r)["details"][0]["field"] == "name"
        r = await send(api, "POST", f"/connectors/{conn}/explode", key="operator")
        assert r.status_code in (400, 404, 422) and "action" in r.text

        codec = default_codec()
        audits = [
            codec.decode("audit", rec.value)
            for p in range(api.log.partitions("audit"))
            for rec in await api.log.read("audit", p, 0, 10_000)
        ]
        mine = [(a["action"], a["status"]) for a in audits if a["target_id"] == conn]
        assert [a for a, _ in mine if a in ("stop", "start", "restart")] == [
            "stop",
            "start",
            "restart",
        ], mine
        await send(api, "DELETE", f"/services/{sid}")
        await connect.settle()
