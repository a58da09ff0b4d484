"""Read model of services (``millrace.services``, the fold of the services topic) and
of their resources' states (``millrace.resource_states`` by service id)."""

from __future__ import annotations

from typing import Any

from millrace.pipeline.services.state import normalise
from millrace.projections.store.base import ProjectionStore

_COLUMNS = (
    "service_id, version, status, enabled, description, text, parameters, runners, actor,"
    " revision, installed_us, updated_us"
)


class ServiceQueries:
    def __init__(self, store: ProjectionStore) -> None:
        self.store = store

    def _select(self, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        result = self.store.execute(
            f"SELECT {_COLUMNS} FROM millrace.services FINAL WHERE status != 'removed'"
            f"{where} ORDER BY service_id",
            params,
        )
        return [normalise(row) for row in result.dicts()]

    def services(self) -> list[dict[str, Any]]:
        """Every installed service (not removed)."""
        return self._select("", {})

    def service(self, service_id: str) -> dict[str, Any] | None:
        rows = self._select(" AND service_id = {sid:String}", {"sid": service_id})
        return rows[0] if rows else None

    def resources(self, service_id: str | None = None) -> list[dict[str, Any]]:
        """Resource states of one service (every service: None), with their service."""
        where = "" if service_id is None else " WHERE service_id = {sid:String}"
        result = self.store.execute(
            "SELECT resource_id, toString(service_id) AS service_id,"
            " toString(resource_type) AS resource_type,"
            " toString(desired_state) AS desired_state,"
            " toString(current_state) AS current_state, deviated, info,"
            " toString(runner) AS runner, ts_us"
            f" FROM millrace.resource_states FINAL{where} ORDER BY resource_id",
            {} if service_id is None else {"sid": service_id},
        )
        return result.dicts()
