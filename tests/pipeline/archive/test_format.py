"""The archive format: files any Avro reader (fastavro, ClickHouse) reads, the same bytes
on a rerun, manifests, paths and windows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from millrace.pipeline.archive.container import sync_marker
from millrace.pipeline.archive.errors import ArchiveFormatError
from millrace.pipeline.archive.format import (
    Manifest,
    archive_schema,
    data_path,
    encode_record,
    hour_dirs,
    manifest_path,
    parse_window,
    read_archive,
    topic_schema,
)
from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.base import Record
from millrace.projections.store.chdb import ChdbStore
from tests.pipeline.archive.helpers import (
    NO_COLUMNS,
    batch,
    old_version_payload,
    telemetry,
    write_file,
)

T0 = 1_764_000_000_000_000  # 2025-11-24T16:00:00Z


def mixed_records() -> list[Record]:
    return [
        telemetry(10, T0, headers=(("trace", b"\x01\x02"),)),
        Record("telemetry", 0, 11, T0 + 1, None, old_version_payload("dev-2", T0 + 1)),
        Record("telemetry", 0, 12, T0 + 2, b"k", b"not avro at all"),
        telemetry(13, T0 + 3, identity="dev-3"),
    ]


@pytest.mark.parametrize("codec", ["zstandard", "deflate"])
def test_plain_fastavro_reads_every_record(codec: str) -> None:
    data = write_file(mixed_records(), codec)
    reader = fastavro.reader(io.BytesIO(data))
    assert reader.metadata["millrace.topic"] == "telemetry"
    assert reader.metadata["millrace.partition"] == "0"
    assert reader.metadata["avro.codec"] == codec
    rows = list(reader)
    assert [r["offset"] for r in rows] == [10, 11, 12, 13]
    assert rows[0]["key"] == b"dev-1" and rows[0]["headers"] == [
        {"key": "trace", "value": b"\x01\x02"}
    ]
    assert rows[0]["value"] == {**batch("dev-1", T0), "ip": None, "batch_id": None, "samples": [
        {"ts_us": T0, "values": {"s0": 0.0, "s1": 1.0, "s2": 2.0}, "quality": 0}
    ], **NO_COLUMNS}  # fmt: skip
    assert rows[1]["value"]["identity"] == "dev-2" and rows[1]["value"]["ip"] is None
    assert rows[1]["key"] is None
    assert rows[2]["value"] is None and rows[2]["raw"] == b"not avro at all"
    assert all(r["raw"] is None for i, r in enumerate(rows) if i != 2)


def test_the_fast_path_copies_the_payload() -> None:
    r = telemetry(5, T0)
    enc = encode_record(r)
    assert enc.datum.endswith(b"\x02" + r.value[10:] + b"\x00")
    assert enc.readings == 3


def test_an_older_version_is_resolved_and_counted() -> None:
    enc = encode_record(Record("telemetry", 0, 1, T0, None, old_version_payload("d", T0)))
    assert enc.readings == 3
    fresh = encode_record(telemetry(1, T0, identity="d"))
    assert enc.datum.replace(b"\x00", b"")[:4] == fresh.datum.replace(b"\x00", b"")[:4]


def test_read_archive_yields_current_schema_events() -> None:
    info, records = read_archive(io.BytesIO(write_file(mixed_records())))
    assert (info.topic, info.partition, info.codec) == ("telemetry", 0, "zstandard")
    assert info.event_fingerprint == topic_schema("telemetry").fingerprint_hex
    got = list(records)
    assert [g.offset for g in got] == [10, 11, 12, 13]
    assert got[2].value is None and got[2].raw == b"not avro at all"
    codec = default_codec()
    for g, r in zip(got, mixed_records(), strict=True):
        back = g.to_record()
        assert (back.offset, back.timestamp_us, back.key, back.headers) == (
            r.offset, r.timestamp_us, r.key, r.headers,
        )  # fmt: skip
        if g.value is not None:
            assert codec.decode("telemetry", back.value) == codec.decode("telemetry", r.value)


@given(st.integers(1, 40), st.sampled_from(["zstandard", "deflate"]), st.integers(64, 4096))
def test_a_rerun_writes_the_same_bytes(n: int, codec: str, block: int) -> None:
    records = [telemetry(100 + i, T0 + i * 1000, identity=f"d{i % 3}") for i in range(n)]
    first = write_file(records, codec, block)
    assert write_file(records, codec, block) == first
    assert [r["offset"] for r in fastavro.reader(io.BytesIO(first))] == list(range(100, 100 + n))
    assert sync_marker("telemetry", 0, 100) in first


def test_a_file_from_a_plain_fastavro_writer_reads(tmp_path: Path) -> None:
    """Other tools may write archives following the documented schema (random sync,
    fastavro's metadata order)."""
    schema = archive_schema(json.loads(topic_schema("telemetry").json)["fields"][4]["type"][1])
    out = io.BytesIO()
    rows = [
        {"offset": 7, "timestamp_us": T0, "key": b"x", "headers": [], "value": {
            **batch("x", T0), "ip": "10.0.0.1"}, "raw": None},
    ]  # fmt: skip
    fastavro.writer(
        out, fastavro.parse_schema(schema), rows, codec="deflate",
        metadata={"millrace.format": "1", "millrace.topic": "telemetry",
                  "millrace.partition": "3"},
    )  # fmt: skip
    out.seek(0)
    info, records = read_archive(out)
    (rec,) = list(records)
    assert info.partition == 3 and rec.offset == 7 and rec.value is not None
    assert rec.value["ip"] == "10.0.0.1"


@pytest.mark.parametrize(
    "data",
    [b"", b"hello", b"Obj\x01\x00" + b"\x00" * 16],
)
def test_not_an_archive(data: bytes) -> None:
    with pytest.raises(ArchiveFormatError):
        _info, records = read_archive(io.BytesIO(data))
        list(records)


def test_a_plain_avro_file_without_millrace_metadata_is_refused() -> None:
    out = io.BytesIO()
    fastavro.writer(out, {"type": "record", "name": "X", "fields": []}, [{}])
    out.seek(0)
    with pytest.raises(ArchiveFormatError, match="not a millrace archive"):
        read_archive(out)


def test_a_corrupt_block_raises_archive_format_error() -> None:
    data = bytearray(write_file([telemetry(i, T0 + i) for i in range(50)], "deflate"))
    data[-40:-20] = b"\xff" * 20
    _info, records = read_archive(io.BytesIO(bytes(data)))
    with pytest.raises(ArchiveFormatError):
        list(records)


def test_clickhouse_reads_the_file_with_its_avro_input(
    tmp_path: Path, chdb_store: ChdbStore
) -> None:
    # through the session's chDB (one embedded server per process: a second chdb.query
    # on ':memory:' fails once the shared store is open)
    path = tmp_path / "0-00000000000000000010.avro"
    path.write_bytes(write_file(mixed_records()))
    out = chdb_store.execute(
        f"SELECT offset, value.identity, length(value.samples) FROM file('{path}', 'Avro') "
        "WHERE value IS NOT NULL ORDER BY offset"
    )
    assert [list(r) for r in out.rows] == [[10, "dev-1", 1], [11, "dev-2", 1], [13, "dev-3", 1]]


def test_manifest_round_trip_and_refusals() -> None:
    m = Manifest(
        1, "telemetry", 2, data_path("telemetry", 2, T0, 12345), 12345, 23456, 11112, 0,
        T0, T0 + 5, T0, T0 + 3_600_000_000, 99, "ab" * 32, "zstandard", "00" * 8, T0,
    )  # fmt: skip
    assert Manifest.from_json(m.to_json()) == m
    assert m.end_offset == 23457
    raw = json.loads(m.to_json())
    for bad in ({**raw, "format": 2}, {**raw, "records": "1"}, {"format": 1}):
        with pytest.raises(ArchiveFormatError):
            Manifest.from_json(json.dumps(bad))
    with pytest.raises(ArchiveFormatError):
        Manifest.from_json(b"{nope")


def test_paths_sort_by_time() -> None:
    p = data_path("telemetry", 2, T0, 12345)
    assert p == "telemetry/2025/11/24/16/2-00000000000000012345.avro"
    assert manifest_path(p) == "telemetry/2025/11/24/16/2-00000000000000012345.manifest.json"
    assert hour_dirs("alarms", T0, T0 + 1) == ["alarms/2025/11/24/15", "alarms/2025/11/24/16"]


@pytest.mark.parametrize(
    ("text", "us"), [("1h", 3_600_000_000), ("15m", 900_000_000), ("1d", 86_400_000_000)]
)
def test_windows(text: str, us: int) -> None:
    assert parse_window(text) == us


@pytest.mark.parametrize("text", ["7m", "0h", "2d", "1x", "", "30s", "25h"])
def test_bad_windows(text: str) -> None:
    with pytest.raises(ValueError):
        parse_window(text)
