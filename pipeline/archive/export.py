"""Readings of a time range, from the archive to a Parquet file (``millrace archive
export``), in the raw-readings shape (identity, signal, ts, kind/value/text by the
value-kind codec of :mod:`millrace.pipeline.values`, quality).

The range is of reading (source) time, the manifests' of log time: windows are picked
whose log time overlaps the range widened by ``slack_us`` on each side (readings that
reached the log that much before or after their timestamps). A batch id seen before is
skipped, as the telemetry fold skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from millrace.pipeline.archive.format import DAY_US, Manifest
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.telemetry_columns import iter_samples, problem
from millrace.pipeline.topics import TELEMETRY
from millrace.pipeline.values import KIND_INT, KIND_STRING, int_text, kind_of

SCHEMA = pa.schema(
    [
        ("identity", pa.string()),
        ("signal", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("kind", pa.uint8()),
        ("value", pa.float64()),
        ("text", pa.string()),
        ("quality", pa.int32()),
    ]
)


@dataclass
class ExportResult:
    windows: int = 0
    batches: int = 0
    readings: int = 0
    duplicates: int = 0  # batches skipped: their id was exported already


def export_windows(
    store: ArchiveStore, start_us: int, end_us: int, slack_us: int = DAY_US
) -> list[Manifest]:
    """The telemetry windows that may hold readings of ``[start_us, end_us)``."""
    return store.list_windows(TELEMETRY, None, start_us - slack_us, end_us + slack_us)


def export_readings(
    store: ArchiveStore,
    windows: list[Manifest],
    start_us: int,
    end_us: int,
    path: str | Path,
    *,
    identities: Collection[str] = (),
    on_window: Callable[[Manifest, ExportResult], None] | None = None,
) -> ExportResult:
    """Write the readings of ``windows`` timed in ``[start_us, end_us)`` to ``path``
    (Parquet, zstd), one row group per window; ArchiveFormatError for a bad file."""
    wanted = set(identities)
    seen: set[str] = set()
    result = ExportResult()
    with pq.ParquetWriter(str(path), SCHEMA, compression="zstd") as writer:
        for m in windows:
            cols: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
            for rec in store.open_records(m):
                event = rec.value
                if event is None or (wanted and event["identity"] not in wanted):
                    continue
                batch_id = event.get("batch_id")
                if batch_id:
                    if batch_id in seen:
                        result.duplicates += 1
                        continue
                    seen.add(batch_id)
                result.batches += 1
                _rows(event, start_us, end_us, cols)
            result.windows += 1
            if cols["ts"]:
                writer.write_table(pa.table(cols, schema=SCHEMA))
                result.readings += len(cols["ts"])
            if on_window is not None:
                on_window(m, result)
    return result


def _rows(event: dict[str, Any], start_us: int, end_us: int, cols: dict[str, list[Any]]) -> None:
    identity = event["identity"]
    if problem(event) is not None:
        return
    for ts, quality, values in iter_samples(event):
        if not start_us <= ts < end_us:
            continue
        for signal, v in values.items():
            kind = kind_of(v)
            cols["identity"].append(identity)
            cols["signal"].append(signal)
            cols["ts"].append(ts)
            cols["kind"].append(kind)
            cols["value"].append(0.0 if kind == KIND_STRING else float(v))
            cols["text"].append(
                v if kind == KIND_STRING else int_text(int(v)) if kind == KIND_INT else ""
            )
            cols["quality"].append(quality)
