"""Record framing of the segment files.

Every record is one frame, little-endian::

     0  u32  length        bytes after this field (crc .. end of headers)
     4  u32  crc           zlib.crc32 of every byte after this field
     8  u8   magic         1; 2: the value bytes are one zstandard frame of the value
     9  i64  offset
    17  i64  timestamp_us
    25  i32  key length    -1 = null key
    29  i32  value length
    33  u16  header count
    35  key bytes, value bytes, then per header:
        u16 name length, u32 value length, name (UTF-8), value

The offset inside the frame lets a reader check that the sparse index and the file
agree, and lets recovery find where a torn tail starts.

Compression (``compression: zstd``, the default) is per record, so a read still starts
at any offset: a value of at least :data:`COMPRESS_MIN` bytes is stored as a zstandard
frame (level 1) when that is smaller, and the reader gives back the value as appended.
Small values stay plain: a zstandard context costs microseconds per call, more than a
few hundred bytes save (a telemetry batch of one row is ~500 bytes; of ten rows ~1.9
KB, which compresses about 3x: signal names repeat, values vary slowly). Frames of
magic 1 (and logs written before compression) read as before.
"""

from __future__ import annotations

import struct
import sys
import threading
import zlib
from collections.abc import Sequence

from millrace.pipeline.log.base import Record

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # the backport of the same module (a declared dependency)
    from backports import zstd

MAGIC = 1
MAGIC_ZSTD = 2
#: values shorter than this are stored plain (see the module doc)
COMPRESS_MIN = 1024
HEADER = struct.Struct("<IIBqqiiH")
BODY = struct.Struct("<BqqiiH")  # HEADER without length and crc
PREFIX = struct.Struct("<II")
HEADER_ITEM = struct.Struct("<HI")
LENGTH = struct.Struct("<I")

HEADER_SIZE = HEADER.size
MIN_LENGTH = HEADER_SIZE - 4
MAX_LENGTH = 2**31 - 1

# check_frame results besides a positive frame size
INCOMPLETE = 0
CORRUPT = -1

Headers = tuple[tuple[str, bytes], ...]


def encode(
    out: list[bytes],
    offset: int,
    timestamp_us: int,
    key: bytes | None,
    value: bytes,
    headers: Sequence[tuple[str, bytes]],
    compress: bool = False,
) -> int:
    """Append the frame of one record to ``out`` (as parts, to be joined once per
    batch) and return its size in bytes; with ``compress``, a large value is stored
    compressed when that is smaller."""
    magic = MAGIC
    if compress and len(value) >= COMPRESS_MIN:
        packed = _compressor().compress(value, mode=zstd.ZstdCompressor.FLUSH_FRAME)
        if len(packed) < len(value):
            value, magic = packed, MAGIC_ZSTD
    parts: list[bytes] = [
        BODY.pack(
            magic, offset, timestamp_us, -1 if key is None else len(key), len(value), len(headers)
        )
    ]
    if key:
        parts.append(key)
    parts.append(value)
    for name, hvalue in headers:
        raw = name.encode()
        parts.append(HEADER_ITEM.pack(len(raw), len(hvalue)))
        parts.append(raw)
        parts.append(hvalue)
    crc = 0
    size = 4
    for part in parts:
        crc = zlib.crc32(part, crc)
        size += len(part)
    if size > MAX_LENGTH:
        raise ValueError(f"record of {size} bytes is too large")
    out.append(PREFIX.pack(size, crc))
    out.extend(parts)
    return size + 4


_MAGICS = (MAGIC, MAGIC_ZSTD)
_local = threading.local()


def _compressor() -> zstd.ZstdCompressor:
    """This thread's compressor (made once: a context per call costs ~10 us)."""
    c: zstd.ZstdCompressor | None = getattr(_local, "compressor", None)
    if c is None:
        c = _local.compressor = zstd.ZstdCompressor(level=1)
    return c


def frame_size(buf: bytes, pos: int) -> int | None:
    """Size of the frame starting at ``pos`` according to its length field, or None
    when fewer than 4 bytes are left."""
    if len(buf) - pos < 4:
        return None
    return int(LENGTH.unpack_from(buf, pos)[0]) + 4


def check_frame(buf: bytes, view: memoryview, pos: int, expected_offset: int) -> int:
    """Validate the frame at ``pos``: its size when it is whole, carries
    ``expected_offset`` and its CRC matches; INCOMPLETE when ``buf`` ends inside it;
    CORRUPT otherwise."""
    avail = len(buf) - pos
    if avail < HEADER_SIZE:
        if avail >= 4 and LENGTH.unpack_from(buf, pos)[0] < MIN_LENGTH:
            return CORRUPT
        return INCOMPLETE
    length, crc, magic, offset, _ts, klen, vlen, hcount = HEADER.unpack_from(buf, pos)
    if length < MIN_LENGTH or length > MAX_LENGTH:
        return CORRUPT
    if avail < length + 4:
        return INCOMPLETE
    if zlib.crc32(view[pos + 8 : pos + 4 + length]) != crc:
        return CORRUPT
    if magic not in _MAGICS or offset != expected_offset or klen < -1 or vlen < 0:
        return CORRUPT
    if max(klen, 0) + vlen + 6 * hcount > length - MIN_LENGTH:
        return CORRUPT
    return int(length) + 4


def timestamp_at(buf: bytes, pos: int) -> int:
    """Timestamp of a frame already validated by :func:`check_frame`."""
    return int(HEADER.unpack_from(buf, pos)[4])


def decode(buf: bytes, pos: int, topic: str, partition: int) -> Record:
    """The record of a frame already validated by :func:`check_frame`."""
    length, _crc, magic, offset, ts, klen, vlen, hcount = HEADER.unpack_from(buf, pos)
    p = pos + HEADER_SIZE
    key: bytes | None = None
    if klen >= 0:
        key = buf[p : p + klen]
        p += klen
    value = buf[p : p + vlen]
    if magic == MAGIC_ZSTD:
        try:
            value = zstd.decompress(value)
        except zstd.ZstdError as exc:
            raise ValueError(f"value does not decompress: {exc}") from exc
    headers: Headers = ()
    if hcount:
        p += vlen
        end = pos + 4 + length
        items = []
        for _ in range(hcount):
            if p + HEADER_ITEM.size > end:
                raise ValueError("header runs past the frame")
            nlen, hlen = HEADER_ITEM.unpack_from(buf, p)
            p += HEADER_ITEM.size
            if p + nlen + hlen > end:
                raise ValueError("header runs past the frame")
            items.append((buf[p : p + nlen].decode(), buf[p + nlen : p + nlen + hlen]))
            p += nlen + hlen
        headers = tuple(items)
    return Record(topic, partition, offset, ts, key, value, headers)
