"""Projection stores: a small port over ClickHouse and its adapters."""

from millrace.projections.store.base import ProjectionStore, QueryResult

__all__ = ["ProjectionStore", "QueryResult"]
