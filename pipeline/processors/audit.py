"""Audit processor: the audit topic -> ``millrace.audits`` (one row per AuditEvent).

Rows are keyed by their audit id (ReplacingMergeTree), so an event appended twice —
an API process that retried its append — collapses to one record under FINAL. The
log offset orders records of one target (one partition) that share a timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from millrace.pipeline.processors.base import Event, Outputs, Processor
from millrace.pipeline.tables import AUDITS_SCHEMA
from millrace.pipeline.topics import AUDIT

_TEXT = [f.name for f in AUDITS_SCHEMA if f.name not in ("ts_us", "log_offset")]


class AuditProcessor(Processor):
    """Rows of ``millrace.audits``; absent optional fields become ''."""

    topics = (AUDIT,)

    def process(self, events: Sequence[Event]) -> Outputs:
        out = Outputs()
        if not events:
            return out
        cols: dict[str, list[object]] = {f.name: [] for f in AUDITS_SCHEMA}
        for ev in events:
            v = ev.value
            cols["ts_us"].append(int(v.get("ts_us") or ev.timestamp_us))
            for name in _TEXT:
                value = v.get(name)
                cols[name].append("" if value is None else str(value))
            cols["log_offset"].append(ev.offset)
        out.tables["audits"] = pa.table(cols, schema=AUDITS_SCHEMA)
        return out
