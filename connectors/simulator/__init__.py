"""Simulated devices publishing telemetry: demos, tests, benchmarks and backfill."""

from typing import TYPE_CHECKING

from millrace.pipeline.lazy import lazy_exports

from .config import SimulatorConfig

if TYPE_CHECKING:
    from .connector import SimulatorConnector, SimulatorStats

# the connector (numpy) is imported on first use: the configuration model is not
__getattr__ = lazy_exports(
    __name__, {"SimulatorConnector": "connector", "SimulatorStats": "connector"}
)

__all__ = ["SimulatorConfig", "SimulatorConnector", "SimulatorStats"]
