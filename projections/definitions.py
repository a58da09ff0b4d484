"""Resource definitions (``millrace.resource_defs``) as the identity processor stored
them: the one reader every part uses (the registry API, the identity watch, the
connector edge through ``pipeline.cache.LastGoodCache``)."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.projections.store.base import ProjectionStore

log = logging.getLogger("millrace.projections")

_SQL = (
    "SELECT name, definition, updated_us, updated_by "
    "FROM millrace.resource_defs FINAL WHERE present = 1 ORDER BY name"
)


def definitions(store: ProjectionStore) -> dict[str, dict[str, Any]]:
    """name -> {definition, updated_us, updated_by} of the present definitions.

    Each was validated by the identity processor before it was stored; one this
    version cannot read is skipped with a warning rather than failing every check."""
    out: dict[str, dict[str, Any]] = {}
    for name, text, updated, by in store.execute(_SQL).rows:
        try:
            definition = ResourceDefinition.model_validate_json(text)
        except ValidationError as exc:
            log.warning("resource %r: unreadable definition skipped: %s", name, exc)
            continue
        out[str(name)] = {
            "definition": definition,
            "updated_us": int(updated),
            "updated_by": str(by),
        }
    return out


def definition_map(store: ProjectionStore) -> dict[str, ResourceDefinition]:
    """name -> definition of the present definitions (see :func:`definitions`)."""
    return {name: d["definition"] for name, d in definitions(store).items()}
