"""Resource states, deviations and runners through the API: status events appended to
the log and folded by the runtime, identities' desired state as resources, filters,
paging, bad parameters; and a Modbus connector against a real pymodbus server whose
connection deviates while the server is down and recovers when it returns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymodbus.simulator import DataType, SimData

from millrace.connectors.modbus import ModbusConnection, ModbusEndpoint
from millrace.connectors.modbus.connector import ModbusConnector
from millrace.pipeline.heartbeat import RunnerHeartbeat
from millrace.pipeline.topics import STATUS
from tests.api.conftest import NOW_US, V1, Api, assert_bad_field, uid
from tests.connectors.modbus.peer import ModbusPeer

S = 1_000_000


def status(
    rid: str, service: str, current: str, ts: int, desired: str = "running", runner: str = ""
) -> tuple[str, dict[str, Any]]:
    return rid, {
        "resource_id": rid,
        "service_id": service,
        "resource_type": "connection",
        "desired_state": desired,
        "current_state": current,
        "info": f"{current} info",
        "runner": runner or None,
        "ts_us": ts,
        "metrics": {"readings": 3.0},
    }


async def get_json(api: Api, path: str, **params: Any) -> dict[str, Any]:
    r = await api.get(path, **params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"data", "meta"}
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [row["resource_id"] for row in body["data"]]


async def test_states_deviations_and_counts(api: Api) -> None:
    a, b = uid("svc-a"), uid("svc-b")
    p = uid("r")
    events = [
        status(f"{p}:1", a, "running", NOW_US - 50 * S),
        status(f"{p}:2", a, "running", NOW_US - 40 * S),
        status(f"{p}:2", a, "error", NOW_US - 30 * S),  # deviates from here on
        status(f"{p}:3", a, "stopped", NOW_US - 20 * S, desired="stopped"),
        status(f"{p}:4", b, "reconnecting", NOW_US - 10 * S),
    ]
    await api.ctx.publisher.publish(STATUS, events)
    await api.sync()

    body = await get_json(api, "/resources/states", service_ids=f"{a},{b}")
    assert ids(body) == [f"{p}:1", f"{p}:2", f"{p}:3", f"{p}:4"]
    assert body["meta"]["pagination"] == {
        "total_pages": 1,
        "total_rows": 4,
        "page_number": 1,
        "rows_in_page": 4,
        "next_page": None,
    }
    row = body["data"][1]
    assert row == {
        "resource_id": f"{p}:2",
        "service_id": a,
        "resource_type": "connection",
        "desired_state": "running",
        "current_state": "error",
        "deviated": True,
        "info": "error info",
        "runner": None,
        "timestamp": "2025-06-01T11:59:30Z",
        "since": "2025-06-01T11:59:30Z",
        "deviated_since": "2025-06-01T11:59:30Z",
        "metrics": {"readings": 3.0},
    }
    assert body["data"][0]["deviated"] is False and body["data"][0]["deviated_since"] is None

    # repeated parameters, the deviated filter, resource ids winning over service ids
    body = await get_json(api, "/resources/states", service_ids=[a, b], deviated="false")
    assert ids(body) == [f"{p}:1", f"{p}:3"]
    body = await get_json(api, "/resources/states", service_ids=a, deviated="true")
    assert ids(body) == [f"{p}:2"]
    body = await get_json(api, "/resources/states", service_ids=a, resource_ids=f"{p}:4")
    assert ids(body) == [f"{p}:4"]

    body = await get_json(api, "/resources/states/deviations", service_ids=f"{a},{b}")
    assert ids(body) == [f"{p}:2", f"{p}:4"]
    body = await get_json(api, "/resources/states/deviations/count", service_ids=[a, b])
    assert body["data"] == [{"service_id": a, "count": 1}, {"service_id": b, "count": 1}]

    # paging: one row per page, epoch times
    body = await get_json(
        api, "/resources/states", service_ids=a, items_per_page=1, page=2, epoch="us"
    )
    assert ids(body) == [f"{p}:2"] and body["data"][0]["timestamp"] == NOW_US - 30 * S
    assert body["meta"]["pagination"] == {
        "total_pages": 3,
        "total_rows": 3,
        "page_number": 2,
        "rows_in_page": 1,
        "next_page": 3,
    }
    body = await get_json(api, "/resources/states", service_ids=a, items_per_page=2, page=9)
    assert body["data"] == [] and body["meta"]["pagination"]["next_page"] is None

    # the resource recovers: out of the deviations
    await api.ctx.publisher.publish(STATUS, [status(f"{p}:2", a, "running", NOW_US)])
    await api.sync()
    body = await get_json(api, "/resources/states/deviations", service_ids=a)
    assert body["data"] == []


async def test_identity_desired_state_is_a_resource(api: Api) -> None:
    sp = uid("sp")
    r = await api.client.put(
        f"{V1}/resources/{sp}", json={"settable": True}, headers=api.auth(api.admin)
    )
    assert r.status_code in (200, 201), r.text
    name = uid("dev")
    r = await api.client.post(
        f"{V1}/identities", json={"identity": name}, headers=api.auth(api.operator)
    )
    assert r.status_code == 201, r.text
    r = await api.client.post(
        f"{V1}/identities/{name}/state", json={sp: 42.5}, headers=api.auth(api.operator)
    )
    assert r.status_code == 202, r.text
    rid = f"identity:{name}/{sp}"

    body = await get_json(api, "/resources/states", resource_ids=rid)
    [row] = body["data"]
    assert (row["service_id"], row["resource_type"]) == ("identities", "identity_state")
    assert (row["desired_state"], row["current_state"], row["deviated"]) == ("42.5", "", True)
    assert row["info"] == "pending"
    deviations = await get_json(api, "/resources/states/deviations", resource_ids=rid)
    assert ids(deviations) == [rid]

    # the device reports the set value: no longer deviated, as the state endpoint shows
    r = await api.ingest(name, [{"timestamp": NOW_US, "values": {sp: 42.5}}])
    assert r.status_code in (200, 202), r.text
    await api.sync()
    state = (await api.get(f"/identities/{name}/state")).json()[sp]
    assert state["set"] == state["reported"] == 42.5
    [row] = (await get_json(api, "/resources/states", resource_ids=rid))["data"]
    assert (row["current_state"], row["deviated"]) == ("42.5", False)
    assert (await get_json(api, "/resources/states/deviations", resource_ids=rid))["data"] == []


async def test_runners_misses_and_health(api: Api) -> None:
    fresh, late = uid("host"), uid("host")
    await RunnerHeartbeat(
        api.ctx.publisher, fresh, interval_s=10, clock=lambda: NOW_US - 25 * S
    ).beat()
    await RunnerHeartbeat(
        api.ctx.publisher, late, interval_s=10, clock=lambda: NOW_US - 45 * S
    ).beat("running")
    await api.sync()
    body = await get_json(api, "/resource-runners", items_per_page=10_000)
    runners = {r["runner"]: r for r in body["data"]}
    assert runners[fresh]["misses"] == 1 and runners[fresh]["healthy"] is True
    assert runners[late]["misses"] == 3 and runners[late]["healthy"] is False
    assert runners[fresh]["last"] == "2025-06-01T11:59:35Z"
    assert runners[fresh]["interval_s"] == 10.0 and runners[fresh]["state"] == "running"
    assert runners[fresh]["service_ids"] == ["millrace"]
    assert body["meta"]["pagination"]["total_rows"] >= 2


async def test_bad_parameters_name_the_field(api: Api) -> None:
    for path in (
        "/resources/states",
        "/resources/states/deviations",
        "/resources/states/deviations/count",
        "/resource-runners",
    ):
        assert_bad_field(await api.get(path, page=0), "page")
        assert_bad_field(await api.get(path, items_per_page=0), "items_per_page")
        assert_bad_field(await api.get(path, items_per_page=10_001), "items_per_page")
        assert_bad_field(await api.get(path, page="x"), "page")
        r = await api.get(path, key=None)
        assert r.status_code == 401
    assert_bad_field(await api.get("/resources/states", deviated="maybe"), "deviated")
    assert_bad_field(await api.get("/resources/states", epoch="days"), "epoch")
    too_many = ",".join(f"s{i}" for i in range(1001))
    assert_bad_field(await api.get("/resources/states", service_ids=too_many), "service_ids")
    assert_bad_field(
        await api.get("/resources/states/deviations", resource_ids=too_many), "resource_ids"
    )


# -- a real device going away and coming back ---------------------------------------------


async def catch_up(api: Api) -> None:
    """Run the projections over what the log holds now; unlike ``api.sync`` it does not
    chase a connector that keeps publishing."""
    for _ in range(20):
        if await api.runtime.step() == 0:
            return


async def poll(
    api: Api, check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 8.0
) -> None:
    """Run the projections until ``await check()`` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await catch_up(api)
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached within {timeout_s} s: {what}")


async def connection_errors(api: Api, start_us: int, end_us: int) -> int:
    r = await api.get(
        "/metrics/devices",
        metric_name="connection_error",
        aggregate_fn="count",
        start_time=start_us,
        end_time=end_us,
        epoch="us",
    )
    assert r.status_code == 200, r.text
    return sum(int(p["value"]) for p in r.json()["points"])


@pytest.mark.integration
async def test_modbus_deviation_appears_when_the_server_stops_and_clears(api: Api) -> None:
    peer = ModbusPeer([SimData(0, values=[5, 6], datatype=DataType.REGISTERS)])
    await peer.start()
    name, service, runner = uid("plc"), uid("svc"), uid("host")
    rid = f"modbus:{name}"
    connection = ModbusConnection(
        protocol="modbus",
        host="127.0.0.1",
        port=peer.port,
        timeout_ms=500,
        batch_ms=100,
        reconnect={"initial_ms": 50, "max_ms": 200, "jitter": 0},
    )
    endpoint = ModbusEndpoint(
        connection=name,
        identity=uid("m"),
        signal="a",
        register="holding",
        address=0,
        interval_ms=200,
    )
    c = ModbusConnector(
        name, connection, [endpoint], service=service, runner=runner, status_interval_s=0.5
    )
    window = (time.time_ns() // 1000 - 120 * S, time.time_ns() // 1000 + 600 * S)
    errors_before = await connection_errors(api, *window)

    async def deviations() -> list[dict[str, Any]]:
        body = await get_json(api, "/resources/states/deviations", resource_ids=rid)
        return body["data"]

    async def state() -> dict[str, Any] | None:
        data = (await get_json(api, "/resources/states", resource_ids=rid))["data"]
        return data[0] if data else None

    async def running() -> bool:
        s = await state()
        return s is not None and s["current_state"] == "running" and not await deviations()

    await c.start(api.ctx.publisher)
    try:
        await poll(api, running, "connection running, no deviation")

        await peer.stop()

        async def deviated() -> bool:
            rows = await deviations()
            return bool(rows) and rows[0]["current_state"] in ("reconnecting", "error")

        await poll(api, deviated, "deviation while the server is down")
        [row] = await deviations()
        assert row["desired_state"] == "running" and row["service_id"] == service
        assert row["runner"] == runner and row["deviated_since"] is not None
        count = await get_json(api, "/resources/states/deviations/count", service_ids=service)
        assert count["data"] == [{"service_id": service, "count": 1}]
        # a few failed attempts while down (reconnect backoff 50-200 ms)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while c.metrics()["connect_errors"] < 2 and loop.time() < deadline:
            await asyncio.sleep(0.05)

        await peer.start()  # the same port
        await poll(api, running, "deviation cleared when the server returned")
    finally:
        await c.stop()
        await peer.stop()
    await api.sync()  # the connector stopped: the log ends
    final = await state()
    assert final is not None
    assert (final["desired_state"], final["current_state"], final["deviated"]) == (
        "stopped",
        "stopped",
        False,
    )
    # every failed attempt is one connection_error, though the state changed only once
    failed = int(c.metrics()["connect_errors"])
    assert failed >= 2
    assert await connection_errors(api, *window) - errors_before == failed
    runners = (await get_json(api, "/resource-runners", items_per_page=10_000))["data"]
    assert service in {r["runner"]: r for r in runners}[runner]["service_ids"]
