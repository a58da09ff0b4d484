"""Events and records for the archive tests."""

from __future__ import annotations

import io
import json
from typing import Any

from fastavro import parse_schema, schemaless_writer

from millrace.pipeline.archive.container import ContainerWriter
from millrace.pipeline.archive.format import encode_record, topic_schema
from millrace.pipeline.codec import SINGLE_OBJECT_MAGIC, default_codec, fingerprint
from millrace.pipeline.log.base import Record
from millrace.pipeline.telemetry_columns import COLUMN_FIELDS
from millrace.schemas import HISTORY_DIR

#: the column-wise fields of TelemetryBatch v5, empty: what a row-wise batch decodes with
NO_COLUMNS: dict[str, list[Any]] = {f: [] for f in COLUMN_FIELDS}


def batch(identity: str, ts_us: int, n: int = 3) -> dict[str, Any]:
    return {
        "identity": identity,
        "source": "test",
        "received_us": ts_us,
        "samples": [{"ts_us": ts_us, "values": {f"s{i}": float(i) for i in range(n)}}],
    }


def telemetry(offset: int, ts_us: int, identity: str = "dev-1", **kw: Any) -> Record:
    payload = default_codec().encode("telemetry", batch(identity, ts_us))
    return Record("telemetry", 0, offset, ts_us, identity.encode(), payload, **kw)


def old_version_payload(identity: str, ts_us: int) -> bytes:
    """A TelemetryBatch in the v2 schema of schemas/history (no ``ip``)."""
    old = json.loads((HISTORY_DIR / "TelemetryBatch.v2.avsc").read_text())
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(old), batch(identity, ts_us))
    return SINGLE_OBJECT_MAGIC + fingerprint(old) + out.getvalue()


def write_file(
    records: list[Record], codec: str = "zstandard", block_bytes: int = 1 << 20
) -> bytes:
    out = io.BytesIO()
    first = records[0]
    w = ContainerWriter(
        out, topic_schema(first.topic), first.partition, first.offset, codec, block_bytes
    )
    for r in records:
        w.add(encode_record(r).datum)
    w.close()
    return out.getvalue()
