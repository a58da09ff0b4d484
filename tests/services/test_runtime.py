"""Services applied at runtime to the connectors, against a real Modbus server
(pymodbus): the connect role's services stage (ServiceFollower + ServiceApplier) on a
log, fed ServiceEvents as the API appends them. Install -> readings; update adding an
endpoint -> the new signal, the old one without a doubled timestamp; disable -> no
readings, desired state disabled; enable -> resume; remove; parameters; a restarted
follower runs what the log says."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pymodbus.simulator import DataType, SimData

from millrace.connectors.commissioning import Commissioning
from millrace.connectors.manager import ConnectorManager
from millrace.connectors.services import ServiceApplier
from millrace.pipeline.codec import default_codec
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.events import service_event
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.services.follow import ServiceFollower
from tests.connectors.modbus.peer import ModbusPeer, readings

pytestmark = [pytest.mark.integration]


def file(port: int | str, *, extra: str = "", conn2: bool = False) -> str:
    text = f"""
service: line-1
description: press line
connections:
  plc: {{protocol: modbus, host: 127.0.0.1, port: {port},
        reconnect: {{initial_ms: 50, max_ms: 200}}}}
endpoints:
  - {{connection: plc, identity: press-1, signal: strokes, register: holding, address: 0,
     data_type: uint16, interval_ms: 20}}
{extra}"""
    if conn2:
        text = text.replace(
            "endpoints:",
            f"  plc2: {{protocol: modbus, host: 127.0.0.1, port: {port}}}\nendpoints:",
        )
    return text


class Engine:
    """A connect role's services stage over a memory log."""

    def __init__(self, log: MemoryEventLog, runner: str = "r1") -> None:
        self.log = log
        self.data = MemoryEventPublisher()
        self.manager = ConnectorManager(Commissioning())
        self.follower = ServiceFollower(
            log,
            default_codec(),
            LogPublisher(log),
            ServiceApplier(self.manager, runner),
            idle_s=0.02,
        )
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.manager.start(self.data)
        self.task = asyncio.create_task(self.follower.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
        await self.manager.stop()

    async def append(self, sid: str, kind: str, **kw: Any) -> None:
        await LogPublisher(self.log).publish("services", [(sid, service_event(sid, kind, **kw))])
        n = self.follower.applied
        await self.until(lambda: self.follower.applied > n, f"{kind} applied")

    async def until(self, check: Callable[[], bool], what: str) -> None:
        for _ in range(1000):
            for c in list(self.manager.connectors.values()):
                await c.flush()
            if check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"not reached: {what}")

    def signal(self, name: str) -> list[int]:
        return [ts for _, sig, ts, _ in readings(self.data) if sig == name]


@pytest.fixture
async def peer() -> AsyncIterator[ModbusPeer]:
    p = ModbusPeer(holding=[SimData(0, values=[0] * 10, datatype=DataType.REGISTERS)])
    await p.start()
    await p.set(3, 0, [11, 22])
    yield p
    await p.stop()


async def test_install_update_disable_enable_remove(peer: ModbusPeer) -> None:
    eng = Engine(MemoryEventLog())
    await eng.start()
    try:
        await eng.append("line-1", "installed", text=file(peer.port))
        await eng.until(lambda: len(eng.signal("strokes")) >= 3, "strokes arrive")
        first = eng.manager.connectors["plc"]

        # a new connection: the existing one is the same connector, never stopped
        setpoint = (
            "  - {connection: plc2, identity: press-1, signal: setpoint, register: holding,"
            " address: 1, data_type: uint16, interval_ms: 20}"
        )
        await eng.append("line-1", "updated", text=file(peer.port, extra=setpoint, conn2=True))
        await eng.until(lambda: len(eng.signal("setpoint")) >= 3, "setpoint arrives")
        assert eng.manager.connectors["plc"] is first
        assert set(eng.manager.connectors) == {"plc", "plc2"}

        # a new endpoint on the same connection: that connection restarts
        same = (
            "  - {connection: plc, identity: press-1, signal: second, register: holding,"
            " address: 1, data_type: uint16, interval_ms: 20}"
        )
        await eng.append("line-1", "updated", text=file(peer.port, extra=same))
        await eng.until(lambda: len(eng.signal("second")) >= 3, "second arrives")
        assert "plc2" not in eng.manager.connectors
        strokes = eng.signal("strokes")
        assert len(strokes) == len(set(strokes)), "a reading doubled across the update"
        assert strokes == sorted(strokes)

        await eng.append("line-1", "disabled")
        assert eng.manager.connectors == {}
        disabled = [e for _, e in eng.data.published["status"] if e["desired_state"] == "disabled"]
        assert {e["resource_id"] for e in disabled} == {first.resource_id}
        assert all(e["current_state"] == "disabled" for e in disabled)
        before = len(eng.signal("strokes"))
        await eng.append("other", "installed", text="service: other\n")  # a later change
        assert len(eng.signal("strokes")) == before

        await eng.append("line-1", "enabled")
        await eng.until(lambda: len(eng.signal("strokes")) >= before + 3, "resumed")

        await eng.append("line-1", "removed")
        assert eng.manager.connectors == {}
    finally:
        await eng.close()


async def test_restart_keeps_services_and_their_state(peer: ModbusPeer) -> None:
    log = MemoryEventLog()
    eng = Engine(log)
    await eng.start()
    await eng.append("line-1", "installed", text=file(peer.port))
    await eng.append(
        "line-2",
        "installed",
        text=file(peer.port).replace("line-1", "line-2").replace("plc", "plc-b"),
    )
    await eng.append("line-2", "disabled")
    await eng.close()

    again = Engine(log)
    await again.start()
    try:
        await again.until(lambda: len(again.signal("strokes")) >= 2, "line-1 runs again")
        assert set(again.manager.connectors) == {"plc"}  # line-2 stays disabled
    finally:
        await again.close()


async def test_parameters_and_runner_assignment(peer: ModbusPeer) -> None:
    text = "parameters:\n  plcPort: {type: integer}\n" + file('"${plcPort}"')
    eng = Engine(MemoryEventLog(), runner="r1")
    await eng.start()
    try:
        await eng.append("line-1", "installed", text=text, runners=["r2"])
        assert eng.manager.connectors == {}  # assigned to another runner
        await eng.append("line-1", "updated", text=text, parameters={"plcPort": peer.port})
        await eng.until(lambda: len(eng.signal("strokes")) >= 2, "strokes with parameters")
        assert eng.manager.connectors["plc"].connection.port == peer.port  # type: ignore[attr-defined]
    finally:
        await eng.close()


def test_parameters_in_a_file_on_its_own() -> None:
    from millrace.connectors.commissioning import validate_text

    text = (
        "parameters:\n  plcPort: {type: integer}\n  host: {type: string, default: 127.0.0.1}\n"
        + file('"${plcPort}"').replace("127.0.0.1", '"${host}"')
    )
    c, violations = validate_text(text, env={})
    assert c is not None and c.connections["plc"].host == "127.0.0.1"  # type: ignore[attr-defined]
    assert [(v.level, v.json_path) for v in violations] == [("warning", "$.parameters.plcPort")]
    c, violations = validate_text(text.replace("{type: integer}", "{type: integer, default: x}"))
    assert c is None and violations[0].json_path == "$.parameters.plcPort.default"
    assert c is None
    doc_bad = "parameters:\n  p: {type: date}\n" + file(502)
    c, violations = validate_text(doc_bad, env={})
    assert c is None and violations[0].json_path == "$.parameters.p.type"
