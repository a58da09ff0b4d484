"""Typed models of a Modbus TCP connection and its endpoints (no pymodbus import here:
validating a commissioning file must not need the network library).

Addresses are the zero-based protocol addresses that go on the wire (register 40001 of
a device manual is ``register: holding, address: 0``). Values spanning several
registers are decoded with ``byte_order`` (the two bytes inside each register) and
``word_order`` (the order of the registers): big/big is the Modbus convention
("ABCD"), word_order little is the common "CDAB" word swap.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from millrace.connectors._common.models import ConnectionBase, EndpointBase

RegisterKind = Literal["holding", "input", "coil", "discrete"]
ModbusDataType = Literal[
    "auto",
    "bool",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "float32",
    "float64",
    "string",
]
Order = Literal["big", "little"]

#: the protocol's limits per read request (Modbus Application Protocol v1.1b3, 6.1-6.4)
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000
BIT_KINDS: frozenset[str] = frozenset({"coil", "discrete"})
#: register kind -> (singular, plural) for messages
KIND_NAMES: dict[str, tuple[str, str]] = {
    "holding": ("holding register", "holding registers"),
    "input": ("input register", "input registers"),
    "coil": ("coil", "coils"),
    "discrete": ("discrete input", "discrete inputs"),
}


class ModbusConnection(ConnectionBase):
    """One Modbus TCP server (a PLC, a meter, or a gateway in front of serial units)."""

    protocol: Literal["modbus"]
    host: str = Field(min_length=1, max_length=253, description="Host name or IP address.")
    port: int = Field(502, ge=1, le=65535, description="TCP port of the Modbus server.")
    timeout_ms: int = Field(
        3000,
        ge=10,
        le=300_000,
        description="Time allowed to connect and for each response; after three requests "
        "in a row without an answer the connection is considered lost.",
    )
    unit_id: int = Field(
        1, ge=0, le=255, description="Unit (slave) id of the requests unless an endpoint says."
    )
    max_registers_per_read: int = Field(
        MAX_REGISTERS_PER_READ,
        ge=1,
        le=MAX_REGISTERS_PER_READ,
        description="Largest register read; lower it for devices that refuse long reads.",
    )
    max_bits_per_read: int = Field(
        MAX_BITS_PER_READ,
        ge=1,
        le=MAX_BITS_PER_READ,
        description="Largest coil / discrete input read.",
    )
    max_gap_registers: int = Field(
        8,
        ge=0,
        le=MAX_REGISTERS_PER_READ - 2,
        description="Endpoints at most this many unused registers apart are read in one "
        "request (fewer round trips; the gap is read and discarded). 0: only adjacent ones.",
    )
    max_gap_bits: int = Field(
        64,
        ge=0,
        le=MAX_BITS_PER_READ - 2,
        description="The same for coils and discrete inputs, in bits.",
    )


class ModbusEndpoint(EndpointBase):
    """One value in a Modbus server: where it is (register kind, address, unit) and how
    its registers are decoded. ``interval_ms`` is the poll interval."""

    # ``register`` in the file; not the attribute name, which pydantic's ABCMeta owns
    kind: RegisterKind = Field(
        alias="register",
        description="holding / input registers (16-bit words) or coils / discrete inputs (bits).",
    )
    address: int = Field(ge=0, le=65535, description="Zero-based address of the first word/bit.")
    data_type: ModbusDataType = Field(
        "auto",
        description="auto: bool for coils and discrete inputs, uint16 for registers. "
        "string: `length` registers of UTF-8 text, trailing NULs removed.",
    )
    length: int | None = Field(
        None,
        ge=1,
        le=MAX_REGISTERS_PER_READ,
        description="Registers of a string (two characters each).",
    )
    byte_order: Order = Field("big", description="Order of the two bytes inside a register.")
    word_order: Order = Field(
        "big", description="Order of the registers of a 32/64-bit value (little: 'CDAB')."
    )
    unit_id: int | None = Field(
        None, ge=0, le=255, description="Unit id of this value; default: the connection's."
    )
