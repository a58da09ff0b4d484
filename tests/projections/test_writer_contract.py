"""ProjectionWriter (the ClickHouse sink, on chDB) passes the ProjectionSink contract."""

from __future__ import annotations

from typing import Any

import pytest

from millrace.pipeline.sink import ProjectionSink
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.writer import ProjectionWriter
from tests.pipeline.sink.contract import ProjectionSinkContract


class TestProjectionWriter(ProjectionSinkContract):
    @pytest.fixture(autouse=True)
    def _store(self, store: ChdbStore) -> None:
        self.store = store

    def make_sink(self) -> ProjectionSink:
        return ProjectionWriter(self.store)

    def rows(self, sink: ProjectionSink, table: str) -> list[dict[str, Any]]:
        # without FINAL: a row inserted twice shows twice
        rows: list[dict[str, Any]] = self.store.query_arrow(
            f"SELECT * FROM millrace.{table}"
        ).to_pylist()
        return rows
