"""The millrace archive format, version 1 (README "Archive"; /ARCHIVE_SPEC in the issue).

One Avro Object Container File per (topic, partition, window piece) at
``<topic>/<yyyy>/<mm>/<dd>/<hh>/<partition>-<first offset, 20 digits>.avro``, beside
it a ``.manifest.json`` written after it (the commit point). Each record of a file is an
``io.millrace.archive.ArchivedRecord``: the original offset, log timestamp, key and
headers, and the event itself nested in full (``value``) — or, when it could not be
decoded, its bytes (``raw``). The event schema embedded is the one current when the file
was written; readers resolve it to theirs.

This module holds the schema per topic, the paths, the manifest, the datum encoding
(with the fast path that copies a current-schema payload without decoding it) and the
reader; :mod:`millrace.pipeline.archive.container` writes the container bytes.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import IO, Any, cast

import fastavro
from fastavro import parse_schema, schemaless_reader

from millrace.pipeline.archive.errors import ArchiveFormatError
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
from millrace.pipeline.topics import TELEMETRY, TOPIC_SCHEMAS
from millrace.schemas import SCHEMA_DIR

FORMAT_VERSION = 1
CODECS = ("zstandard", "deflate")
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"s": 1_000_000, "m": 60_000_000, "h": HOUR_US, "d": DAY_US}

# --- windows and paths ---------------------------------------------------------------


def parse_window(text: str | int) -> int:
    """``"1h"``, ``"15m"``, ``"1d"`` (or µs) -> µs; the window must divide 24 h so that
    windows line up with days (ValueError otherwise)."""
    if isinstance(text, int) and not isinstance(text, bool):
        us = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", str(text))
        if not m:
            raise ValueError(f"{text!r} is not a duration like 5m, 1h or 1d")
        us = int(m.group(1)) * _UNITS[m.group(2)]
    if us <= 0 or DAY_US % us or us < 60_000_000:
        raise ValueError(f"{text!r}: a window is at least 1m and divides 24h (5m, 15m, 1h, ...)")
    return us


def window_start(timestamp_us: int, window_us: int) -> int:
    return timestamp_us // window_us * window_us


def _utc(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def hour_dir(topic: str, timestamp_us: int) -> str:
    """``<topic>/<yyyy>/<mm>/<dd>/<hh>`` of the hour holding ``timestamp_us``."""
    return f"{topic}/{_utc(timestamp_us):%Y/%m/%d/%H}"


def data_path(topic: str, partition: int, window_start_us: int, first_offset: int) -> str:
    """Path of a data file, relative to the archive root."""
    return f"{hour_dir(topic, window_start_us)}/{partition}-{first_offset:020d}.avro"


def manifest_path(path: str) -> str:
    """The manifest beside a data file."""
    return path.removesuffix(".avro") + ".manifest.json"


def hour_dirs(topic: str, start_us: int, end_us: int, before_us: int = HOUR_US) -> list[str]:
    """Hour directories that may hold records of ``[start_us, end_us)`` (from one
    ``before_us`` earlier: a file's records may precede its window, clock skew)."""
    first = window_start(start_us - before_us, HOUR_US)
    return [hour_dir(topic, h) for h in range(max(first, 0), end_us, HOUR_US)]


# --- manifests --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a restore needs to know about a data file without reading it."""

    format: int
    topic: str
    partition: int
    path: str  # relative to the archive root
    first_offset: int
    last_offset: int
    records: int
    readings: int  # telemetry: values in all samples; else 0
    min_timestamp_us: int
    max_timestamp_us: int
    window_start_us: int
    window_end_us: int
    bytes: int
    sha256: str
    codec: str
    schema_fingerprint: str
    created_us: int

    @property
    def end_offset(self) -> int:
        """The offset after this file's last record (the archiver's next position)."""
        return self.last_offset + 1

    def to_json(self) -> builtins.bytes:
        return json.dumps(asdict(self), indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: builtins.bytes | str) -> Manifest:
        try:
            raw = json.loads(data)
            values = {f.name: raw[f.name] for f in fields(cls)}
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveFormatError(f"not a millrace manifest: {exc!r}") from exc
        for f in fields(cls):
            want = int if f.type == "int" else str
            if type(values[f.name]) is not want:
                raise ArchiveFormatError(f"manifest field {f.name}: expected {f.type}")
        if values["format"] != FORMAT_VERSION:
            raise ArchiveFormatError(f"manifest format {values['format']} is not supported")
        return cls(**values)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
    """Values in all samples of a TelemetryBatch (rows or columns alike)."""
    total = 0
    for sample in event.get("samples") or ():
        values = sample.get("values") if isinstance(sample, Mapping) else None
        total += len(values) if values is not None else 0
    return total


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
    return info, _records(reader, info, codec)


def _records(reader: Any, info: FileInfo, codec: AvroCodec | None) -> Iterator[ArchivedRecord]:
    it = iter(reader)
    while True:
        try:
            rec = next(it)
        except StopIteration:
            return
        except Exception as exc:
            raise ArchiveFormatError(f"corrupt archive block: {exc!r}") from exc
        value, raw = rec.get("value"), rec.get("raw")
        if value is None and raw is not None:
            try:  # maybe decodable now (a schema version added to the history since)
                value, raw = (codec or default_codec()).decode(info.topic, raw), None
            except DecodeError:
                pass
        yield ArchivedRecord(
            info.topic, info.partition, rec["offset"], rec["timestamp_us"], rec.get("key"),
            tuple((h["key"], h["value"]) for h in rec.get("headers") or ()), value, raw,
        )  # fmt: skip
