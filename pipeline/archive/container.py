"""A deterministic Avro Object Container File writer over ready datum bytes.

fastavro's writer takes Python objects and draws a random sync marker; the archiver
has datum bytes already (the fast path copies payloads) and a rerun must write the same
bytes. So the container is written here: header (magic, metadata in a fixed order, a
sync marker derived from the file's identity), then blocks of ``count, size, data,
sync``, each compressed with the file's codec. Readers are any Avro implementation.
"""

from __future__ import annotations

import hashlib
import importlib
import zlib
from functools import cache
from typing import IO, Any

from millrace.pipeline.archive.errors import ArchiveError
from millrace.pipeline.archive.format import CODECS, FORMAT_VERSION, TopicSchema

MAGIC = b"Obj\x01"
BLOCK_BYTES = 4 << 20  # larger blocks compress better; readers hold one at a time
ZSTD_LEVEL = 6


def sync_marker(topic: str, partition: int, first_offset: int) -> bytes:
    """The file's 16-byte sync marker: the same file identity, the same marker."""
    return hashlib.sha256(f"{topic}\0{partition}\0{first_offset}".encode()).digest()[:16]


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


@cache
def _zstd() -> Any:
    try:  # Python 3.14 ships it; before, the backport (which fastavro reads with too)
        return importlib.import_module("compression.zstd")
    except ImportError:
        from backports import zstd

        return zstd


def compress(codec: str, data: bytes) -> bytes:
    if codec == "zstandard":
        return bytes(_zstd().compress(data, level=ZSTD_LEVEL))
    if codec == "deflate":
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush()
    raise ArchiveError(f"unknown codec {codec!r} (one of {', '.join(CODECS)})")


class ContainerWriter:
    """Writes one archive file to ``out``: :meth:`add` datum bytes, then :meth:`close`."""

    def __init__(
        self,
        out: IO[bytes],
        schema: TopicSchema,
        partition: int,
        first_offset: int,
        codec: str = "zstandard",
        block_bytes: int = BLOCK_BYTES,
    ) -> None:
        if codec not in CODECS:
            raise ArchiveError(f"unknown codec {codec!r} (one of {', '.join(CODECS)})")
        self.out, self.codec, self.block_bytes = out, codec, block_bytes
        self.sync = sync_marker(schema.topic, partition, first_offset)
        meta = [
            ("avro.schema", schema.json.encode()),
            ("avro.codec", codec.encode()),
            ("millrace.format", str(FORMAT_VERSION).encode()),
            ("millrace.topic", schema.topic.encode()),
            ("millrace.partition", str(partition).encode()),
        ]
        head = bytearray(MAGIC) + _long(len(meta))
        for key, value in meta:
            head += _bytes(key.encode()) + _bytes(value)
        head += b"\x00" + self.sync
        out.write(head)
        self.bytes = len(head)
        self._block = bytearray()
        self._count = 0

    def add(self, datum: bytes) -> None:
        self._block += datum
        self._count += 1
        if len(self._block) >= self.block_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._count:
            return
        data = compress(self.codec, bytes(self._block))
        chunk = _long(self._count) + _long(len(data)) + data + self.sync
        self.out.write(chunk)
        self.bytes += len(chunk)
        self._block.clear()
        self._count = 0

    def close(self) -> None:
        """Write the last block; ``out`` stays open (the caller owns it)."""
        self._flush()
        self.out.flush()
