"""Tests of the simulator connector (connectors/simulator)."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from millrace.connectors.simulator import SimulatorConfig, SimulatorConnector
from millrace.connectors.simulator import connector as simulator_connector
from millrace.connectors.simulator.connector import schedule
from millrace.connectors.simulator.shapes import KINDS, MODES, SCALES, signal_names
from millrace.pipeline.connector import Event, EventPublisher, MemoryEventPublisher
from millrace.pipeline.errors import ConnectorError
from millrace.pipeline.telemetry_columns import samples_of

START_US = 1_700_000_000_000_000


class CountingPublisher(MemoryEventPublisher):
    """Records the size of every publish call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        self.calls.append((topic, len(events)))
        await super().publish(topic, events)


class FlakyPublisher(EventPublisher):
    """Fails every other call."""

    def __init__(self) -> None:
        self.calls = 0

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        self.calls += 1
        if self.calls % 2:
            raise OSError("log unreachable")


class SlowPublisher(MemoryEventPublisher):
    """The first publish takes ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def publish(self, topic: str, events: Sequence[tuple[str, Event]]) -> None:
        if self.delay:
            delay, self.delay = self.delay, 0.0
            await asyncio.sleep(delay)
        await super().publish(topic, events)


def make(**overrides: Any) -> SimulatorConnector:
    fields: dict[str, Any] = {"devices": 3, "signals": 12, "start_us": START_US, "seed": 7}
    fields.update(overrides)
    return SimulatorConnector(SimulatorConfig(**fields))


def values_of(event: Event) -> dict[str, Any]:
    samples = samples_of(event)
    assert len(samples) == 1
    values: dict[str, Any] = samples[0]["values"]
    return values


async def run_fast(connector: SimulatorConnector, publisher: EventPublisher) -> None:
    await connector.start(publisher)
    # a guard against a hang, not a speed limit: a loaded machine may take seconds
    await asyncio.wait_for(connector.wait(), timeout=120)
    await connector.stop()


# -- config ------------------------------------------------------------------------------


def test_config_defaults() -> None:
    config = SimulatorConfig()
    assert (config.devices, config.signals, config.interval_ms) == (100, 10, 1000)
    assert config.identity_prefix == "sim-"
    assert config.start_us is None and config.max_ticks is None and config.realtime


@pytest.mark.parametrize(
    "fields",
    [
        {"devices": -1},
        {"signals": 0},
        {"signals": 1001},
        {"interval_ms": 0},
        {"batch_ticks": 0},
        {"devicez": 10},
    ],
)
def test_config_rejects(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SimulatorConfig(**fields)


def test_sample_yaml_validates() -> None:
    path = Path(__file__).parents[3] / "connectors" / "simulator" / "section.yaml"
    section = yaml.safe_load(path.read_text())["simulator"]
    assert SimulatorConfig.model_validate(section) == SimulatorConfig()


# -- generate_tick -----------------------------------------------------------------------


def test_tick_has_one_batch_per_device() -> None:
    connector = make()
    events = connector.generate_tick(0, START_US)
    assert [key for key, _ in events] == ["sim-0", "sim-1", "sim-2"]
    for key, event in events:
        assert event["identity"] == key
        assert event["source"] == "simulator"
        assert event["received_us"] == START_US
        assert samples_of(event)[0]["ts_us"] == START_US
        assert samples_of(event)[0]["quality"] == 0
        assert list(values_of(event)) == signal_names(12)


def test_signal_names_round_robin() -> None:
    assert signal_names(8) == [
        "temperature_0",
        "pressure_1",
        "setpoint_2",
        "counter_3",
        "running_4",
        "mode_5",
        "temperature_6",
        "pressure_7",
    ]
    assert make(signals=1).signal_names == ["temperature_0"]


def test_same_seed_same_readings() -> None:
    a, b = make(), make()
    for tick in (0, 1, 500, 86_400):
        assert a.generate_tick(tick, START_US) == b.generate_tick(tick, START_US)
    assert a.generate_tick(5, START_US) != make(seed=8).generate_tick(5, START_US)


def test_device_readings_do_not_depend_on_device_count() -> None:
    few = make(devices=2).generate_tick(42, START_US)
    many = make(devices=50).generate_tick(42, START_US)
    assert few == many[:2]


def test_shapes() -> None:
    connector = make(devices=20, signals=len(KINDS) * 2)
    ticks = [connector.generate_tick(tick, START_US) for tick in range(0, 7200, 10)]
    series: dict[tuple[str, str], list[Any]] = {}
    for events in ticks:
        for identity, event in events:
            for signal, value in values_of(event).items():
                series.setdefault((identity, signal), []).append(value)
    for (_, signal), values in series.items():
        kind = signal.rsplit("_", 1)[0]
        if kind in SCALES:
            scale = SCALES[kind]
            assert all(type(v) is float for v in values)
            assert all(math.isclose(v * scale, round(v * scale), abs_tol=1e-6) for v in values)
            # Slowly varying: consecutive samples 10 s apart stay close.
            assert max(abs(x - y) for x, y in itertools.pairwise(values)) < 15
        elif kind == "counter":
            assert all(type(v) is int for v in values)
            assert values == sorted(values) and values[-1] > values[0]
        elif kind == "running":
            assert all(type(v) is bool for v in values)
        else:
            assert kind == "mode"
            assert set(values) <= set(MODES)
    # Steps change rarely: a few times in two hours, not every sample.
    setpoints = [v for (_, s), v in series.items() if s.startswith("setpoint")]
    changes = sum(sum(a != b for a, b in itertools.pairwise(v)) for v in setpoints)
    assert 0 < changes < len(setpoints) * 20


async def test_write_overrides_reported_value() -> None:
    connector = make()
    await connector.write("sim-1", "setpoint_2", 55)
    await connector.write("sim-1", "running_4", False)
    await connector.write("sim-1", "mode_5", "manual")
    for tick in (0, 100):
        events = dict(connector.generate_tick(tick, START_US))
        values = values_of(events["sim-1"])
        assert values["setpoint_2"] == 55.0 and type(values["setpoint_2"]) is float
        assert values["running_4"] is False
        assert values["mode_5"] == "manual"
        assert values_of(events["sim-0"]) == values_of(make().generate_tick(tick, START_US)[0][1])


@pytest.mark.parametrize(
    ("identity", "signal", "value"),
    [
        ("sim-9", "setpoint_2", 1.0),
        ("sim-0", "nope_3", 1.0),
        ("sim-0", "counter_3", 1.5),
        ("sim-0", "counter_3", True),
        ("sim-0", "setpoint_2", True),
        ("sim-0", "running_4", 1),
        ("sim-0", "mode_5", 3),
    ],
)
async def test_write_rejects(identity: str, signal: str, value: Any) -> None:
    with pytest.raises(ConnectorError):
        await make().write(identity, signal, value)


# -- the tick loop -----------------------------------------------------------------------


async def test_one_publish_per_tick() -> None:
    connector = make(realtime=False, max_ticks=5)
    publisher = CountingPublisher()
    await run_fast(connector, publisher)
    assert publisher.calls == [("telemetry", 3)] * 5
    published = publisher.published["telemetry"]
    assert [key for key, _ in published] == ["sim-0", "sim-1", "sim-2"] * 5
    stats = connector.stats
    assert (stats.ticks, stats.batches, stats.readings) == (5, 15, 15 * 12)
    assert stats.skipped_ticks == stats.errors == 0


async def test_batch_ticks_publish_rows_of_consecutive_ticks() -> None:
    # 7 ticks in batches of 3: publishes of 3, 3 and 1 rows per device, the rows the
    # same readings (a written value included) and times as one tick at a time
    batched = make(realtime=False, max_ticks=7, interval_ms=250, batch_ticks=3)
    single = make(realtime=False, max_ticks=7, interval_ms=250)
    for connector in (batched, single):
        await connector.write("sim-1", "mode_5", "maintenance")
    publishers = CountingPublisher(), CountingPublisher()
    for connector, publisher in zip((batched, single), publishers, strict=True):
        await run_fast(connector, publisher)
    assert publishers[0].calls == [("telemetry", 3)] * 3
    rows = [len(e["ts_us"]) for k, e in publishers[0].published["telemetry"] if k == "sim-0"]
    assert rows == [3, 3, 1]
    for device in ("sim-0", "sim-1", "sim-2"):
        as_rows = [
            sample
            for published in publishers
            for sample in [
                s for k, e in published.published["telemetry"] if k == device for s in samples_of(e)
            ]
        ]
        assert as_rows[:7] == as_rows[7:]
        assert [s["ts_us"] for s in as_rows[:7]] == [START_US + i * 250_000 for i in range(7)]
        if device == "sim-1":
            assert {s["values"]["mode_5"] for s in as_rows} == {"maintenance"}
    stats = batched.stats
    assert (stats.ticks, stats.batches, stats.readings) == (7, 9, 7 * 3 * 12)


def test_generate_ticks_is_consecutive_ticks_as_rows() -> None:
    connector = make(signals=25)
    block = connector.generate_ticks(40, 4, START_US, 1_000)
    for d, (identity, event) in enumerate(block):
        expected = [
            samples_of(connector.generate_tick(40 + r, START_US + r * 1_000)[d][1])[0]
            for r in range(4)
        ]
        assert samples_of(event) == expected, identity
        assert event["counts"] == [] and len(event["doubles"]) % 4 == 0


async def test_simulated_time_advances_by_interval() -> None:
    connector = make(realtime=False, max_ticks=4, interval_ms=250)
    publisher = MemoryEventPublisher()
    await run_fast(connector, publisher)
    stamps = [
        samples_of(e)[0]["ts_us"] for k, e in publisher.published["telemetry"] if k == "sim-0"
    ]
    assert stamps == [START_US + i * 250_000 for i in range(4)]


async def test_wall_clock_anchors_time() -> None:
    connector = SimulatorConnector(
        SimulatorConfig(devices=1, signals=1, realtime=False, max_ticks=3),
        clock=lambda: 5_000_000,
    )
    publisher = MemoryEventPublisher()
    await run_fast(connector, publisher)
    assert [samples_of(e)[0]["ts_us"] for _, e in publisher.published["telemetry"]] == [
        5_000_000,
        6_000_000,
        7_000_000,
    ]


async def test_backfill_never_waits_and_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    """``realtime: false`` generates every tick at once: the connector only yields to
    the loop (sleeps of 0), it never waits for a tick's time (200 ticks of 1 s each)."""
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(delay: float, *args: Any) -> Any:
        slept.append(delay)
        return await real_sleep(0, *args)

    monkeypatch.setattr(simulator_connector.asyncio, "sleep", recorded)
    outputs = []
    for _ in range(2):
        publisher = MemoryEventPublisher()
        connector = make(devices=100, signals=25, realtime=False, max_ticks=200)
        await run_fast(connector, publisher)
        assert connector.stats.readings == 100 * 25 * 200
        outputs.append(publisher.published["telemetry"])
    assert slept and set(slept) == {0}, sorted(set(slept))
    assert outputs[0] == outputs[1]


async def test_realtime_ticks_on_schedule() -> None:
    connector = make(interval_ms=20, max_ticks=5, start_us=None)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await run_fast(connector, MemoryEventPublisher())
    # Tick 0 is immediate, tick 4 is due 80 ms later.
    assert 0.07 <= loop.time() - started < 1.0
    assert connector.stats.ticks == 5


async def test_start_stop_idempotent_and_restart_continues() -> None:
    connector = make(interval_ms=10)
    publisher = MemoryEventPublisher()
    await connector.stop()
    await connector.start(publisher)
    await connector.start(publisher)
    await asyncio.sleep(0.05)
    await connector.stop()
    await connector.stop()
    ticks = connector.stats.ticks
    assert ticks >= 1
    await asyncio.sleep(0.03)
    assert connector.stats.ticks == ticks
    await connector.start(publisher)
    await asyncio.sleep(0.03)
    await connector.stop()
    stamps = [
        samples_of(e)[0]["ts_us"] for k, e in publisher.published["telemetry"] if k == "sim-0"
    ]
    assert stamps == sorted(set(stamps)) and len(stamps) > ticks


async def test_no_devices_publishes_nothing() -> None:
    connector = make(devices=0, realtime=False, max_ticks=3)
    publisher = CountingPublisher()
    await run_fast(connector, publisher)
    assert publisher.calls == [] and connector.stats.ticks == 0


async def test_publisher_errors_are_counted_not_fatal() -> None:
    connector = make(realtime=False, max_ticks=6)
    publisher = FlakyPublisher()
    await run_fast(connector, publisher)
    stats = connector.stats
    assert (stats.ticks, stats.errors, stats.batches) == (6, 3, 9)


async def test_falling_behind_skips_ticks() -> None:
    connector = make(interval_ms=10, max_ticks=3, start_us=0)
    publisher = SlowPublisher(delay=0.06)
    await run_fast(connector, publisher)
    stats = connector.stats
    assert stats.ticks == 3 and stats.skipped_ticks >= 3
    stamps = [
        samples_of(e)[0]["ts_us"] for k, e in publisher.published["telemetry"] if k == "sim-0"
    ]
    # The late ticks keep the time grid: a gap, not a burst of old timestamps.
    assert stamps[1] - stamps[0] >= 40_000 and all(s % 10_000 == 0 for s in stamps)


@pytest.mark.parametrize(
    ("tick", "now", "expected"),
    [
        (0, 0.0, (0, 0, 0.0)),
        (3, 2.5, (3, 0, 0.5)),
        (3, 3.5, (3, 0, 0.0)),
        (3, 4.0, (4, 1, 0.0)),
        (3, 9.2, (9, 6, 0.0)),
    ],
)
def test_schedule(tick: int, now: float, expected: tuple[int, int, float]) -> None:
    assert schedule(tick, 0.0, 1.0, now) == pytest.approx(expected)
