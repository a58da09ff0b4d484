"""Identity processor: IdentityEvents -> the device registry, resource definitions and
device metrics.

The registry is a fold (pipeline.identities.state) over each identity's events; its
state rows live in ``millrace.identities`` and the runtime hands this processor the
rows of the identities in a batch. Rows carry ``version`` = log offset + 1 of the last
event they include, so an event at or below it is skipped and a redone batch changes
nothing. Events of the registry key ``"*"`` define or remove resources (one full
definition per event: no fold needed). Connections, disconnections and provisionings
the fold applied are counted into ``device_metrics`` (a refused one is a dead letter,
not a connection; a CREATED with a credential is a provisioning).

Exactly-once across tables: a metric row is only made when the event applies, which
depends on the state before it, so the state table must land last. Every output lists
``resource_defs`` and ``device_metrics`` (possibly empty) before ``identities``
(``Outputs.merge`` keeps the first order it sees); a crash between them redoes the
batch from the old state (same rows, same tokens), a crash after all skips every event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from millrace.pipeline.identities.resources import REGISTRY_KEY, ResourceDefinition
from millrace.pipeline.identities.state import IdentityRejectedError, State, apply
from millrace.pipeline.processors.base import Event, Outputs, StatefulProcessor, dead_letter
from millrace.pipeline.tables import IDENTITIES_SCHEMA, METRICS_SCHEMA, RESOURCE_DEFS_SCHEMA
from millrace.pipeline.topics import IDENTITY

#: identity event type -> device metric it counts
COUNTED = {
    "CONNECTED": "connection",
    "DISCONNECTED": "disconnection",
    "PROVISIONED": "provisioning",
    "REPROVISIONED": "provisioning",
}


def counted(ev: Mapping[str, Any], after: State) -> str | None:
    """The device metric an applied event counts, if any."""
    kind = str(ev.get("type"))
    if kind == "CREATED":
        return "provisioning" if after["status"] == "provisioned" else None
    return COUNTED.get(kind)


def state_rows(states: Sequence[State]) -> pa.Table:
    cols: dict[str, list[Any]] = {f.name: [] for f in IDENTITIES_SCHEMA}
    for s in states:
        for name, values in cols.items():
            v = s[name]
            values.append(list(v.items()) if isinstance(v, dict) else v)
    return pa.Table.from_pydict(cols, schema=IDENTITIES_SCHEMA)


def metric_rows(rows: list[tuple[str, int, float]]) -> pa.Table:
    metric, ts, value = zip(*rows, strict=True) if rows else ((), (), ())
    return pa.Table.from_pydict(
        {"metric": list(metric), "ts": list(ts), "value": list(value)}, schema=METRICS_SCHEMA
    )


class IdentityProcessor(StatefulProcessor):
    """The registry fold, resource definitions and connection/provisioning metrics."""

    topics = (IDENTITY,)
    state_table = "identities"
    state_key = "identity"

    def state_keys(self, events: Sequence[Event]) -> list[str]:
        keys = {e.value.get("identity") for e in events}
        return sorted(k for k in keys if isinstance(k, str) and k and k != REGISTRY_KEY)

    def process_with_state(
        self, events: Sequence[Event], state: Mapping[str, Mapping[str, Any]]
    ) -> Outputs:
        out = Outputs()
        current: dict[str, State | None] = {k: dict(v) for k, v in state.items()}
        changed: dict[str, State] = {}
        defs: list[dict[str, Any]] = []
        metrics: list[tuple[str, int, float]] = []
        for ev in events:
            value = ev.value
            identity = value.get("identity")
            try:
                if identity == REGISTRY_KEY:
                    defs.append(self._definition(ev))
                    continue
                if not isinstance(identity, str) or not identity:
                    raise IdentityRejectedError("identity: must be a non-empty string")
                prev = current.get(identity)
                if prev is not None and ev.offset < prev["version"]:
                    continue  # already in the state row (a redone batch)
                new = apply(prev, value, ev.offset + 1)
            except (IdentityRejectedError, ValueError, KeyError, TypeError) as exc:
                out.deadletters.append(
                    dead_letter(
                        ev,
                        reason=str(exc),
                        error_type="IdentityRejected",
                        stage="apply",
                        ts_us=ev.timestamp_us,
                        payload=repr(dict(value)).encode()[:65536],
                    )
                )
                continue
            current[identity] = changed[identity] = new
            metric = counted(value, new)
            if metric is not None:
                metrics.append((metric, int(value["ts_us"]), 1.0))
        if not (changed or defs or metrics):
            return out
        # the order matters: the state table last (see the module doc)
        out.tables["resource_defs"] = pa.Table.from_pylist(defs, schema=RESOURCE_DEFS_SCHEMA)
        out.tables["device_metrics"] = metric_rows(metrics)
        out.tables["identities"] = state_rows(list(changed.values()))
        return out

    @staticmethod
    def _definition(ev: Event) -> dict[str, Any]:
        value = ev.value
        attrs = value.get("attributes") or {}
        name = attrs.get("name", "")
        if not name:
            raise IdentityRejectedError("attributes.name: missing resource name")
        if value["type"] == "RESOURCE_DEFINED":
            text = attrs.get("definition", "")
            ResourceDefinition.model_validate_json(text)  # ValueError -> dead letter
            present = 1
        elif value["type"] == "RESOURCE_REMOVED":
            text, present = "", 0
        else:
            raise IdentityRejectedError(
                f"type {value['type']!r} does not apply to the registry key"
            )
        return {
            "name": name,
            "version": ev.offset + 1,
            "present": present,
            "definition": text,
            "updated_us": int(value["ts_us"]),
            "updated_by": value.get("actor") or "",
        }
