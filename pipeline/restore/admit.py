"""Which restored telemetry batches to apply: each batch id once, across the live fold,
earlier restores and this restore's own redone chunks.

The live fold (``pipeline.batch_ledger.BatchLedger``) treats an id applied at the *same*
origin (log position) as a batch redone after a crash, and applies it again. A restored
record keeps its original log position, so a restore must not use that origin: it
would re-apply every batch the live fold already holds. A restore's origin is
``restore:<scope>/<topic>/<partition>/<offset>`` (scope: the task id and the file's
identity, ``<task>/<sha of the file's canonical name>``), so:

* an id applied by the live fold, by an earlier restore or by another task has another
  origin: the batch is dropped (restoring a range twice, or one the projections still
  hold, doubles nothing; nor does a second copy of a file in one task: its origin
  names another file);
* an id applied at this restore's own origin is this task's chunk redone after a crash
  (the sink's intent protocol): applied again, with the same rows and tokens.

Each chunk that applies ids also writes a restore mark (``pipeline.batches``,
``MARK_PARTITION``) in the same insert: a live fold that loaded its ids earlier sees
the mark move and asks the store about ids it does not hold, so it does not apply
again what the restore applied.

Ids are named by the one rule, :func:`millrace.pipeline.batches.batch_key`. The
``applied_batches`` rows a restore writes expire one window after the restore ran (not
after the records' old log time), so a second restore within the window finds them.

Ids are remembered for a window only. A batch whose id is not remembered anywhere may
still be in the projections (applied by the live fold longer ago than the window): with
``held`` (the readings the projection holds), such a batch is dropped when one of its
readings — (identity, signal, source time), what names a measurement — is there. The
decision is the same when a chunk is redone: the chunk's ``applied_batches`` rows are
inserted first, so either they landed (the batches are then this task's own, applied
again) or nothing of the chunk did (the projection looks as it did the first time).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any

import pyarrow as pa
from fastavro import parse_schema, schemaless_writer

from millrace.pipeline.archive.format import topic_schema
from millrace.pipeline.batches import (
    DEFAULT_WINDOW_US,
    MARK_PARTITION,
    AppliedBatches,
    batch_key,
)
from millrace.pipeline.processors.base import Event, Outputs, ReadingProcessor
from millrace.pipeline.processors.telemetry import TelemetryProcessor
from millrace.pipeline.tables import APPLIED_BATCHES_SCHEMA
from millrace.pipeline.telemetry_columns import iter_samples, problem
from millrace.pipeline.timestamps import MAX_TS_US, MIN_TS_US
from millrace.pipeline.topics import TELEMETRY


@cache
def _telemetry_schema() -> tuple[Any, bytes]:
    ts = topic_schema(TELEMETRY)
    return parse_schema(ts.event), ts.header


def log_payload(event: Mapping[str, Any]) -> bytes:
    """The event in single-object encoding with the current schema, as the log holds
    one written now (fastavro's compiled writer: a restore has only the decoded event,
    and an id-less batch's content id hashes this datum)."""
    if event.get("batch_id"):
        return b""  # the id names the batch: no datum needed
    parsed, header = _telemetry_schema()
    out = io.BytesIO()
    out.write(header)
    schemaless_writer(out, parsed, dict(event))
    return out.getvalue()


#: (identities, first µs, last µs) -> the (identity, signal, ts µs) readings held
HeldReadings = Callable[[Sequence[str], int, int], set[tuple[str, str, int]]]


def reading_keys(event: Mapping[str, Any]) -> Iterator[tuple[str, str, int]]:
    identity = str(event.get("identity", ""))
    if problem(event) is not None:
        return
    for ts, _, values in iter_samples(event):
        for signal in values:
            yield identity, str(signal), ts


def restore_origin(scope: str, ev: Event) -> str:
    return f"restore:{scope}/{ev.topic}/{ev.partition}/{ev.offset}"


class RestoredTelemetry(ReadingProcessor):
    """The telemetry fold for restored records: batches whose id was applied at another
    origin are dropped, the rest folded by :meth:`TelemetryProcessor.fold`. The
    ``applied_batches`` rows come first in the output, so the sink inserts them before
    the readings: a chunk whose readings landed has its ids recorded too."""

    topics = (TELEMETRY,)

    def __init__(
        self,
        scope: str,
        now_us: int,
        window_us: int = DEFAULT_WINDOW_US,
        held: HeldReadings | None = None,
    ) -> None:
        self.scope = scope
        self.held = held
        self.now_us = now_us
        self.expires_us = now_us + window_us
        self.inner = TelemetryProcessor(window_us=window_us)
        self.dropped = 0

    def process_reading(self, events: Sequence[Event], reader: object | None) -> Outputs:
        keys = [batch_key(ev.value, ev.raw or log_payload(ev.value)) for ev in events]
        applied: dict[str, Any] = {}
        if isinstance(reader, AppliedBatches):
            for part in sorted({ev.partition for ev in events}):
                wanted = [k for k, ev in zip(keys, events, strict=True) if ev.partition == part]
                applied.update(reader.applied_batches(part, 0, wanted))
        held = self._held(events, keys, applied)
        keep: list[Event] = []
        kept_keys: list[str] = []
        origins: list[str] = []
        seen: set[str] = set()
        for ev, key in zip(events, keys, strict=True):
            where = restore_origin(self.scope, ev)
            prior = applied.get(key)
            if key in seen or (prior is not None and prior.origin != where) or key in held:
                self.dropped += 1
                continue
            seen.add(key)
            keep.append(ev)
            kept_keys.append(key)
            origins.append(where)
        out = Outputs()
        if keep:
            out.tables["applied_batches"] = self._applied_rows(events[0], keep, kept_keys, origins)
            out.merge(self.inner.fold(keep))
        return out

    def _applied_rows(
        self, first: Event, keep: Sequence[Event], keys: list[str], origins: list[str]
    ) -> pa.Table:
        """The chunk's mark (first), then a row per applied id."""
        mark = f"mark:{self.scope}/{first.topic}/{first.partition}/{first.offset}"
        n = len(keep)
        return pa.Table.from_pydict(
            {
                "partition": [MARK_PARTITION, *(ev.partition for ev in keep)],
                "batch_key": [mark, *keys],
                "origin": [f"restore:{self.scope}", *origins],
                "identity": ["", *(str(ev.value.get("identity", "")) for ev in keep)],
                "applied_us": [self.now_us, *(ev.timestamp_us for ev in keep)],
                "expires_us": [self.expires_us] * (n + 1),
            },
            schema=APPLIED_BATCHES_SCHEMA,
        )

    def _held(self, events: Sequence[Event], keys: Sequence[str], applied: Any) -> set[str]:
        """Keys of the batches no id names that the projection holds a reading of.

        The projection is asked first about the batches' identities and time span (one
        query, per batch only its rows' times): most restores go to projections that
        hold none of it, and then no reading is looked at one by one."""
        if self.held is None:
            return set()
        unknown = [(ev, k) for ev, k in zip(events, keys, strict=True) if k not in applied]
        spans = [_span(ev.value) for ev, _ in unknown]
        times = [t for span in spans if span is not None for t in span]
        if not times:
            return set()
        identities = sorted({str(ev.value.get("identity", "")) for ev, _ in unknown})
        present = self.held(identities, min(times), max(times))
        if not present:
            return set()
        readings = {k: list(reading_keys(ev.value)) for ev, k in unknown}
        return {k for k, rs in readings.items() if any(r in present for r in rs)}


def _span(event: Mapping[str, Any]) -> tuple[int, int] | None:
    """The first and last time of a batch's rows, or None without rows (a row without
    values, or a batch that is not applied, only widens the span asked about; times out
    of range are taken as its bounds)."""
    samples = event.get("samples")
    ts = [s["ts_us"] for s in samples] if samples else event.get("ts_us") or ()
    if not ts:
        return None
    return (_clamped(min(ts)), _clamped(max(ts)))


def _clamped(ts: int) -> int:
    return min(max(ts, MIN_TS_US), MAX_TS_US - 1)
