"""The ``opcua`` protocol: models, semantic checks and the commissioning template."""

from __future__ import annotations

from millrace.connectors.registry import ProtocolSpec

from .config import OpcuaConnection, OpcuaEndpoint, check

SPEC = ProtocolSpec(
    name="opcua",
    connection_model=OpcuaConnection,
    endpoint_model=OpcuaEndpoint,
    connector_path="millrace.connectors.opcua.connector:OpcuaConnector",
    requires=("asyncua", "cryptography"),
    extra="opcua",
    check=check,
)
