"""The protocols a commissioning file can name, and what each one provides.

Each protocol package (``connectors/opcua``, ``connectors/modbus``, ...) exports
``SPEC``; validation only needs the models and the template (the folder's
``sample.yaml``, read when asked for), so importing a protocol's config never imports
its network library — the connector class is loaded when a connection is started.
"""

from __future__ import annotations

import importlib
import importlib.resources
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from connectors._common.models import ConnectionBase, EndpointBase, MappingConfig, Violation

if TYPE_CHECKING:
    from connectors._common.base import ProtocolConnector

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

    @property
    def template(self) -> str:
        """A commented YAML commissioning file using this protocol: the protocol
        folder's ``sample.yaml``."""
        return (importlib.resources.files(f"connectors.{self.name}") / "sample.yaml").read_text()

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
            mod = importlib.import_module(f"connectors.{pkg}.spec")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"connectors.{pkg}"):
                continue  # not built yet
            raise
        spec: ProtocolSpec = mod.SPEC
        out[spec.name] = spec
    return out
