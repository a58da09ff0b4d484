"""The simulator protocol's entry in the registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors._common.models import MappingConfig, Violation
from connectors.registry import ProtocolSpec

from .protocol import SimulatorConnection, SimulatorEndpoint

TEMPLATE = """\
# Simulated devices: try millrace without a plant, or test dashboards and alarms.
service: demo
connections:
  sim:
    protocol: simulator
    devices: 10            # identities sim-0 .. sim-9
    signals: 5             # temperature_0, pressure_1, setpoint_2, counter_3, running_4
    interval_ms: 1000
    identity_prefix: "sim-"
endpoints:
  # Endpoints are optional for the simulator: every signal is published. List one to
  # scale it, give it a unit, or to document that Commands may write it.
  - connection: sim
    identity: sim-0
    signal: setpoint_2
    unit: degC
    writable: true
"""


def check(
    name: str,
    conn: Any,
    endpoints: Sequence[tuple[int, Any]],
    mappings: Sequence[tuple[int, MappingConfig]],
) -> list[Violation]:
    out = []
    ids = {f"{conn.identity_prefix}{i}" for i in range(conn.devices)}
    for i, ep in endpoints:
        if ep.identity not in ids:
            out.append(
                Violation(
                    level="error",
                    json_path=f"$.endpoints[{i}].identity",
                    description=f"connection {name!r} simulates {conn.identity_prefix}0.."
                    f"{conn.identity_prefix}{conn.devices - 1}, not {ep.identity!r}",
                )
            )
    return out


SPEC = ProtocolSpec(
    name="simulator",
    connection_model=SimulatorConnection,
    endpoint_model=SimulatorEndpoint,
    connector_path="connectors.simulator.protocol:SimulatorProtocolConnector",
    template=TEMPLATE,
    check=check,
)
