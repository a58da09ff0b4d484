"""The simulator protocol's entry in the registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from millrace.connectors._common.models import MappingConfig, Violation
from millrace.connectors.registry import ProtocolSpec

from .models import SimulatorConnection, SimulatorEndpoint


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
    connector_path="millrace.connectors.simulator.protocol:SimulatorProtocolConnector",
    check=check,
)
