"""Simulated devices publishing telemetry: demos, tests, benchmarks and backfill."""

from .config import SimulatorConfig
from .connector import SimulatorConnector, SimulatorStats

__all__ = ["SimulatorConfig", "SimulatorConnector", "SimulatorStats"]
