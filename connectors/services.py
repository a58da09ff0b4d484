"""Services on the connectors' side: a service's file (text + parameter values) made
the typed commissioning it runs, and the connect role's reaction to a service's state
(``ServiceApplier``, the ``on_change`` of ``pipeline.services.follow``)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import yaml

from millrace.connectors._common.models import Violation
from millrace.connectors.commissioning import Commissioning, parse_yaml, validate_document
from millrace.connectors.manager import ConnectorManager

log = logging.getLogger("millrace.services")


def service_text(commissioning: Commissioning) -> str | None:
    """The file of ``commissioning`` as a service's text (None: no file behind it)."""
    if commissioning.document is None or not commissioning.connections:
        return None
    return yaml.safe_dump(commissioning.document, sort_keys=False)


def compile_service(
    text: str, parameters: Mapping[str, Any] | None, env: Mapping[str, str] | None = None
) -> tuple[Commissioning | None, list[Violation]]:
    """The typed file of a service (YAML or JSON text) with its parameter values; every
    violation otherwise (as ``/config/validate`` reports them)."""
    doc, violations = parse_yaml(text)
    if violations:
        return None, violations
    return validate_document(doc, env, parameters=parameters)


def parameter_values(state: Mapping[str, Any]) -> dict[str, Any]:
    """A service state's parameter values (stored as JSON text each)."""
    return {k: json.loads(v) for k, v in dict(state.get("parameters") or {}).items()}


class ServiceApplier:
    """Makes ``manager`` run what a service's state says, for this runner."""

    def __init__(self, manager: ConnectorManager, runner: str) -> None:
        self.manager, self.runner = manager, runner

    async def __call__(self, service_id: str, state: Mapping[str, Any] | None) -> None:
        if state is None or state["status"] == "removed":
            await self.manager.apply_service(service_id, None)
            return
        runners = list(state.get("runners") or [])
        if runners and self.runner not in runners:
            await self.manager.apply_service(service_id, None)  # assigned elsewhere
            return
        if state["status"] == "disabled":
            await self.manager.apply_service(service_id, None, disabled=True)
            return
        commissioning, violations = compile_service(
            str(state["text"]), parameter_values(state), os.environ
        )
        unset = [v for v in violations if "environment variable" in v.description]
        if commissioning is None or unset:
            errors = [v.line() for v in violations if v.level == "error"] + [
                v.line() for v in unset
            ]
            log.error("service %s not run here:\n%s", service_id, "\n".join(errors))
            await self.manager.apply_service(service_id, None)
            return
        if commissioning.service != service_id:
            log.error("service %s: its file names service %r", service_id, commissioning.service)
            return
        await self.manager.apply_service(service_id, commissioning)
