"""The Modbus TCP protocol as the commissioning file sees it: models, template and the
checks that need more than one field. Importing this never imports pymodbus."""

from __future__ import annotations

from collections.abc import Sequence

from millrace.connectors._common.models import MappingConfig, Violation
from millrace.connectors.registry import ProtocolSpec

from .codec import register_count, resolve
from .config import BIT_KINDS, KIND_NAMES, ModbusConnection, ModbusEndpoint


def _err(path: str, text: str) -> Violation:
    return Violation(level="error", json_path=path, description=text)


def _warn(path: str, text: str) -> Violation:
    return Violation(level="warning", json_path=path, description=text)


def check(
    name: str,
    connection: ModbusConnection,
    endpoints: Sequence[tuple[int, ModbusEndpoint]],
    mappings: Sequence[tuple[int, MappingConfig]],
) -> list[Violation]:
    """What the models alone cannot see: type vs register kind, write access, ranges.
    Overlapping endpoints are allowed (a float and its two halves may both be wanted)."""
    out: list[Violation] = []
    for i, ep in endpoints:
        path = f"$.endpoints[{i}]"
        out.extend(endpoint_violations(path, connection, ep))
    for i, m in mappings:
        if m.topic is not None:
            out.append(
                _warn(
                    f"$.mappings[{i}].topic",
                    f"connection {name!r} is Modbus: topic mappings apply to MQTT and are ignored",
                )
            )
    return out


def endpoint_violations(
    path: str, connection: ModbusConnection, ep: ModbusEndpoint
) -> list[Violation]:
    """The problems of one endpoint (also used by the connector, which refuses to poll
    an endpoint that has errors rather than polling garbage)."""
    out: list[Violation] = []
    dtype = resolve(ep.data_type, ep.kind)
    bits = ep.kind in BIT_KINDS
    if bits and dtype != "bool":
        out.append(
            _err(
                f"{path}.data_type",
                f"a {KIND_NAMES[ep.kind][0]} holds one bit: data_type must be bool (or auto), "
                f"not {dtype}",
            )
        )
    if ep.writable and ep.kind not in ("holding", "coil"):
        out.append(
            _err(
                f"{path}.writable",
                f"{KIND_NAMES[ep.kind][1]} are read-only in Modbus; only holding registers "
                "and coils can be written",
            )
        )
    if dtype == "string" and ep.length is None:
        out.append(_err(f"{path}.length", "a string needs its length in registers"))
        return out
    if ep.length is not None and dtype != "string":
        out.append(_warn(f"{path}.length", f"length applies to strings only; {dtype} ignores it"))
    size = 1 if bits else register_count(dtype, ep.length)
    if ep.address + size - 1 > 65535:
        out.append(
            _err(
                f"{path}.address",
                f"{dtype} at {ep.address} needs {size} registers and runs past address 65535",
            )
        )
    if not bits and size > connection.max_registers_per_read:
        out.append(
            _err(
                f"{path}.length",
                f"{size} registers exceed max_registers_per_read "
                f"({connection.max_registers_per_read}) of the connection",
            )
        )
    if dtype in ("bool", "string") and (ep.scale != 1.0 or ep.offset != 0.0):
        out.append(_warn(f"{path}.scale", f"scale/offset apply to numbers; a {dtype} ignores them"))
    return out


SPEC = ProtocolSpec(
    name="modbus",
    connection_model=ModbusConnection,
    endpoint_model=ModbusEndpoint,
    connector_path="millrace.connectors.modbus.connector:ModbusConnector",
    requires=("pymodbus",),
    extra="modbus",
    check=check,
)
