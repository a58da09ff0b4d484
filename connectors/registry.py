"""The protocols a commissioning file can name, and what each one provides.

Each protocol package (``connectors/opcua``, ``connectors/modbus``, ...) exports
``SPEC``; validation only needs the models and the template (the folder's
``sample.yaml``, read when asked for), so importing a protocol's config never imports
its network library — the connector class is loaded when a connection is started.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from millrace.connectors._common.models import (
    ConnectionBase,
    EndpointBase,
    MappingConfig,
    Violation,
)

if TYPE_CHECKING:
    from millrace.connectors._common.base import ProtocolConnector

# check(connection name, connection, [(index in $.endpoints, endpoint)], [(index, mapping)])
Checker = Callable[
    [str, Any, Sequence[tuple[int, Any]], Sequence[tuple[int, MappingConfig]]], list[Violation]
]

PACKAGES = ("opcua", "modbus", "mqtt", "files", "simulator")


@dataclass(frozen=True)
class ProtocolSpec:
    name: str
    connection_model: type[ConnectionBase]
    endpoint_model: type[EndpointBase]
    connector_path: str  # "package.module:Class", a ProtocolConnector subclass
    check: Checker | None = None  # semantic checks beyond the models
    # modules the connector imports, and the extra that installs them
    requires: tuple[str, ...] = ()
    extra: str = ""

    def missing(self) -> list[str]:
        """The required modules that cannot be imported here (no import happens)."""
        out = []
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                out.append(module)
        return out

    @property
    def template(self) -> str:
        """A commented YAML commissioning file using this protocol: the protocol
        folder's ``sample.yaml``."""
        return (
            importlib.resources.files(f"millrace.connectors.{self.name}") / "sample.yaml"
        ).read_text()

    def connector_class(self) -> type[ProtocolConnector]:
        module, _, name = self.connector_path.partition(":")
        cls: type[ProtocolConnector] = getattr(importlib.import_module(module), name)
        return cls


@cache
def protocols() -> dict[str, ProtocolSpec]:
    """Every installed protocol, by name."""
    out: dict[str, ProtocolSpec] = {}
    for pkg in PACKAGES:
        try:
            mod = importlib.import_module(f"millrace.connectors.{pkg}.spec")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"millrace.connectors.{pkg}"):
                continue  # not built yet
            raise
        spec: ProtocolSpec = mod.SPEC
        out[spec.name] = spec
    return out
