"""The millrace archive format, version 1 (README "Archive"; /ARCHIVE_SPEC in the issue).

One Avro Object Container File per (topic, partition, window piece) at
``<topic>/<yyyy>/<mm>/<dd>/<hh>/<partition>-<first offset, 20 digits>.avro``, beside
it a ``.manifest.json`` written after it (the commit point). Each record of a file is an
``io.millrace.archive.ArchivedRecord``: the original offset, log timestamp, key and
headers, and the event itself nested in full (``value``) — or, when it could not be
decoded, its bytes (``raw``). The event schema embedded is the one current when the file
was written; readers resolve it to theirs.

This module holds the schema per topic, the datum encoding (with the fast path that
copies a current-schema payload without decoding it) and the reader;
:mod:`millrace.pipeline.archive.layout` the paths, windows and the manifest (imported
from here too), :mod:`millrace.pipeline.archive.container` writes the container bytes;
telemetry in the current schema is read a block at a time by
:mod:`millrace.pipeline.archive.fastread` (fastavro for the blocks it does not take).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import IO, Any, cast

import fastavro
from fastavro import parse_schema, schemaless_reader

from millrace.pipeline.archive.errors import ArchiveFormatError
from millrace.pipeline.archive.fastread import Memo, NotCanonicalError, decode_block
from millrace.pipeline.archive.layout import DAY_US as DAY_US
from millrace.pipeline.archive.layout import FORMAT_VERSION as FORMAT_VERSION
from millrace.pipeline.archive.layout import HOUR_US as HOUR_US
from millrace.pipeline.archive.layout import Manifest as Manifest
from millrace.pipeline.archive.layout import data_path as data_path
from millrace.pipeline.archive.layout import hour_dir as hour_dir
from millrace.pipeline.archive.layout import hour_dirs as hour_dirs
from millrace.pipeline.archive.layout import manifest_path as manifest_path
from millrace.pipeline.archive.layout import parse_window as parse_window
from millrace.pipeline.archive.layout import sha256_hex as sha256_hex
from millrace.pipeline.archive.layout import window_start as window_start
from millrace.pipeline.avro_writer import compile_writer
from millrace.pipeline.codec import (
    SINGLE_OBJECT_MAGIC,
    AvroCodec,
    SchemaLookup,
    default_codec,
    fingerprint,
)
from millrace.pipeline.errors import DecodeError, SchemaError
from millrace.pipeline.log.base import Record
from millrace.pipeline.telemetry_columns import count
from millrace.pipeline.topics import TELEMETRY, TOPIC_SCHEMAS
from millrace.schemas import SCHEMA_DIR

CODECS = ("zstandard", "deflate")

# --- schemas ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicSchema:
    """The archive schema of one topic, built from its event record's current schema."""

    topic: str
    event: dict[str, Any]  # E, as in schemas/*.avsc
    archive: dict[str, Any]  # ArchivedRecord with E embedded
    json: str  # the archive schema as written into a file header
    header: bytes  # single-object header of the current E (the fast path's test)
    fingerprint_hex: str


def archive_schema(event: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ArchivedRecord`` schema of a topic whose events follow ``event``."""
    header = {
        "type": "record",
        "name": "Header",
        "fields": [{"name": "key", "type": "string"}, {"name": "value", "type": "bytes"}],
    }
    return {
        "type": "record",
        "name": "ArchivedRecord",
        "namespace": "io.millrace.archive",
        "fields": [
            {"name": "offset", "type": "long"},
            {"name": "timestamp_us", "type": "long"},
            {"name": "key", "type": ["null", "bytes"], "default": None},
            {"name": "headers", "type": {"type": "array", "items": header}, "default": []},
            {"name": "value", "type": ["null", dict(event)], "default": None},
            {"name": "raw", "type": ["null", "bytes"], "default": None},
        ],
    }


def _full_name(schema: Mapping[str, Any]) -> str:
    name, ns = str(schema.get("name", "")), schema.get("namespace")
    return f"{ns}.{name}" if ns and "." not in name else name


@cache
def _current_events(schema_dir: Path = SCHEMA_DIR) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(schema_dir.glob("*.avsc")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        out[_full_name(schema)] = schema
    return out


@cache
def topic_schema(topic: str) -> TopicSchema:
    """The archive schema of ``topic`` (ArchiveFormatError for an unknown topic)."""
    if topic not in TOPIC_SCHEMAS:
        raise ArchiveFormatError(f"unknown topic {topic!r}")
    event = _current_events()[TOPIC_SCHEMAS[topic]]
    archive = archive_schema(event)
    fp = fingerprint(event)
    text = json.dumps(archive, separators=(",", ":"))
    return TopicSchema(topic, event, archive, text, SINGLE_OBJECT_MAGIC + fp, fp.hex())


@cache
def _event_writer(topic: str) -> Any:
    return compile_writer(parse_schema(topic_schema(topic).event), {})


@cache
def _parsed_event(topic: str) -> Any:
    return parse_schema(topic_schema(topic).event)


@cache
def _parsed_archive(topic: str) -> Any:
    return parse_schema(topic_schema(topic).archive)


# --- datum encoding ---------------------------------------------------------------------


def _long(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _bytes(b: bytes) -> bytes:
    return _long(len(b)) + b


@dataclass(frozen=True, slots=True)
class Encoded:
    """One archived record's datum bytes, and its readings (telemetry) for the manifest."""

    datum: bytes
    readings: int


def count_readings(event: Mapping[str, Any]) -> int:
    """Values in a TelemetryBatch (rows or columns alike)."""
    return count(event)


def encode_record(
    record: Record,
    codec: AvroCodec | None = None,
    schema_lookup: SchemaLookup | None = None,
    *,
    count: bool = True,
) -> Encoded:
    """The ArchivedRecord datum of a log record.

    Fast path: a payload in single-object encoding with the current schema's
    fingerprint is copied after its 10-byte header, never decoded and re-encoded
    (its bytes are what the validating codec wrote). Other framings and versions are
    decoded, resolved to the current schema and encoded; undecodable bytes go to
    ``raw``. ``count`` decodes telemetry to count its readings (the manifest's).
    """
    ts = topic_schema(record.topic)
    out = bytearray(_long(record.offset))
    out += _long(record.timestamp_us)
    out += b"\x00" if record.key is None else b"\x02" + _bytes(record.key)
    if record.headers:
        out += _long(len(record.headers))
        for k, v in record.headers:
            out += _bytes(k.encode()) + _bytes(bytes(v))
    out.append(0)
    payload, readings = record.value, 0
    if payload[:10] == ts.header:
        out += b"\x02"
        out += payload[10:]
        out += b"\x00"
        if count and record.topic == TELEMETRY:
            reader = _parsed_event(record.topic)
            event = cast(dict[str, Any], schemaless_reader(BytesIO(payload[10:]), reader, None))
            readings = count_readings(event)
        return Encoded(bytes(out), readings)
    try:
        event = (codec or default_codec()).decode(record.topic, payload, schema_lookup)
        body = bytearray()
        _event_writer(record.topic)(body, event)
    except (DecodeError, SchemaError):
        out += b"\x00\x02" + _bytes(payload)
        return Encoded(bytes(out), 0)
    out += b"\x02" + bytes(body) + b"\x00"
    return Encoded(bytes(out), count_readings(event) if record.topic == TELEMETRY else 0)


# --- reading ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchivedRecord:
    """One record read back from an archive file; ``value`` is the event resolved to
    the current schema, or None with the undecodable bytes in ``raw``."""

    topic: str
    partition: int
    offset: int
    timestamp_us: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    value: dict[str, Any] | None
    raw: bytes | None
    #: the event's datum in the current schema as the file holds it (telemetry read by
    #: ``fastread``): the log payload after its header, for a content id
    datum: bytes | None = None

    def to_record(self, codec: AvroCodec | None = None) -> Record:
        """The log record again (the event re-encoded with the current schema)."""
        if self.value is not None:
            payload = (codec or default_codec()).encode(self.topic, self.value)
        else:
            payload = self.raw or b""
        return Record(
            self.topic, self.partition, self.offset, self.timestamp_us, self.key, payload,
            self.headers,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What an archive file's header says."""

    topic: str
    partition: int
    codec: str
    event_fingerprint: str


def read_archive(
    fileobj: IO[bytes], codec: AvroCodec | None = None
) -> tuple[FileInfo, Iterator[ArchivedRecord]]:
    """Open an archive file: its header, and an iterator over its records.

    Not an Avro container, no millrace metadata, an unknown topic, an event record that
    is not the topic's, or a corrupt block raise :class:`ArchiveFormatError` (the
    iterator raises it for a block it cannot read).
    """
    try:
        reader = fastavro.reader(fileobj)
    except Exception as exc:  # fastavro raises ValueError, EOFError, ... on bad headers
        raise ArchiveFormatError(f"not an Avro container file: {exc!r}") from exc
    meta = reader.metadata
    if meta.get("millrace.format") != str(FORMAT_VERSION):
        raise ArchiveFormatError("not a millrace archive (no millrace.format = 1)")
    topic, part = meta.get("millrace.topic", ""), meta.get("millrace.partition", "")
    if not part.isdigit():
        raise ArchiveFormatError(f"bad millrace.partition {part!r}")
    current = topic_schema(topic)  # raises for an unknown topic
    try:
        writer = json.loads(meta["avro.schema"])
        event = next(f for f in writer["fields"] if f["name"] == "value")["type"][1]
    except (KeyError, StopIteration, IndexError, TypeError, ValueError) as exc:
        raise ArchiveFormatError("the file's schema is not an ArchivedRecord") from exc
    name = _full_name(event) if isinstance(event, dict) else ""
    if name != TOPIC_SCHEMAS[topic]:
        raise ArchiveFormatError(f"{topic}: the file's events are {name or '?'}, unknown")
    if fingerprint(event) != bytes.fromhex(current.fingerprint_hex):
        # an older (or newer) version of E: fastavro resolves it to the current one
        fileobj.seek(0)
        try:
            reader = fastavro.reader(fileobj, reader_schema=_parsed_archive(topic))
        except Exception as exc:
            raise ArchiveFormatError(f"{topic}: schema cannot be resolved: {exc!r}") from exc
    info = FileInfo(topic, int(part), meta.get("avro.codec", "null"), fingerprint(event).hex())
    if topic == TELEMETRY and info.event_fingerprint == current.fingerprint_hex:
        return info, _fast_records(fileobj, info, codec)
    return info, _records(reader, info, codec)


def _guarded(items: Iterable[Any]) -> Iterator[Any]:
    """``items``, fastavro's errors (a corrupt block) raised as ArchiveFormatError."""
    it = iter(items)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except Exception as exc:
            raise ArchiveFormatError(f"corrupt archive block: {exc!r}") from exc
        yield item


def _records(reader: Any, info: FileInfo, codec: AvroCodec | None) -> Iterator[ArchivedRecord]:
    for rec in _guarded(reader):
        yield _archived(info, rec, codec)


def _archived(info: FileInfo, rec: Mapping[str, Any], codec: AvroCodec | None) -> ArchivedRecord:
    value, raw = rec.get("value"), rec.get("raw")
    if value is None and raw is not None:
        try:  # maybe decodable now (a schema version added to the history since)
            value, raw = (codec or default_codec()).decode(info.topic, raw), None
        except DecodeError:
            pass
    return ArchivedRecord(
        info.topic, info.partition, rec["offset"], rec["timestamp_us"], rec.get("key"),
        tuple((h["key"], h["value"]) for h in rec.get("headers") or ()), value, raw,
    )  # fmt: skip


def _fast_records(
    fileobj: IO[bytes], info: FileInfo, codec: AvroCodec | None
) -> Iterator[ArchivedRecord]:
    """Telemetry in the current schema, a block at a time (``fastread``); a block that
    decoder does not take is decoded by fastavro."""
    fileobj.seek(0)
    memo: Memo = {}
    for block in _guarded(fastavro.block_reader(fileobj)):
        try:
            decoded = decode_block(block.bytes_.getvalue(), block.num_records, memo)
        except NotCanonicalError:
            yield from _records(block, info, codec)
            continue
        for offset, ts, key, headers, value, raw, datum in decoded:
            if value is None:
                rec: dict[str, Any] = {"offset": offset, "timestamp_us": ts, "key": key}
                rec["raw"], rec["headers"] = raw, [{"key": k, "value": v} for k, v in headers]
                yield _archived(info, rec, codec)
                continue
            yield ArchivedRecord(
                info.topic, info.partition, offset, ts, key, headers, value, None, datum
            )
