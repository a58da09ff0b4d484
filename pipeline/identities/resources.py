"""Resource definitions: what a device resource (a signal) may carry.

A definition says a resource's format (boolean, number, string up to 64 KB), unit,
whether an operator may set it (and whether a set value is written to the device —
``sync``), which values are allowed (values and/or numeric ranges), its initial value,
how long it may stay silent before it is stale, and how many months its raw readings
are kept (applied as a ClickHouse TTL). Definitions travel on the identity topic as
events of the registry key ``"*"`` and are checked at every edge that accepts values:
HTTP ingest answers 400 naming the resource, connectors send the reading to
``deadletter``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

#: the identity-topic key of registry-wide events (resource definitions)
REGISTRY_KEY = "*"
MAX_STRING_BYTES = 65_536
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr


class Range(BaseModel):
    """An inclusive numeric range; either bound may be open."""

    model_config = ConfigDict(extra="forbid")
    min: StrictInt | StrictFloat | None = None
    max: StrictInt | StrictFloat | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self

    def holds(self, v: float) -> bool:
        return (self.min is None or v >= self.min) and (self.max is None or v <= self.max)


class ResourceDefinition(BaseModel):
    """How one resource is checked and kept (see the module doc)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["boolean", "number", "string"] = Field(
        "number", description="boolean, number or string (strings up to 64 KB)"
    )
    unit: str = Field("", max_length=64, description="unit of measure, e.g. degC")
    description: str = Field("", max_length=1024)
    settable: bool = Field(False, description="operators may set a desired value")
    sync: bool = Field(
        True,
        description="a set value is written to the device as a Command and pending until "
        "reported back; off: set and reported change together",
    )
    allowed: list[Scalar | Range] | None = Field(
        None, description="allowed values; numeric ranges as {min, max}; null: any"
    )
    initial: Scalar | None = Field(None, description="value before anything was reported")
    timeout_s: int | None = Field(
        None, ge=30, le=86_400, description="silent longer than this: a stale event"
    )
    retention_months: int | None = Field(
        None, ge=1, le=1200, description="raw readings older than this are deleted (TTL)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ResourceDefinition:
        for i, item in enumerate(self.allowed or ()):
            if isinstance(item, Range):
                if self.format != "number":
                    raise ValueError(f"allowed[{i}]: ranges need format number")
            elif (problem := _format_problem(self.format, item)) is not None:
                raise ValueError(f"allowed[{i}]: {problem}")
        if self.allowed is not None and not self.allowed:
            raise ValueError("allowed: give at least one value, or null for any")
        if self.initial is not None and (problem := self.check(self.initial)) is not None:
            raise ValueError(f"initial: {problem}")
        return self

    def check(self, value: Any) -> str | None:
        """Why ``value`` breaks this definition, or None when it fits."""
        problem = _format_problem(self.format, value)
        if problem is not None or self.allowed is None:
            return problem
        for item in self.allowed:
            if isinstance(item, Range):
                if not isinstance(value, bool) and item.holds(float(value)):
                    return None
            elif _same(item, value):
                return None
        return f"{json.dumps(value)[:80]} is not among the allowed values"

    def to_json(self) -> str:
        return self.model_dump_json(exclude_defaults=False)


def _format_problem(fmt: str, value: Any) -> str | None:
    if fmt == "boolean":
        return None if isinstance(value, bool) else "expected a boolean"
    if fmt == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "expected a number"
        if isinstance(value, float) and not math.isfinite(value):
            return "expected a finite number"
        return None
    if not isinstance(value, str):
        return "expected a string"
    if len(value.encode()) > MAX_STRING_BYTES:
        return f"string longer than {MAX_STRING_BYTES} bytes"
    return None


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values, at any depth: 1 == 1.0, but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) or isinstance(b, list):
        return (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_same(a[k], b[k]) for k in a)
        )
    return bool(a == b)


def same_value(a: Any, b: Any) -> bool:
    """Whether two resource values are equal as JSON values (see :func:`_same`)."""
    return _same(a, b)


def check_values(
    definitions: dict[str, ResourceDefinition], values: dict[str, Any]
) -> tuple[str, str] | None:
    """The first (resource, reason) of ``values`` that breaks its definition, or None.
    Signals without a definition are free."""
    for name, value in values.items():
        d = definitions.get(name)
        if d is not None and (problem := d.check(value)) is not None:
            return name, problem
    return None


def parse_definitions(rows: list[tuple[str, str]]) -> dict[str, ResourceDefinition]:
    """Definitions from ``(name, definition JSON)`` rows of ``millrace.resource_defs``."""
    return {name: ResourceDefinition.model_validate_json(text) for name, text in rows}
