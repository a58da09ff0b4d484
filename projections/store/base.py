"""The projection store port: run SQL on ClickHouse, insert Arrow tables.

``ChdbStore`` (embedded) and the ClickHouse server store implement it and pass the
same contract tests. SQL is ClickHouse SQL; parameters use ClickHouse's
``{name:Type}`` syntax and are bound by the server, never spliced into the text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Column names, ClickHouse types and rows of a query."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    elapsed_s: float = 0.0
    rows_read: int = 0

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


class ProjectionStore(ABC):
    """Port: a ClickHouse to write projections into and to query."""

    @abstractmethod
    def execute(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        """Run one statement and return its result (empty for DDL and inserts)."""

    @abstractmethod
    def query_arrow(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> pa.Table:
        """Run one SELECT and return its result as an Arrow table."""

    @abstractmethod
    def insert_arrow(
        self, sql: str, table: pa.Table, settings: Mapping[str, Any] | None = None
    ) -> None:
        """Run ``INSERT INTO ... SELECT ... FROM input`` where ``input`` names ``table``.

        ``sql`` uses the literal placeholder ``{input}`` for the Arrow source so that
        each adapter can bind it its own way.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""


def settings_clause(settings: Mapping[str, Any] | None) -> str:
    """Render a SETTINGS clause; values are numbers or plain identifiers-strings."""
    if not settings:
        return ""
    parts = []
    for k, v in settings.items():
        if not k.replace("_", "").isalnum():
            raise ValueError(f"bad setting name {k!r}")
        if isinstance(v, bool):
            parts.append(f"{k} = {int(v)}")
        elif isinstance(v, int | float):
            parts.append(f"{k} = {v}")
        else:
            escaped = str(v).replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"{k} = '{escaped}'")
    return " SETTINGS " + ", ".join(parts)
