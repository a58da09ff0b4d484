"""The ``simulator:`` section of ``millrace run``: shorthand for a simulator connection.

``simulator: {devices: 100, signals: 10}`` runs exactly what a commissioning file with
``connections: {simulator: {protocol: simulator, devices: 100, signals: 10}}`` runs: a
:class:`~millrace.connectors.simulator.protocol.SimulatorProtocolConnector` named ``simulator``
(resource ``simulator:simulator``), with status, store-and-forward and batching like
every connector. ``devices: 0`` turns it off.
"""

from __future__ import annotations

from dataclasses import replace

from pydantic import ValidationError

from millrace.connectors.commissioning import Commissioning
from millrace.pipeline.errors import ConfigError

from .config import SimulatorConfig
from .models import SimulatorConnection

#: the connection's name (and so its resource ``simulator:simulator``)
NAME = "simulator"


def simulator_connection(section: SimulatorConfig) -> SimulatorConnection | None:
    """The connection the section stands for; None when it has no devices."""
    if section.devices == 0:
        return None
    try:
        return SimulatorConnection.model_validate(
            {"protocol": "simulator", **section.model_dump(exclude_none=True)}
        )
    except ValidationError as exc:
        lines = [
            f"error $.simulator.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from exc


def with_simulator(
    commissioning: Commissioning | None, section: SimulatorConfig
) -> Commissioning | None:
    """``commissioning`` with the section's connection added (unchanged without devices);
    ConfigError when the commissioning already has a connection of that name."""
    connection = simulator_connection(section)
    if connection is None:
        return commissioning
    base = commissioning or Commissioning()
    if NAME in base.connections:
        raise ConfigError(
            f"error $.simulator: the commissioning already has a connection named {NAME!r}; "
            "remove the simulator: section or rename that connection"
        )
    return replace(base, connections={**base.connections, NAME: connection})
