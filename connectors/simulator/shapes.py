"""Signal shapes of the simulated devices, vectorized over devices x signals.

Signal ``i`` has kind ``KINDS[i % len(KINDS)]`` and name ``f"{kind}_{i}"``, so the same
config always yields the same names and kinds.  Every value is a pure function of
``(seed, device, signal, tick)``: a counter-based hash (splitmix64) replaces a stateful
random generator, so a tick can be computed on its own (backfill, tests) and a device's
readings do not change when the number of devices does.

Numbers look like real sensors because the project's storage target (<= 3 bytes per
reading after ClickHouse compression) depends on it: analog values are quantized to a
fixed resolution and vary slowly, setpoints/states are piecewise constant and change
rarely, counters are integers that only grow.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

KINDS: Final = ("temperature", "pressure", "setpoint", "counter", "running", "mode")
MODES: Final = ("auto", "manual", "idle", "maintenance")
# Cumulative weights of MODES: mostly "auto", occasionally something else.
_MODE_CUMULATIVE: Final = np.array([0.70, 0.85, 0.95])

#: Sensor resolution per analog kind, as its inverse (values are ``k / scale``); an
#: integer inverse makes ``round(x * scale) / scale`` the double nearest to ``k / scale``,
#: so 21.3 serializes as ``21.3``, not ``21.300000000000001``.
SCALES: Final = {"temperature": 10, "pressure": 100, "setpoint": 2}

_MASK64: Final = (1 << 64) - 1
_GOLDEN: Final = 0x9E3779B97F4A7C15
_U64 = npt.NDArray[np.uint64]
_F64 = npt.NDArray[np.float64]


def signal_names(signals: int) -> list[str]:
    """``["temperature_0", "pressure_1", ...]`` for ``signals`` signals."""
    return [f"{KINDS[i % len(KINDS)]}_{i}" for i in range(signals)]


def signal_kind(name: str) -> str:
    """The kind of a signal named by :func:`signal_names`."""
    return name.rsplit("_", 1)[0]


def _splitmix64(x: _U64) -> _U64:
    """The splitmix64 finalizer, element-wise (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _mix(value: int) -> np.uint64:
    """splitmix64 of one Python int, computed in Python so no numpy scalar overflows."""
    z = (value * _GOLDEN + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return np.uint64(z ^ (z >> 31))


def _uniform(h: _U64) -> _F64:
    """Top 53 bits of a hash as a float in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


class _KindBlock:
    """The columns of one kind and their per-(device, signal) random streams."""

    def __init__(self, keys: _U64, first: int, signals: int) -> None:
        self.columns = slice(first, signals, len(KINDS))
        self.keys = np.ascontiguousarray(keys[:, self.columns])

    def stream(self, salt: int) -> _F64:
        """A static uniform in [0, 1) per (device, signal) for parameter ``salt``."""
        return _uniform(_splitmix64(self.keys ^ _mix(salt)))

    def at(self, salt: int, step: npt.NDArray[np.int64] | int) -> _U64:
        """A hash per (device, signal) for ``step`` (a tick or a segment index)."""
        # A second round keeps (key, step) pairs from aliasing under the XOR.
        stepped = np.asarray(step, dtype=np.int64).astype(np.uint64) * np.uint64(_GOLDEN)
        return _splitmix64(_splitmix64(self.keys ^ stepped) ^ _mix(salt))


class _Shape:
    """One kind's columns; :meth:`values` returns a (devices, n) array for them."""

    def __init__(self, block: _KindBlock) -> None:
        self.block = block

    def values(self, tick: int, t: float) -> npt.NDArray[Any]:
        raise NotImplementedError


class _Sine(_Shape):
    """base + amplitude * sin(2 pi t / period + phase) + gaussian noise, quantized."""

    def __init__(
        self,
        block: _KindBlock,
        *,
        scale: int,
        base: tuple[float, float],
        amplitude: tuple[float, float],
        period_s: tuple[float, float],
        noise: float,
    ) -> None:
        super().__init__(block)
        self.scale = scale
        self.noise = noise
        self.base = base[0] + (base[1] - base[0]) * block.stream(1)
        self.amplitude = amplitude[0] + (amplitude[1] - amplitude[0]) * block.stream(2)
        period = period_s[0] + (period_s[1] - period_s[0]) * block.stream(3)
        self.omega = 2 * math.pi / period
        self.phase = 2 * math.pi * block.stream(4)

    def values(self, tick: int, t: float) -> _F64:
        h = self.block.at(0, tick)
        # Box-Muller on the two 32-bit halves of one hash; u1 is in (0, 1].
        u1 = ((h >> np.uint64(32)).astype(np.float64) + 1.0) * (1.0 / 4294967296.0)
        u2 = (h & np.uint64(0xFFFFFFFF)).astype(np.float64) * (1.0 / 4294967296.0)
        gauss = np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * math.pi * u2)
        x = self.base + self.amplitude * np.sin(self.omega * t + self.phase) + self.noise * gauss
        result: _F64 = np.round(x * self.scale) / self.scale
        return result


class _Steps(_Shape):
    """A uniform in [0, 1) that holds for a random time per (device, signal), then
    jumps: the basis of setpoints, running flags and modes."""

    hold_s: tuple[float, float] = (900.0, 7200.0)

    def __init__(self, block: _KindBlock) -> None:
        super().__init__(block)
        self.hold = self.hold_s[0] + (self.hold_s[1] - self.hold_s[0]) * block.stream(1)
        # Offsets keep all devices from switching at the same instant.
        self.offset = self.hold * block.stream(2)

    def uniform(self, t: float) -> _F64:
        segment = np.floor((t + self.offset) / self.hold).astype(np.int64)
        return _uniform(self.block.at(0, segment))


class _Setpoint(_Steps):
    """A setpoint within 10 units of its own level, at 0.5 resolution."""

    def __init__(self, block: _KindBlock) -> None:
        super().__init__(block)
        self.low = 20.0 + 60.0 * block.stream(3)
        self.scale = SCALES["setpoint"]

    def values(self, tick: int, t: float) -> _F64:
        result: _F64 = np.round((self.low + 10.0 * self.uniform(t)) * self.scale) / self.scale
        return result


class _Running(_Steps):
    """A run flag, true 90 % of the time."""

    hold_s = (1800.0, 14400.0)

    def values(self, tick: int, t: float) -> npt.NDArray[np.bool_]:
        return self.uniform(t) < 0.9


class _Mode(_Steps):
    """An operating mode from :data:`MODES`, mostly ``auto``."""

    hold_s = (3600.0, 21600.0)
    _names: Final = np.array(MODES, dtype=object)

    def values(self, tick: int, t: float) -> npt.NDArray[np.object_]:
        index = np.searchsorted(_MODE_CUMULATIVE, self.uniform(t), side="right")
        names: npt.NDArray[np.object_] = self._names[index]
        return names


class _Counter(_Shape):
    """offset + floor(rate * t): an integer that only grows (parts produced)."""

    def __init__(self, block: _KindBlock) -> None:
        super().__init__(block)
        self.rate = 0.1 + 1.9 * block.stream(1)
        self.offset = np.floor(1_000_000 * block.stream(2))

    def values(self, tick: int, t: float) -> npt.NDArray[np.int64]:
        return (self.offset + np.floor(self.rate * t)).astype(np.int64)


def _temperature(block: _KindBlock) -> _Shape:
    scale = SCALES["temperature"]
    return _Sine(
        block, scale=scale, base=(18, 80), amplitude=(0.5, 5), period_s=(600, 3600), noise=0.05
    )


def _pressure(block: _KindBlock) -> _Shape:
    # Slower than temperature, at a finer resolution.
    scale = SCALES["pressure"]
    return _Sine(
        block, scale=scale, base=(1, 8), amplitude=(0.05, 0.5), period_s=(3600, 14400), noise=0.003
    )


# Index-aligned with KINDS.
_FACTORIES: Final = (_temperature, _pressure, _Setpoint, _Counter, _Running, _Mode)


class ShapeModel:
    """Computes the readings of ``devices`` devices x ``signals`` signals at a tick.

    Parameters (level, amplitude, period, phase, hold time, rate, ...) are drawn once
    per (seed, device, signal); :meth:`values` then costs a few numpy operations per
    kind, whatever the number of devices.  Time is ``tick * interval``: the device's
    uptime, so shapes do not depend on the wall clock.
    """

    def __init__(self, *, seed: int, devices: int, signals: int, interval_ms: int) -> None:
        self.devices = devices
        self.signals = signals
        self.interval_s = interval_ms / 1000.0
        self.names = signal_names(signals)
        device_keys = _splitmix64(np.arange(devices, dtype=np.uint64) ^ _mix(seed))
        signal_keys = _splitmix64(np.arange(signals, dtype=np.uint64) ^ _mix(~seed))
        keys = _splitmix64(device_keys[:, None] ^ (signal_keys[None, :] * np.uint64(_GOLDEN)))
        self._shapes = [
            factory(_KindBlock(keys, first, signals))
            for first, factory in enumerate(_FACTORIES[:signals])
        ]

    def columns(self, tick: int) -> list[tuple[list[int], npt.NDArray[Any]]]:
        """The readings at ``tick`` by value type: (signal indices, a (devices, n)
        array of float64, int64, bool or str objects), one entry per type."""
        t = tick * self.interval_s
        by_type: dict[str, tuple[list[int], list[npt.NDArray[Any]]]] = {}
        for shape in self._shapes:
            v = shape.values(tick, t)
            indices, arrays = by_type.setdefault(v.dtype.kind, ([], []))
            indices.extend(range(self.signals)[shape.block.columns])
            arrays.append(v)
        return [
            (indices, arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=1))
            for indices, arrays in by_type.values()
        ]

    def values(self, tick: int) -> list[list[Any]]:
        """One row per device of Python ``float | int | bool | str`` values, in the
        order of :attr:`names`."""
        t = tick * self.interval_s
        out = np.empty((self.devices, self.signals), dtype=object)
        for shape in self._shapes:
            # Assigning into an object array stores Python floats, ints, bools and strs.
            out[:, shape.block.columns] = shape.values(tick, t)
        rows: list[list[Any]] = out.tolist()
        return rows
