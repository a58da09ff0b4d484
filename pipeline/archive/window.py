"""One archive window being built: records added in offset order are encoded and
compressed as they come (memory holds the compressed file, not the records), and
:meth:`WindowBuilder.finish` returns the data bytes and their manifest."""

from __future__ import annotations

import io

from millrace.pipeline.archive.container import ContainerWriter
from millrace.pipeline.archive.count import telemetry_readings
from millrace.pipeline.archive.errors import ArchiveError
from millrace.pipeline.archive.format import (
    FORMAT_VERSION,
    Manifest,
    data_path,
    encode_record,
    sha256_hex,
    topic_schema,
)
from millrace.pipeline.codec import AvroCodec, SchemaLookup
from millrace.pipeline.log.base import Record
from millrace.pipeline.topics import TELEMETRY


class WindowBuilder:
    """Builds the file of one (topic, partition) window starting at ``first``.

    The file's bytes depend only on the records added and the codec: a rerun from the
    same first offset over the same records writes the same bytes.
    """

    def __init__(
        self,
        first: Record,
        window_start_us: int,
        window_end_us: int,
        codec: str = "zstandard",
        *,
        avro: AvroCodec | None = None,
        schema_lookup: SchemaLookup | None = None,
    ) -> None:
        self.topic, self.partition = first.topic, first.partition
        self.first_offset = first.offset
        self.window_start_us, self.window_end_us = window_start_us, window_end_us
        self.codec = codec
        self.schema = topic_schema(first.topic)
        self.path = data_path(first.topic, first.partition, window_start_us, first.offset)
        self._avro, self._lookup = avro, schema_lookup
        self._fast = first.topic == TELEMETRY  # readings counted without decoding
        self._out = io.BytesIO()
        self._writer = ContainerWriter(self._out, self.schema, first.partition, first.offset, codec)
        self.records = self.readings = 0
        self.last_offset = first.offset - 1
        self.min_ts = self.max_ts = first.timestamp_us

    def add(self, record: Record) -> None:
        if (record.topic, record.partition) != (self.topic, self.partition):
            raise ArchiveError(f"{record.topic}/{record.partition} added to {self.path}")
        if record.offset <= self.last_offset:
            raise ArchiveError(f"{self.path}: offset {record.offset} after {self.last_offset}")
        readings = None
        if self._fast and record.value[:10] == self.schema.header:
            enc = encode_record(record, self._avro, self._lookup, count=False)
            readings = telemetry_readings(record.value[10:])
        if readings is None:
            enc = encode_record(record, self._avro, self._lookup)
            readings = enc.readings
        self._writer.add(enc.datum)
        self.records += 1
        self.readings += readings
        self.last_offset = record.offset
        self.min_ts = min(self.min_ts, record.timestamp_us)
        self.max_ts = max(self.max_ts, record.timestamp_us)

    @property
    def size(self) -> int:
        """Bytes written so far (compressed blocks; the open block not counted)."""
        return self._writer.bytes

    def finish(self, created_us: int = 0) -> tuple[bytes, Manifest]:
        """The file's bytes and manifest (at least one record must have been added)."""
        if not self.records:
            raise ArchiveError(f"{self.path}: an empty window is not written")
        self._writer.close()
        data = self._out.getvalue()
        manifest = Manifest(
            format=FORMAT_VERSION,
            topic=self.topic,
            partition=self.partition,
            path=self.path,
            first_offset=self.first_offset,
            last_offset=self.last_offset,
            records=self.records,
            readings=self.readings,
            min_timestamp_us=self.min_ts,
            max_timestamp_us=self.max_ts,
            window_start_us=self.window_start_us,
            window_end_us=self.window_end_us,
            bytes=len(data),
            sha256=sha256_hex(data),
            codec=self.codec,
            schema_fingerprint=self.schema.fingerprint_hex,
            created_us=created_us,
        )
        return data, manifest
