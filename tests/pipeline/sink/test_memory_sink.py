"""MemoryProjectionSink passes the ProjectionSink contract."""

from __future__ import annotations

from typing import Any

from millrace.pipeline.sink import MemoryProjectionSink, ProjectionSink

from .contract import ProjectionSinkContract


class TestMemoryProjectionSink(ProjectionSinkContract):
    def make_sink(self) -> ProjectionSink:
        return MemoryProjectionSink()

    def rows(self, sink: ProjectionSink, table: str) -> list[dict[str, Any]]:
        assert isinstance(sink, MemoryProjectionSink)
        return list(sink.rows.get(table, []))
