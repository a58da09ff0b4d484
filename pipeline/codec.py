"""Avro encoding of events, framed for the log.

Framings, told apart by the first byte: Avro single-object encoding (no registry):
``C3 01`` + 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
Canonical Form + payload; Confluent wire format (registry): ``00`` + 4-byte big-endian
schema id + payload. Encoding validates: a bad event raises :class:`SchemaError` naming the
field (``TelemetryBatch.samples[0].values['t1']: expected ...``). Decoding resolves the
writer schema (current, or one in ``schemas/history``) to the current one; undecodable
bytes raise :class:`DecodeError`, never another type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any, cast

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from millrace.pipeline.avro_writer import InvalidDatumError, Writer, compile_writer
from millrace.pipeline.errors import DecodeError, SchemaError
from millrace.pipeline.topics import TOPIC_SCHEMAS
from millrace.schemas import HISTORY_DIR, SCHEMA_DIR

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
SchemaLookup = Callable[[int], Mapping[str, Any] | str]
"""Schema registry lookup: schema id -> writer schema (a dict or its JSON text)."""

_Schema = dict[str, Any]
_Writer = Writer


def fingerprint(schema: Mapping[str, Any] | str) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of the schema's canonical form."""
    # fastavro's hex is already in little-endian byte order, as in the spec and Java.
    canonical = to_parsing_canonical_form(cast(Any, schema))
    return bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO"))


@dataclass(frozen=True, slots=True)
class _Topic:
    record: str  # full name
    schema: _Schema  # current, parsed
    header: bytes  # single-object header of the current schema
    write: _Writer
    writers: dict[bytes, _Schema | None]  # fingerprint -> writer schema (None: current)


class AvroCodec:
    """Encodes and decodes the events of every topic; thread-safe, no I/O after load."""

    def __init__(
        self,
        current: Iterable[Mapping[str, Any]],
        history: Iterable[Mapping[str, Any]] = (),
        topics: Mapping[str, str] = TOPIC_SCHEMAS,
    ) -> None:
        schemas = {_full_name(s): s for s in current}
        self._owner: dict[bytes, str] = {}  # every known fingerprint -> record name
        self._topics: dict[str, _Topic] = {}
        self._registry: dict[int, tuple[str, _Schema | None]] = {}
        for topic, record in topics.items():
            if record not in schemas:
                raise SchemaError(f"topic {topic!r}: no schema for record {record}")
            parsed, fp = _parse(schemas[record]), fingerprint(schemas[record])
            header = SINGLE_OBJECT_MAGIC + fp
            self._topics[topic] = _Topic(
                record, parsed, header, compile_writer(parsed, {}), {fp: None}
            )
            self._owner[fp] = record
        for old in history:
            record, fp = _full_name(old), fingerprint(old)
            self._owner.setdefault(fp, record)
            for t in self._topics.values():
                if t.record == record and fp not in t.writers:
                    t.writers[fp] = _parse(old)

    @classmethod
    def load(cls, schema_dir: Path = SCHEMA_DIR, history_dir: Path = HISTORY_DIR) -> AvroCodec:
        """Read every ``*.avsc`` in ``schema_dir`` and ``history_dir/<Record>.v<N>.avsc``."""
        history = []
        for path in sorted(history_dir.glob("*.avsc")):
            history.append(schema := _read(path))
            if not re.fullmatch(rf"{schema['name'].rsplit('.', 1)[-1]}\.v\d+\.avsc", path.name):
                raise SchemaError(f"{path}: name it {schema['name']}.v<N>.avsc")
        return cls([_read(p) for p in sorted(schema_dir.glob("*.avsc"))], history)

    def encode(self, topic: str, event: Mapping[str, Any]) -> bytes:
        """Validate and encode one event in single-object encoding."""
        t = self._topic(topic, SchemaError)
        return _encode(t, topic, event, t.header)

    def encode_many(self, topic: str, events: Iterable[Mapping[str, Any]]) -> list[bytes]:
        t = self._topic(topic, SchemaError)
        return [_encode(t, topic, event, t.header) for event in events]

    def encode_confluent(self, topic: str, event: Mapping[str, Any], schema_id: int) -> bytes:
        """Encode in the Confluent wire format; ``schema_id`` must name the current schema."""
        if not 0 <= schema_id < 2**32:
            raise SchemaError(f"schema id {schema_id} does not fit in 4 bytes")
        t = self._topic(topic, SchemaError)
        return _encode(t, topic, event, CONFLUENT_MAGIC + schema_id.to_bytes(4, "big"))

    def decode(
        self, topic: str, data: bytes, schema_lookup: SchemaLookup | None = None
    ) -> dict[str, Any]:
        """Decode either framing into a dict of the topic's current schema.

        ``schema_lookup`` serves the Confluent framing; its answers are cached by id.
        """
        t = self._topic(topic, DecodeError)
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            fp = bytes(data[2:10])
            if fp not in t.writers:
                hint = f"a {self._owner[fp]}" if fp in self._owner else "no known schema"
                raise DecodeError(f"{topic}: unknown schema fingerprint {fp.hex()} ({hint})")
            return _decode(topic, data, 10, t.schema, t.writers[fp])
        if data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
            if schema_lookup is None:
                raise DecodeError(f"{topic}: Confluent framing, but no schema_lookup given")
            schema_id = int.from_bytes(data[1:5], "big")
            writer = self._registry_writer(t, topic, schema_id, schema_lookup)
            return _decode(topic, data, 5, t.schema, writer)
        raise DecodeError(f"{topic}: unknown or truncated header {bytes(data[:10]).hex()!r}")

    def decode_many(
        self, topic: str, items: Iterable[bytes], schema_lookup: SchemaLookup | None = None
    ) -> list[dict[str, Any]]:
        """Decode each item; the first undecodable one raises :class:`DecodeError`."""
        return [self.decode(topic, data, schema_lookup) for data in items]

    def _topic(self, topic: str, error: type[SchemaError]) -> _Topic:
        if topic not in self._topics:
            raise error(f"unknown topic {topic!r}")
        return self._topics[topic]

    def _registry_writer(
        self, t: _Topic, topic: str, schema_id: int, lookup: SchemaLookup
    ) -> _Schema | None:
        if schema_id not in self._registry:
            try:
                found = lookup(schema_id)
                raw = json.loads(found) if isinstance(found, str) else dict(found)
                fp = fingerprint(raw)
                writer = t.writers[fp] if fp in t.writers else _parse(raw)
                self._registry[schema_id] = (_full_name(raw), writer)
            except Exception as exc:
                raise DecodeError(f"{topic}: schema id {schema_id}: {exc!r}") from exc
        record, writer = self._registry[schema_id]
        if record != t.record:
            raise DecodeError(f"{topic}: schema id {schema_id} is a {record}, not {t.record}")
        return writer


@cache
def default_codec() -> AvroCodec:
    """The codec of the schemas shipped in ``schemas/``, loaded once."""
    return AvroCodec.load()


def _read(path: Path) -> _Schema:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
        _parse(schema)
    except Exception as exc:
        raise SchemaError(f"{path}: invalid Avro schema: {exc}") from exc
    return cast(_Schema, schema)


def _parse(schema: Mapping[str, Any]) -> _Schema:
    return cast(_Schema, parse_schema(dict(schema)))


def _full_name(schema: Mapping[str, Any]) -> str:
    name, namespace = str(schema["name"]), schema.get("namespace")
    return f"{namespace}.{name}" if namespace and "." not in name else name


def _encode(t: _Topic, topic: str, event: Mapping[str, Any], header: bytes) -> bytes:
    out = bytearray(header)
    try:
        t.write(out, event)
    except InvalidDatumError as exc:
        raise SchemaError(f"{topic}: {t.record.rsplit('.', 1)[-1]}{exc.path}: {exc}") from None
    except Exception as exc:  # e.g. an int too large even for a double
        raise SchemaError(f"{topic}: {t.record}: {exc!r}") from exc
    return bytes(out)


def _decode(
    topic: str, data: bytes, start: int, reader: _Schema, writer: _Schema | None
) -> dict[str, Any]:
    buf = BytesIO(data)
    buf.seek(start)
    try:  # fastavro raises EOFError, ValueError, IndexError, UnicodeDecodeError, ...
        event = schemaless_reader(buf, writer or reader, reader if writer else None)
    except Exception as exc:
        raise DecodeError(f"{topic}: corrupt or truncated payload: {exc!r}") from exc
    if buf.tell() != len(data):
        raise DecodeError(f"{topic}: {len(data) - buf.tell()} bytes left after the event")
    return cast(dict[str, Any], event)
