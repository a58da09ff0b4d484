"""Batch ids: what makes a TelemetryBatch count once, however often it reaches the log.

A batch can reach the log more than once: an HTTP client retries after a timeout, an
MQTT broker redelivers a QoS 1 message whose PUBACK it did not see, a connector's
store-and-forward resends what a timed-out publish had in fact delivered, a restore
folds archived batches into projections that still hold them. Every producer therefore
gives its batch an id that stays the same on every resend (``batch_id`` in
schemas/telemetry.avsc), and the telemetry fold applies an id once.

:func:`batch_key` is the ONE rule naming a batch, used by the live fold and by restores:
the batch id when the event has one, else an implicit *content id*, the sha256 of the
event's Avro datum (batches written before ids existed; the same event archived and
restored re-encodes to the same datum, so a restore of id-less batches into
projections that hold them doubles nothing). The datum is in TelemetryBatch v4 for a
row-wise batch (the version its writers knew: the column-wise v5 leaves their ids
unchanged) and in the current schema for a column-wise one. Ids are
prefixed by where they come from (``http:``, ``mqtt:``, ``spool:``/uuid, ``content:``),
and a client's Idempotency-Key is never used as an id itself (it is hashed with the
identity), so a client cannot forge a collision with another identity's batches.

The fold remembers applied ids in the ``applied_batches`` projection (migration 0013):
one row per applied id with the telemetry partition, the *origin* (the log position
that applied it, ``telemetry/<partition>/<offset>``) and when it expires (log time +
the window, default 24 h; ClickHouse's TTL drops it then). An id is a duplicate when it
was applied at a *different* origin that has not expired. Comparing origins, not just
ids, keeps the fold pure over the log: a batch redone after a crash (the sink's intent
protocol, ``pipeline.sink``) re-applies exactly the ids it applied the first time, with
the same rows and the same deduplication tokens, whether or not its rows had landed.

The fold's memory of applied ids is :class:`~millrace.pipeline.batch_ledger.BatchLedger`
(its module doc): the recent ids exactly and the window's ids in a Bloom filter of
configured size, confirmed with the store on a hit, so no store round trip per batch
and memory bounded whatever the rate. Telemetry is keyed by identity, so all of an
identity's batches (and their resends) are in one partition, and one worker folds a
partition at a time. When the offsets of a partition jump (another worker folded it
meanwhile, or a batch is redone), the partition is loaded again (its unexpired ids
streamed from the store in pages, :meth:`AppliedBatches.applied_keys`).

Restores write ``applied_batches`` rows too (``pipeline.restore.admit``, origin
``restore:…``), which a ledger loaded earlier does not hold. Every restore chunk
therefore inserts a *mark* row with its ids, in the same insert (one block: the mark
and the ids become visible together), in the reserved partition :data:`MARK_PARTITION`;
:meth:`AppliedBatches.restore_mark` sums up the mark rows (count and latest time, one
primary-key query). The ledger reads the mark once per fold step (no per-batch round
trip). While it moves from step to step (a restore is writing), the ids of a step not
held in memory are asked of the store (one query per partition and step); once it
stands still, a partition loaded before the last move is loaded again, which brings
all the restore's ids into memory. So a batch a restore applied before a fold step
began is dropped by that step, whatever the ledger had loaded: the restore and the
live fold never both apply an id *one after the other* (the reviewer's finding: a
lagging fold, a restore of the whole archive, the fold resumed).

Why this and not "the restore admits only ids below the live fold's position": a
restore also folds files that are not on this log (another deployment's archive,
files other tools wrote) whose offsets say nothing about the live position, and a
restore into emptied projections (progress gone) would have no position to compare
with; the mark covers every source alike, and later resends of a restored id too.
What it cannot exclude without a lock between the two writers: a restore chunk and a
live fold step that check the same id in the same instant (each before the other's
insert) both apply it. That takes a restore over records the live fold is folding at
that moment; pause the pipeline or let the fold catch up before restoring the log's
newest range (README, restore).
"""

from __future__ import annotations

import hashlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from millrace.pipeline.telemetry_columns import is_row_wise
from millrace.pipeline.topics import TELEMETRY

#: how long an id is remembered, by default (``idempotency: {window: 24h}``)
DEFAULT_WINDOW_US = 24 * 3_600_000_000
CONTENT_PREFIX = "content:"
HTTP_PREFIX = "http:"
#: the ``applied_batches`` partition of restore marks (no telemetry partition has it)
MARK_PARTITION = 2**32 - 1
MQTT_PREFIX = "mqtt:"


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


def new_batch_id() -> str:
    """A fresh id (128 random bits) for a batch a producer builds."""
    return uuid.uuid4().hex


def http_batch_id(identity: str, idempotency_key: str) -> str:
    """The batch id of an HTTP request with an ``Idempotency-Key``: derived from
    (identity, key) only, so every API process gives a retry the same id."""
    return HTTP_PREFIX + _digest(identity, idempotency_key)


def mqtt_batch_id(connection: str, identity: str, topic: str, payload: bytes, mid: int) -> str:
    """The batch id of one MQTT message's readings for ``identity``: a QoS 1 redelivery
    (DUP) carries the same topic, payload and packet id, so it maps to the same id."""
    return MQTT_PREFIX + _digest(connection, identity, topic, payload, str(mid))


@cache
def _current_header() -> bytes:
    from millrace.pipeline.codec import default_codec
    from millrace.pipeline.events import telemetry_batch

    return default_codec().encode(TELEMETRY, telemetry_batch("x", received_us=0))[:10]


@cache
def _row_wise_writer() -> tuple[Any, tuple[str, ...]]:
    """The compiled writer of TelemetryBatch v4 (the last row-wise version) and its fields."""
    import json

    from fastavro import parse_schema

    from millrace.pipeline.avro_writer import compile_writer
    from millrace.schemas import HISTORY_DIR

    schema = json.loads((HISTORY_DIR / "TelemetryBatch.v4.avsc").read_text(encoding="utf-8"))
    parsed = parse_schema(schema)
    return compile_writer(parsed, {}), tuple(f["name"] for f in schema["fields"])


def _content_datum(event: Mapping[str, Any], payload: bytes) -> bytes:
    """The datum a content id hashes. A row-wise batch (versions 1-4, or no rows at
    all): its datum in TelemetryBatch v4, the schema that was current when such
    batches were written, so their ids stay what they were before the column-wise
    version (a restore of an id-less batch the fold applied then drops it). A
    column-wise batch: its datum in the current schema, the payload after its header
    when the payload was written with it (no re-encoding), else the event re-encoded."""
    if is_row_wise(event):
        write, fields = _row_wise_writer()
        out = bytearray()
        write(out, {f: event[f] for f in fields if f in event})
        return bytes(out)
    header = _current_header()
    if payload[:10] == header:
        return payload[10:]
    from millrace.pipeline.codec import default_codec

    return default_codec().encode(TELEMETRY, event)[10:]


def batch_key(event: Mapping[str, Any], payload_bytes: bytes = b"") -> str:
    """The key a TelemetryBatch is applied once under: its ``batch_id``, else
    ``content:`` + sha256 of its Avro datum (:func:`_content_datum`). ``payload_bytes``:
    the event as the log holds it (single-object encoding), or empty."""
    bid = event.get("batch_id")
    if bid:
        return str(bid)
    return CONTENT_PREFIX + _digest(_content_datum(event, payload_bytes))


def origin(topic: str, partition: int, offset: int) -> str:
    """Where an id was applied: its log position."""
    return f"{topic}/{partition}/{offset}"


@dataclass(frozen=True, slots=True)
class Applied:
    origin: str
    expires_us: int


class AppliedBatches(ABC):
    """Port: the ``applied_batches`` projection, read back (the sink implements it)."""

    @abstractmethod
    def applied_batches(
        self, partition: int, since_us: int, keys: Sequence[str] | None = None
    ) -> dict[str, Applied]:
        """Ids applied in telemetry ``partition`` expiring after ``since_us`` (only
        ``keys`` when given)."""

    def applied_keys(
        self, partition: int, since_us: int, after: str | None, limit: int
    ) -> list[tuple[str, int]]:
        """One page of the ids :meth:`applied_batches` reads, in id order: ids after
        ``after`` (all when None) with their expiry, at least ``limit`` rows when that
        many remain (an id may come in several rows; all of an id's rows are in one
        page), fewer only on the last page. Stores page in the query; this default
        reads everything and slices (for test doubles)."""
        found = sorted(self.applied_batches(partition, since_us).items())
        return [(k, a.expires_us) for k, a in found if after is None or k > after][:limit]

    def restore_mark(self) -> tuple[int, int]:
        """The restore marks (rows of :data:`MARK_PARTITION`): their count and latest
        ``applied_us``; it changes whenever a restore wrote ids (see the module doc)."""
        return (0, 0)
