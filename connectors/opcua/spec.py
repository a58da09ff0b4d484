"""The ``opcua`` protocol: models, semantic checks and the commissioning template."""

from __future__ import annotations

from connectors.registry import ProtocolSpec

from .config import OpcuaConnection, OpcuaEndpoint, check

SPEC = ProtocolSpec(
    name="opcua",
    connection_model=OpcuaConnection,
    endpoint_model=OpcuaEndpoint,
    connector_path="connectors.opcua.connector:OpcuaConnector",
    check=check,
)
