"""Batch ids (pipeline/batches.py): the one key rule and the in-memory ledger of the
telemetry fold, over the memory sink (the chDB state machine is in
tests/projections/test_batch_dedup.py)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline.batch_ledger import BatchLedger
from millrace.pipeline.batches import (
    CONTENT_PREFIX,
    batch_key,
    http_batch_id,
    mqtt_batch_id,
)
from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.processors.base import Event
from millrace.pipeline.processors.telemetry import TelemetryProcessor
from millrace.pipeline.sink import MemoryProjectionSink, Range, SinkBatch
from millrace.schemas import HISTORY_DIR, SCHEMA_DIR

T0 = 1_750_000_000_000_000
CODEC = default_codec()


def batch(identity: str = "dev", v: float = 1.0, bid: str | None = None) -> dict[str, Any]:
    return {
        "identity": identity,
        "source": "t",
        "received_us": T0,
        "samples": [{"ts_us": T0, "values": {"v": v}, "quality": 0}],
        "ip": None,
        "batch_id": bid,
    }


def event(offset: int, value: dict[str, Any], ts: int = T0, partition: int = 0) -> Event:
    raw = CODEC.encode("telemetry", value)
    return Event("telemetry", partition, offset, ts, b"k", CODEC.decode("telemetry", raw), 0, raw)


def test_the_batch_id_is_the_key() -> None:
    assert batch_key(batch(bid="abc"), b"") == "abc"


def test_without_an_id_the_key_is_the_content() -> None:
    a, b = batch(v=1.0), batch(v=2.0)
    ka = batch_key(a, CODEC.encode("telemetry", a))
    assert ka.startswith(CONTENT_PREFIX)
    assert ka == batch_key(a, b"")  # re-encoded when the payload is not at hand
    assert ka != batch_key(b, CODEC.encode("telemetry", b))


def test_an_old_schema_payload_has_the_content_key_of_its_current_encoding() -> None:
    """A v3 record (before batch_id) on the log and the same batch archived and
    re-encoded with the current schema (a restore) name the same batch."""
    v3 = json.loads((HISTORY_DIR / "TelemetryBatch.v3.avsc").read_text())
    old = AvroCodec([v3], topics={"telemetry": "io.millrace.events.TelemetryBatch"})
    value = {k: v for k, v in batch().items() if k != "batch_id"}
    old_raw = old.encode("telemetry", value)
    decoded = CODEC.decode("telemetry", old_raw)
    assert decoded["batch_id"] is None
    assert batch_key(decoded, old_raw) == batch_key(decoded, CODEC.encode("telemetry", decoded))


def test_derived_ids_depend_on_every_part() -> None:
    assert http_batch_id("a", "k") == http_batch_id("a", "k")
    assert http_batch_id("a", "k") != http_batch_id("b", "k")
    assert http_batch_id("a", "bk") != http_batch_id("ab", "k")  # length-prefixed parts
    m = mqtt_batch_id("c", "dev", "t/x", b"{}", 7)
    assert m == mqtt_batch_id("c", "dev", "t/x", b"{}", 7)
    assert m != mqtt_batch_id("c", "dev", "t/x", b"{}", 8)
    assert m != mqtt_batch_id("c", "dev", "t/x", b"{ }", 7)


def test_a_duplicate_at_another_offset_is_dropped_a_redo_is_not() -> None:
    ledger = BatchLedger()
    evs = [event(0, batch(bid="x")), event(1, batch(bid="y")), event(2, batch(bid="x"))]
    got = ledger.admit(evs, None)
    assert [e.offset for e in got.events] == [0, 1]
    assert got.dropped == 1
    assert got.rows is not None
    assert got.rows.column("origin").to_pylist() == ["telemetry/0/0", "telemetry/0/1"]
    # the same range redone (a crash before the commit): applied again, same rows
    again = BatchLedger().admit(evs, None)
    assert again.rows is not None and again.rows.equals(got.rows)


def test_an_expired_id_is_applied_again() -> None:
    ledger = BatchLedger(window_us=1_000)
    first = ledger.admit([event(0, batch(bid="x"), ts=T0)], None)
    assert len(first.events) == 1
    late = ledger.admit([event(1, batch(bid="x"), ts=T0 + 1_000)], None)
    assert len(late.events) == 1
    soon = ledger.admit([event(2, batch(bid="x"), ts=T0 + 1_500)], None)
    assert soon.events == []


def fold(sink: MemoryProjectionSink, proc: TelemetryProcessor, evs: list[Event], seq: int) -> None:
    out = proc.process_reading(evs, sink)
    tp = TopicPartition("telemetry", evs[0].partition)
    sink.write("c", SinkBatch(seq, {tp: Range(evs[0].offset, evs[-1].offset + 1)}, out.tables))


def test_a_new_process_reads_the_applied_ids_back() -> None:
    sink = MemoryProjectionSink()
    fold(sink, TelemetryProcessor(), [event(0, batch(bid="x")), event(1, batch(bid="y"))], 1)
    restarted = TelemetryProcessor()
    out = restarted.process_reading([event(2, batch(bid="x")), event(3, batch(bid="z"))], sink)
    assert out.tables["readings"].num_rows == 1
    assert restarted.ledger.loads == 1


def test_offsets_that_jump_reload_the_partition() -> None:
    """Another worker folded the partition meanwhile: its ids are read back."""
    sink = MemoryProjectionSink()
    mine = TelemetryProcessor()
    fold(sink, mine, [event(0, batch(bid="a"))], 1)
    fold(sink, TelemetryProcessor(), [event(1, batch(bid="b"))], 2)  # the other worker
    out = mine.process_reading([event(2, batch(bid="b"))], sink)
    assert "readings" not in out.tables
    assert mine.ledger.loads == 2


def test_beyond_max_keys_filter_hits_are_asked_of_the_store() -> None:
    """Exact ids past max_keys are forgotten (never the last step's); the filter still
    holds them, and a hit is decided by the store."""
    sink = MemoryProjectionSink()
    proc = TelemetryProcessor(max_keys=2)
    fold(sink, proc, [event(i, batch(bid=f"b{i}")) for i in range(5)], 1)
    fold(sink, proc, [event(5 + i, batch(bid=f"c{i}")) for i in range(5)], 2)
    assert proc.ledger.held() == 5  # the last step's only
    out = proc.process_reading([event(10, batch(bid="b0")), event(11, batch(bid="new"))], sink)
    assert out.tables["readings"].num_rows == 1
    assert proc.ledger.asks == 1 and proc.ledger.asked >= 1


@settings(max_examples=80, deadline=None)
@given(
    ids=st.lists(st.sampled_from(["a", "b", "c", "d", None]), min_size=1, max_size=30),
    cuts=st.lists(st.integers(1, 29), max_size=4),
    restart=st.booleans(),
)
def test_any_batching_applies_each_id_once(
    ids: list[str | None], cuts: list[int], restart: bool
) -> None:
    """Values: an id's first event in log order (id-less events: by content, here
    all distinct); however the log is cut into fold steps and processes restart."""
    evs = [event(i, batch(v=float(i), bid=b)) for i, b in enumerate(ids)]
    expected: dict[str, float] = {}
    for i, b in enumerate(ids):
        expected.setdefault(b if b is not None else f"n{i}", float(i))
    sink = MemoryProjectionSink()
    proc = TelemetryProcessor()
    bounds = sorted({0, len(evs), *(c for c in cuts if c < len(evs))})
    for seq, (lo, hi) in enumerate(itertools.pairwise(bounds), start=1):
        if restart:
            proc = TelemetryProcessor()
        fold(sink, proc, evs[lo:hi], seq)
    got = sorted(r["value"] for r in sink.rows.get("readings", []))
    assert got == sorted(expected.values())


def test_the_schema_file_declares_batch_id_nullable() -> None:
    schema = json.loads((SCHEMA_DIR / "telemetry.avsc").read_text())
    field = next(f for f in schema["fields"] if f["name"] == "batch_id")
    assert field["type"] == ["null", "string"] and field["default"] is None


@pytest.mark.parametrize("bid", ["x" * 300, "ü"])
def test_any_string_id_round_trips(bid: str) -> None:
    assert batch_key(CODEC.decode("telemetry", CODEC.encode("telemetry", batch(bid=bid)))) == bid
