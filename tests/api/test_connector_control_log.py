"""Connector control as the distributed deployment does it, in one process: the API
runs no connector (``connector_control`` None, the connectors as they reported
themselves through the store), so ``POST /connectors/{name}/stop|start`` answers 202
and its audit event is the control event; a connect role's ``AuditFollower``
(``connectors.control``) applies it to its manager. A real Modbus peer, the real
projections (chDB)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from millrace.connectors.control import apply_control, is_connector_control
from millrace.pipeline.runtime.control_follow import AuditFollower
from millrace.projections.remote_figures import stored_connectors
from tests.api.conftest import Api, error_of, uid
from tests.api.test_services import Connect, file, peer, send  # noqa: F401
from tests.connectors.modbus.peer import ModbusPeer


def _readings(connect: Connect, conn: str) -> float:
    """What the connector counts as published (independent of the batch format)."""
    c = connect.manager.connectors.get(conn)
    return c.snapshot()["metrics"]["readings"] if c is not None else 0.0


async def _until(check: Any, what: str) -> None:
    for _ in range(1000):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not reached: {what}")


async def test_control_reaches_the_connect_role_through_the_log(
    api: Api,
    peer: ModbusPeer,  # noqa: F811
) -> None:
    sid, conn = uid("svc-"), uid("plc-")
    api.ctx.connector_control = None
    api.ctx.connectors = partial(stored_connectors, api.ctx.store)
    async with Connect(api) as connect:
        applied: list[str] = []
        manager_apply = apply_control(connect.manager)

        async def on_event(event: dict[str, Any]) -> None:
            applied.append(f"{event['action']} {event['target_id']}")
            await manager_apply(event)

        follower = AuditFollower(api.log, is_connector_control, on_event, poll_s=0.02)
        stop = asyncio.Event()
        task = asyncio.create_task(follower.run(stop))
        try:
            r = await send(api, "POST", f"/connectors/{conn}/stop", key="operator")
            assert r.status_code == 404  # not reported yet
            r = await send(api, "POST", "/services", file(sid, conn, peer.port))
            assert r.status_code == 201, r.text

            async def readings_over(n: float) -> bool:
                return _readings(connect, conn) > n

            await _until(lambda: readings_over(1), "the first readings")

            async def reported(state: str) -> bool:
                for c in connect.manager.connectors.values():
                    await c.flush()
                await api.sync()
                got = await api.get(f"/connectors/{conn}")
                return got.status_code == 200 and got.json()["data"]["desired_state"] == state

            await _until(lambda: reported("running"), "the connector's report in the store")

            r = await send(api, "POST", f"/connectors/{conn}/stop", key="operator")
            assert r.status_code == 202, r.text
            assert r.json()["data"]["desired_state"] == "stopped"
            assert r.json()["data"]["requested"] == "stop"

            async def desired(state: str) -> bool:
                c = connect.manager.connectors.get(conn)
                return c is not None and c.snapshot()["desired_state"] == state

            await _until(lambda: desired("stopped"), "the connect role stopping it")
            await connect.settle()
            stopped = _readings(connect, conn)
            await connect.settle()
            assert _readings(connect, conn) == stopped
            # the connector's own report says so, as the API shows it
            await _until(lambda: reported("stopped"), "the stopped report")

            r = await send(api, "POST", f"/connectors/{conn}/start", key="operator")
            assert r.status_code == 202 and r.json()["data"]["desired_state"] == "running"
            await _until(lambda: desired("running"), "the connect role starting it")
            await _until(lambda: readings_over(stopped + 1), "readings after the start")

            r = await send(api, "POST", "/connectors/nope/restart", key="operator")
            assert r.status_code == 404 and error_of(r)["details"][0]["field"] == "name"
            assert (
                await send(api, "POST", f"/connectors/{conn}/stop", key="viewer")
            ).status_code == 403
            # what the follower saw: the two audited requests, not the refused ones
            assert applied == [f"stop {conn}", f"start {conn}"]

            # a connect process started later follows from the log's end: the stop
            # on the log is not applied again
            late: list[str] = []
            later = AuditFollower(api.log, is_connector_control, lambda e: late.append("x"))
            assert await later.poll() == 0 and late == []
        finally:
            stop.set()
            await task
            await send(api, "DELETE", f"/services/{sid}")
            await connect.settle()
