"""The block decoder of current-schema telemetry (``archive.fastread``) against fastavro:
the same records, the event's datum as the log held it, and fastavro's answer for every
block the decoder does not take."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from millrace.pipeline.archive.container import ContainerWriter
from millrace.pipeline.archive.errors import ArchiveFormatError
from millrace.pipeline.archive.fastread import NotCanonicalError, decode_block
from millrace.pipeline.archive.format import ArchivedRecord, read_archive, topic_schema
from millrace.pipeline.batches import batch_key
from millrace.pipeline.codec import default_codec
from millrace.pipeline.events import telemetry_batch
from millrace.pipeline.log.base import Record
from millrace.pipeline.restore.admit import log_payload
from millrace.pipeline.restore.fold import _event
from tests.pipeline.archive.helpers import telemetry, write_file

T0 = 1_764_000_000_000_000

# lengths of one varint byte and of two (64 bytes and more)
texts = st.text(max_size=8) | st.text(min_size=64, max_size=70)
signal_names = st.lists(
    st.text(min_size=1, max_size=6) | st.text(min_size=64, max_size=66),
    min_size=0,
    max_size=5,
    unique=True,
)


@st.composite
def column_batches(draw: Any) -> dict[str, Any]:
    """Column-wise batches; the decoder reads bytes, so the columns need not agree with
    each other (fastavro does not check that either)."""
    signals = draw(signal_names)
    return telemetry_batch(
        draw(st.sampled_from(["dev-1", "dev-2", "ü-3"])),
        received_us=draw(st.integers(-(2**63), 2**63 - 1)),
        source=draw(texts),
        ip=draw(st.none() | texts),
        batch_id=draw(st.none() | texts),
        ts_us=draw(st.lists(st.integers(0, 2**62), max_size=3)),
        qualities=draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=3)),
        signals=signals,
        kinds=draw(st.lists(st.integers(0, 3), min_size=len(signals), max_size=len(signals))),
        counts=draw(st.lists(st.integers(0, 3), max_size=3)),
        rows=draw(st.lists(st.integers(0, 3), max_size=3)),
        doubles=draw(st.lists(st.floats(allow_nan=False), max_size=4)),
        booleans=draw(st.lists(st.booleans(), max_size=4)),
        strings=draw(st.lists(texts, max_size=3)),
        longs=draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4)),
    )


@st.composite
def records(draw: Any) -> list[Record]:
    codec = default_codec()
    out = []
    for i in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["columns", "columns", "rows", "raw"]))
        key = draw(st.none() | st.binary(max_size=4))
        headers = tuple(draw(st.lists(st.tuples(texts, st.binary(max_size=3)), max_size=2)))
        if kind == "columns":
            payload = codec.encode("telemetry", draw(column_batches()))
        elif kind == "rows":
            payload = telemetry(0, T0).value
        else:
            payload = b"not avro"
        out.append(Record("telemetry", 0, 100 + i, T0 + i, key, payload, headers))
    return out


def fastavro_records(data: bytes) -> list[dict[str, Any]]:
    return list(fastavro.reader(io.BytesIO(data)))


def as_dict(rec: ArchivedRecord) -> dict[str, Any]:
    return {
        "offset": rec.offset,
        "timestamp_us": rec.timestamp_us,
        "key": rec.key,
        "headers": [{"key": k, "value": v} for k, v in rec.headers],
        "value": rec.value,
        "raw": rec.raw,
    }


@given(records(), st.integers(64, 2048))
def test_the_same_records_as_fastavro(recs: list[Record], block: int) -> None:
    data = write_file(recs, "deflate", block)
    _info, got = read_archive(io.BytesIO(data))
    read = list(got)
    assert [as_dict(r) for r in read] == fastavro_records(data)
    for r, rec in zip(recs, read, strict=True):
        if rec.datum is not None:  # the log payload after its header, byte for byte
            assert rec.datum == r.value[10:]
            assert _event(rec).raw == r.value


@given(column_batches())
def test_a_content_id_from_the_datum_is_the_live_folds(event: dict[str, Any]) -> None:
    event = {**event, "batch_id": None}
    payload = default_codec().encode("telemetry", event)
    data = write_file([Record("telemetry", 0, 0, T0, None, payload)])
    (rec,) = list(read_archive(io.BytesIO(data))[1])
    assert rec.datum is not None and rec.value is not None
    live = batch_key(event, payload)
    assert batch_key(rec.value, _event(rec).raw) == live
    assert batch_key(rec.value, log_payload(rec.value)) == live  # the re-encoding agrees


def _block(event: dict[str, Any]) -> bytes:
    """One archived record's datum: offset 0, time 0, no key, no headers, the event."""
    payload = default_codec().encode("telemetry", event)
    return b"\x00\x00\x00\x00\x02" + payload[10:] + b"\x00"


def test_a_block_of_one_record_decodes() -> None:
    event = telemetry_batch("d", received_us=5, ts_us=[T0], signals=["a"], kinds=[0], doubles=[1.5])
    ((offset, ts, key, headers, value, raw, datum),) = decode_block(_block(event), 1, {})
    assert (offset, ts, key, headers, raw) == (0, 0, None, (), None)
    assert value == event and datum == _block(event)[5:-1]


def test_an_over_long_varint_is_not_canonical() -> None:
    event = telemetry_batch("d", received_us=5, ts_us=[T0], signals=["a"], kinds=[0], doubles=[1.5])
    block = _block(event)
    at = block.index(b"\x02d\x00\x0a") + 3
    longer = block[:at] + b"\x8a\x00" + block[at + 1 :]
    with pytest.raises(NotCanonicalError, match="over-long"):
        decode_block(longer, 1, {})


def test_an_array_in_two_blocks_is_read_by_fastavro() -> None:
    """A writer that splits arrays in blocks (Java's may): fastavro decodes that block,
    and its records have no datum (their bytes are not the canonical ones a content id
    hashes: ``admit.log_payload`` encodes the event again)."""
    event = telemetry_batch(
        "d", received_us=5, ts_us=[T0], signals=["a", "b"], kinds=[0, 0], doubles=[1.5, 2.5]
    )
    canonical = _block(event)
    whole = b"\x04\x02a\x02b\x00"  # [a, b]: 2 items, "a", "b", end
    assert whole in canonical
    split = canonical.replace(whole, b"\x02\x02a\x02\x02b\x00", 1)  # 1 item, 1 item, end
    with pytest.raises(NotCanonicalError, match="several blocks"):
        decode_block(split, 1, {})
    out = io.BytesIO()
    w = ContainerWriter(out, topic_schema("telemetry"), 0, 0, "deflate")
    w.add(canonical)
    w.add(split)
    w.close()
    data = out.getvalue()
    read = list(read_archive(io.BytesIO(data))[1])
    assert [as_dict(r) for r in read] == fastavro_records(data)
    assert read[0].value == read[1].value == event
    assert [r.datum for r in read] == [None, None]  # the block went to fastavro as a whole


def test_signal_lists_are_copies() -> None:
    """Reused lists are handed out as copies: one event's list changed leaves the next's."""
    events = [
        telemetry_batch("d", received_us=i, ts_us=[T0 + i], signals=["a"], kinds=[0], doubles=[i])
        for i in range(3)
    ]
    block = b"".join(_block(e) for e in events)
    decoded = decode_block(block, 3, {})
    first = decoded[0][4]
    assert first is not None
    first["signals"].append("x")
    assert [d[4]["signals"] for d in decoded[1:] if d[4] is not None] == [["a"], ["a"]]


def test_a_truncated_block_is_not_canonical_and_fastavro_names_the_corruption() -> None:
    recs = [
        Record(
            "telemetry", 0, i, T0 + i, b"d",
            default_codec().encode("telemetry", telemetry_batch(
                "d", received_us=i, ts_us=[T0], signals=["a"], kinds=[0], doubles=[float(i)])),
        )
        for i in range(50)
    ]  # fmt: skip
    block = b"".join(_block(default_codec().decode("telemetry", r.value)) for r in recs)
    with pytest.raises(NotCanonicalError):
        decode_block(block[:-7], 50, {})
    with pytest.raises(NotCanonicalError):
        decode_block(block + b"\x00", 50, {})
    data = bytearray(write_file(recs, "deflate"))
    data[-40:-20] = b"\xff" * 20
    with pytest.raises(ArchiveFormatError):
        list(read_archive(io.BytesIO(bytes(data)))[1])
