"""``protocol: simulator`` and the ``simulator:`` section that is shorthand for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from millrace.connectors.commissioning import Commissioning
from millrace.connectors.simulator import SimulatorConfig, SimulatorConnector
from millrace.connectors.simulator.protocol import (
    SimulatorConnection,
    SimulatorEndpoint,
    SimulatorProtocolConnector,
)
from millrace.connectors.simulator.section import NAME, simulator_connection, with_simulator
from millrace.pipeline.cli.config import commissioning_of, load_config
from millrace.pipeline.connector import MemoryEventPublisher
from millrace.pipeline.errors import ConfigError
from millrace.pipeline.telemetry_columns import samples_of
from millrace.pipeline.topics import TELEMETRY

T0 = 1_700_000_000_000_000


def connection(**kw: object) -> SimulatorConnection:
    fields: dict[str, object] = {
        "protocol": "simulator",
        "devices": 3,
        "signals": 4,
        "interval_ms": 1000,
        "start_us": T0,
        "realtime": False,
        "max_ticks": 5,
        "batch_ms": 10,
    }
    fields.update(kw)
    return SimulatorConnection.model_validate(fields)


async def run_ticks(c: SimulatorProtocolConnector, ticks: int) -> MemoryEventPublisher:
    pub = MemoryEventPublisher()
    await c.start(pub)
    async with asyncio.timeout(20):
        while c.counters["ticks"] < ticks:
            await asyncio.sleep(0.01)
    await c.stop()
    return pub


def samples(pub: MemoryEventPublisher) -> dict[tuple[str, int], dict[str, object]]:
    out: dict[tuple[str, int], dict[str, object]] = {}
    for identity, batch in pub.published[TELEMETRY]:
        for s in samples_of(batch):
            out.setdefault((identity, s["ts_us"]), {}).update(s["values"])
    return out


async def test_publishes_what_the_device_model_generates() -> None:
    c = SimulatorProtocolConnector("sim", connection())
    got = samples(await run_ticks(c, 5))
    model = SimulatorConnector(SimulatorConfig(devices=3, signals=4, start_us=T0))
    want = {
        (identity, T0 + tick * 1_000_000): samples_of(batch)[0]["values"]
        for tick in range(5)
        for identity, batch in model.generate_tick(tick, T0 + tick * 1_000_000)
    }
    assert got == want
    assert c.counters["readings"] == 5 * 3 * 4 and c.counters["ticks"] == 5
    batches = (await run_ticks(SimulatorProtocolConnector("sim", connection()), 5)).published
    assert {b["source"] for _, b in batches[TELEMETRY]} == {"simulator:sim"}


async def test_batch_ticks_publish_the_same_readings_as_rows() -> None:
    # 7 ticks made 3 at a time (the last batch 1): each device's batches hold several
    # rows, and every reading is the model's, on the fast and on the endpoint path
    ep = SimulatorEndpoint(connection="sim", identity="sim-1", signal="temperature_0", scale=1.0)
    c = SimulatorProtocolConnector("sim", connection(max_ticks=7, batch_ticks=3), [ep])
    pub = await run_ticks(c, 7)
    model = SimulatorConnector(SimulatorConfig(devices=3, signals=4, start_us=T0))
    want = {
        (identity, T0 + tick * 1_000_000): samples_of(batch)[0]["values"]
        for tick in range(7)
        for identity, batch in model.generate_tick(tick, T0 + tick * 1_000_000)
    }
    assert samples(pub) == want
    assert max(len(b["ts_us"]) for k, b in pub.published[TELEMETRY] if k == "sim-0") >= 3
    assert c.counters["readings"] == 7 * 3 * 4 and c.counters["ticks"] == 7


async def test_endpoints_and_mappings_take_the_reading_by_reading_path() -> None:
    from millrace.connectors._common.models import MappingConfig

    ep = SimulatorEndpoint(connection="sim", identity="sim-1", signal="temperature_0", scale=10.0)
    mapping = MappingConfig(connection="sim", identity="sim-2", signal="*", rename_identity="oven")
    c = SimulatorProtocolConnector("sim", connection(max_ticks=2), [ep], [mapping])
    got = samples(await run_ticks(c, 2))
    model = SimulatorConnector(SimulatorConfig(devices=3, signals=4, start_us=T0))
    tick0 = dict(model.generate_tick(0, T0))
    assert got[("sim-1", T0)]["temperature_0"] == pytest.approx(
        10 * samples_of(tick0["sim-1"])[0]["values"]["temperature_0"]
    )
    assert got[("oven", T0)] == samples_of(tick0["sim-2"])[0]["values"]
    assert ("sim-2", T0) not in got
    assert got[("sim-0", T0)] == samples_of(tick0["sim-0"])[0]["values"]


async def test_realtime_ticks_that_fall_behind_are_skipped_and_counted() -> None:
    c = SimulatorProtocolConnector("sim", connection(interval_ms=20, realtime=True, max_ticks=None))
    pub = MemoryEventPublisher()
    await c.start(pub)
    await c.wait_connected()
    await asyncio.sleep(0.05)
    # block the loop for several intervals: the ticks due meanwhile are skipped
    import time

    time.sleep(0.2)
    async with asyncio.timeout(10):
        while c.counters["skipped_ticks"] == 0:
            await asyncio.sleep(0.01)
    await c.stop()
    assert c.counters["skipped_ticks"] >= 5
    assert c.metrics()["skipped_ticks"] == c.counters["skipped_ticks"]


async def test_a_written_value_is_reported_from_the_next_tick() -> None:
    c = SimulatorProtocolConnector("sim", connection(max_ticks=None, realtime=True, interval_ms=20))
    pub = MemoryEventPublisher()
    await c.start(pub)
    await c.wait_connected()
    await c.execute({"identity": "sim-0", "resource": "setpoint_2", "value": 55.5})
    async with asyncio.timeout(10):
        while not any(
            s["values"].get("setpoint_2") == 55.5
            for i, b in pub.published.get(TELEMETRY, [])
            if i == "sim-0"
            for s in samples_of(b)
        ):
            await asyncio.sleep(0.02)
    await c.stop()
    assert c.counters["commands_written"] == 1


# -- the simulator: section --------------------------------------------------------------


def test_the_section_is_a_simulator_connection() -> None:
    section = SimulatorConfig(devices=7, signals=3, interval_ms=250, identity_prefix="d-", seed=4)
    conn = simulator_connection(section)
    assert conn is not None
    assert (conn.devices, conn.signals, conn.interval_ms, conn.identity_prefix, conn.seed) == (
        7,
        3,
        250,
        "d-",
        4,
    )
    assert simulator_connection(SimulatorConfig(devices=0)) is None
    folded = with_simulator(None, section)
    assert folded is not None and list(folded.connections) == [NAME]


def test_the_section_joins_a_commissioning_and_refuses_a_name_clash() -> None:
    base = Commissioning(service="plant", connections={"other": connection()})
    folded = with_simulator(base, SimulatorConfig(devices=2))
    assert folded is not None
    assert set(folded.connections) == {"other", NAME} and folded.service == "plant"
    assert set(base.connections) == {"other"}  # not changed in place
    with pytest.raises(ConfigError, match=r"\$\.simulator"):
        with_simulator(Commissioning(connections={NAME: connection()}), SimulatorConfig())
    with pytest.raises(ConfigError, match=r"\$\.simulator\.devices"):
        with_simulator(None, SimulatorConfig(devices=200_000))


def test_millrace_run_config_folds_the_section(tmp_path: Path) -> None:
    path = tmp_path / "millrace.yaml"
    path.write_text("simulator:\n  devices: 5\n  signals: 3\n  interval_ms: 100\n")
    folded = commissioning_of(load_config(path))
    assert folded is not None
    conn = folded.connections[NAME]
    assert isinstance(conn, SimulatorConnection)
    assert (conn.devices, conn.signals, conn.interval_ms) == (5, 3, 100)
    # a plant's file without the section runs only its own connections
    plant = yaml.safe_dump(
        {"connections": {"sim": {"protocol": "simulator", "devices": 2}}, "service": "p"}
    )
    path.write_text(plant)
    folded = commissioning_of(load_config(path))
    assert folded is not None and list(folded.connections) == ["sim"]
    path.write_text("simulator:\n  devices: 0\n")
    assert commissioning_of(load_config(path)) is None


def test_the_batcher_packs_ticks_of_a_device_as_rows_of_one_batch() -> None:
    from millrace.connectors._common.batcher import Batcher

    model = SimulatorConnector(SimulatorConfig(devices=2, signals=7, start_us=T0))
    batcher = Batcher(max_readings=10_000)
    for tick in range(3):
        for identity, cols in model.tick_columns(tick, T0 + tick * 1_000_000):
            batcher.add_columns(identity, cols)
    taken = dict(batcher.take("simulator:sim", T0))
    assert sorted(taken) == ["sim-0", "sim-1"]
    for identity, batch in taken.items():
        assert batch["counts"] == [] and len(batch["ts_us"]) == 3  # dense, one row a tick
        want = [
            samples_of(dict(model.generate_tick(tick, T0 + tick * 1_000_000))[identity])[0]
            for tick in range(3)
        ]
        assert samples_of(batch) == want
