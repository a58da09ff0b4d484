"""Dead-letter processor: the deadletter topic -> the deadletter projection."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from millrace.pipeline.processors.base import Event, Outputs, Processor
from millrace.pipeline.tables import DEADLETTER_SCHEMA
from millrace.pipeline.topics import DEADLETTER


class DeadLetterProcessor(Processor):
    """Rows of ``millrace.deadletter``. A failure with a source position is keyed by
    it (a retried batch reporting it again collapses); one without is keyed by its
    own place in the deadletter topic."""

    topics = (DEADLETTER,)

    def process(self, events: Sequence[Event]) -> Outputs:
        rows: dict[str, list[object]] = {
            k: []
            for k in (
                "ts_us",
                "source_topic",
                "source_partition",
                "source_offset",
                "dedup_key",
                "stage",
                "error_type",
                "reason",
                "key",
                "payload",
                "dl_partition",
                "dl_offset",
            )
        }
        for ev in events:
            v = ev.value
            has_pos = v.get("source_offset") is not None
            rows["ts_us"].append(int(v.get("ts_us") or ev.timestamp_us))
            rows["source_topic"].append(str(v.get("source_topic") or ""))
            sp = v.get("source_partition")
            rows["source_partition"].append(int(sp) if has_pos and sp is not None else -1)
            rows["source_offset"].append(int(v["source_offset"]) if has_pos else -1)
            rows["dedup_key"].append("" if has_pos else f"{ev.partition}:{ev.offset}")
            rows["stage"].append(str(v.get("stage") or ""))
            rows["error_type"].append(str(v.get("error_type") or ""))
            rows["reason"].append(str(v.get("reason") or ""))
            key = v.get("key")
            rows["key"].append(key.decode("utf-8", "replace") if isinstance(key, bytes) else "")
            payload = v.get("payload") or b""
            rows["payload"].append(
                payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
            )
            rows["dl_partition"].append(ev.partition)
            rows["dl_offset"].append(ev.offset)
        out = Outputs()
        if events:
            out.tables["deadletter"] = pa.Table.from_pydict(rows, schema=DEADLETTER_SCHEMA)
        return out
