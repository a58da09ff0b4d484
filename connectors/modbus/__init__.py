"""Modbus TCP connector: polls holding/input registers, coils and discrete inputs of
PLCs, meters and gateways, coalescing nearby addresses into few requests, and writes
Commands back to holding registers and coils.

This package imports no network library; ``connectors.modbus.connector`` (pymodbus) is
loaded when a connection starts.
"""

from .config import ModbusConnection, ModbusEndpoint
from .spec import SPEC

__all__ = ["SPEC", "ModbusConnection", "ModbusEndpoint"]
