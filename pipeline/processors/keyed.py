"""A stateful processor whose row per key is the fold of that key's events (tasks,
services): ``fold(prev, event, version)`` says what one event does; this class reads
the batch's keys, skips events already in a row, deadletters what the fold rejects and
writes the changed rows."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pyarrow as pa

from millrace.pipeline.processors.base import Event, Outputs, StatefulProcessor, dead_letter

State = dict[str, Any]


def fold_rows(schema: pa.Schema, states: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The rows of ``states`` (map columns given as dicts)."""
    maps = {f.name for f in schema if isinstance(f.type, pa.MapType)}
    cols: dict[str, list[Any]] = {f.name: [] for f in schema}
    for s in states:
        for name, values in cols.items():
            v = s[name]
            values.append(list(v.items()) if name in maps else v)
    return pa.Table.from_pydict(cols, schema=schema)


class KeyedFoldProcessor(StatefulProcessor):
    """One row per ``state_key``, the fold of its events (``version`` = offset + 1)."""

    schema: ClassVar[pa.Schema]
    #: what the fold raises for an event it cannot apply, and the dead letter's type
    rejected: ClassVar[tuple[type[Exception], ...]] = (ValueError, KeyError, TypeError)
    error_type: ClassVar[str] = "Rejected"

    @abstractmethod
    def fold(self, prev: Mapping[str, Any] | None, value: Mapping[str, Any], version: int) -> State:
        """The state after one event."""

    def rejected_payload(self, event: Event) -> bytes:
        return b""

    def state_keys(self, events: Sequence[Event]) -> list[str]:
        keys = {e.value.get(self.state_key) for e in events}
        return sorted(k for k in keys if isinstance(k, str) and k)

    def process_with_state(
        self, events: Sequence[Event], state: Mapping[str, Mapping[str, Any]]
    ) -> Outputs:
        out = Outputs()
        current: dict[str, Mapping[str, Any]] = dict(state)
        changed: dict[str, State] = {}
        for ev in events:
            key = ev.value.get(self.state_key)
            prev = current.get(key) if isinstance(key, str) else None
            if prev is not None and ev.offset < int(prev["version"]):
                continue  # already in the row (a redone batch)
            try:
                if not isinstance(key, str) or not key:
                    raise ValueError(f"{self.state_key}: must be a non-empty string")
                new = self.fold(prev, ev.value, ev.offset + 1)
            except self.rejected as exc:
                out.deadletters.append(
                    dead_letter(
                        ev,
                        reason=str(exc),
                        error_type=self.error_type,
                        stage="apply",
                        ts_us=ev.timestamp_us,
                        payload=self.rejected_payload(ev),
                    )
                )
                continue
            current[key] = changed[key] = new
        if changed:
            out.tables[self.state_table] = fold_rows(self.schema, list(changed.values()))
        return out
