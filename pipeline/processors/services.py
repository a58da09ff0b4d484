"""Services processor: the services topic -> ``millrace.services`` (one row per service).

The row is the fold of the service's events (``pipeline.services.state``), kept in the
table itself (``KeyedFoldProcessor``, like the tasks one). Rows carry ``version`` = log
offset + 1 of the last event they include, so a redone batch changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from millrace.pipeline.processors.keyed import KeyedFoldProcessor, State
from millrace.pipeline.services.state import ServiceRejectedError, apply
from millrace.pipeline.tables import SERVICES_SCHEMA
from millrace.pipeline.topics import SERVICES


class ServiceProcessor(KeyedFoldProcessor):
    """The service fold, one row per service."""

    topics = (SERVICES,)
    state_table = "services"
    state_key = "service_id"
    schema = SERVICES_SCHEMA
    rejected = (ServiceRejectedError, ValueError, KeyError, TypeError)
    error_type = "ServiceRejectedError"

    def fold(self, prev: Mapping[str, Any] | None, value: Mapping[str, Any], version: int) -> State:
        return apply(prev, value, version)
