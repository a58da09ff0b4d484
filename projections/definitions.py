"""Resource definitions (``millrace.resource_defs``) as the identity processor stored
them."""

from __future__ import annotations

from typing import Any

from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.projections.store.base import ProjectionStore


def definitions(store: ProjectionStore) -> dict[str, dict[str, Any]]:
    """name -> {definition, updated_us, updated_by} of the present definitions.
    Each was validated by the identity processor before it was stored."""
    rows = store.execute(
        "SELECT name, definition, updated_us, updated_by "
        "FROM millrace.resource_defs FINAL WHERE present = 1 ORDER BY name"
    ).rows
    return {
        str(name): {
            "definition": ResourceDefinition.model_validate_json(text),
            "updated_us": int(updated),
            "updated_by": str(by),
        }
        for name, text, updated, by in rows
    }
