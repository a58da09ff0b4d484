"""The ``opcua`` protocol: models, semantic checks and the commissioning template."""

from __future__ import annotations

from connectors.registry import ProtocolSpec

from .config import OpcuaConnection, OpcuaEndpoint, check

TEMPLATE = """\
# millrace commissioning file: one OPC UA server.
# Validate with `millrace validate FILE`; list the server's variables with
# `millrace browse opc.tcp://HOST:4840`.
version: 1
service: plant-a

connections:
  line1-plc:
    protocol: opcua
    url: opc.tcp://plc-line1.example.local:4840   # or host: / port: / path:
    # Secure channel: None, or Basic256Sha256 / Aes128Sha256RsaOaep / Aes256Sha256RsaPss
    # with security_mode Sign or SignAndEncrypt and a client certificate + key.
    security_policy: Basic256Sha256
    security_mode: SignAndEncrypt
    certificate: /etc/millrace/pki/opcua-client-cert.der   # SubjectAltName URI = app URI
    private_key: /etc/millrace/pki/opcua-client-key.pem
    # server_certificate: /etc/millrace/pki/plc-line1.der  # pin the server's certificate
    # Login: omit username for anonymous. Secrets are ${ENV} references, never inline.
    username: ${OPCUA_USER}
    password: ${OPCUA_PASSWORD}
    timeout_ms: 4000             # connect and request timeout
    watchdog_interval_ms: 1000   # session probe; a failed probe reconnects
    session_timeout_ms: 60000
    queue_size: 1                # per monitored item; >1 keeps samples between publishes
    batch_ms: 200                # readings are published in batches this often
    reconnect: {initial_ms: 500, max_ms: 30000}

endpoints:
  # interval_ms is the sampling (and publishing) interval: one subscription per interval.
  # deadband is absolute, in the endpoint's units, and applied by the server.
  - connection: line1-plc
    identity: press-1
    signal: temperature
    node_id: ns=2;s=Press1.Temperature
    interval_ms: 500
    deadband: 0.2
    unit: degC
  - connection: line1-plc
    identity: press-1
    signal: pressure
    node_id: ns=2;i=1002
    interval_ms: 500
    scale: 0.01                  # raw counts -> bar
    unit: bar
  - connection: line1-plc
    identity: press-1
    signal: strokes
    # a browse path from the Objects folder (namespace index: name)
    node_id: /2:Line1/2:Press1/2:StrokeCounter
    interval_ms: 5000
  - connection: line1-plc
    identity: press-1
    signal: setpoint
    node_id: ns=2;s=Press1.Setpoint
    interval_ms: 1000
    writable: true               # Commands for press-1/setpoint are written here

mappings:
  - connection: line1-plc
    identity: press-*
    signal: temperature
    rename_signal: temp_c
"""

SPEC = ProtocolSpec(
    name="opcua",
    connection_model=OpcuaConnection,
    endpoint_model=OpcuaEndpoint,
    connector_path="connectors.opcua.connector:OpcuaConnector",
    template=TEMPLATE,
    check=check,
)
