"""Services processor: the services topic -> ``millrace.services`` (one row per service).

The row is the fold of the service's events (``pipeline.services.state``), kept in the
table itself (a stateful processor, like the tasks one). Rows carry ``version`` = log
offset + 1 of the last event they include, so a redone batch changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from millrace.pipeline.processors.base import Event, Outputs, StatefulProcessor, dead_letter
from millrace.pipeline.services.state import ServiceRejected, State, apply
from millrace.pipeline.tables import SERVICES_SCHEMA
from millrace.pipeline.topics import SERVICES


def service_rows(states: Sequence[State]) -> pa.Table:
    cols: dict[str, list[Any]] = {f.name: [] for f in SERVICES_SCHEMA}
    for s in states:
        for name, values in cols.items():
            v = s[name]
            values.append(list(v.items()) if name == "parameters" else v)
    return pa.Table.from_pydict(cols, schema=SERVICES_SCHEMA)


class ServiceProcessor(StatefulProcessor):
    """The service fold, one row per service."""

    topics = (SERVICES,)
    state_table = "services"
    state_key = "service_id"

    def state_keys(self, events: Sequence[Event]) -> list[str]:
        keys = {e.value.get("service_id") for e in events}
        return sorted(k for k in keys if isinstance(k, str) and k)

    def process_with_state(
        self, events: Sequence[Event], state: Mapping[str, Mapping[str, Any]]
    ) -> Outputs:
        out = Outputs()
        current: dict[str, Mapping[str, Any]] = dict(state)
        changed: dict[str, State] = {}
        for ev in events:
            sid = ev.value.get("service_id")
            prev = current.get(sid) if isinstance(sid, str) else None
            if prev is not None and ev.offset < int(prev["version"]):
                continue  # already in the row (a redone batch)
            try:
                new = apply(prev, ev.value, ev.offset + 1)
            except (ServiceRejected, KeyError, TypeError) as exc:
                out.deadletters.append(
                    dead_letter(
                        ev,
                        reason=str(exc),
                        error_type="ServiceRejected",
                        stage="apply",
                        ts_us=ev.timestamp_us,
                    )
                )
                continue
            current[new["service_id"]] = changed[new["service_id"]] = new
        if changed:
            out.tables["services"] = service_rows(list(changed.values()))
        return out
