"""A fast decoder for blocks of archived TelemetryBatch records in the current schema.

fastavro decodes an archived record by walking the schema for every field of every
record (about 30 µs for a 25-signal batch), and it cannot tell where a record's event
datum starts and ends, so a restore re-encoded every id-less batch to hash its content
id. This decoder knows the one layout it reads, ``ArchivedRecord`` with the current
``TelemetryBatch`` embedded (``format.archive_schema``), and:

* reads the parts that repeat from batch to batch of one identity (``signals``,
  ``kinds``, ``counts``, ``rows``: the device's signal list) once per identity and
  file: when the bytes at that place equal the ones decoded before, the lists decoded
  then are reused (a copy each), since decoding is a function of the bytes read;
* reads ``doubles`` with one ``struct.unpack_from`` per array;
* hands out the event's datum bytes (``ArchivedRecord.datum``), which are what the
  log's payload held after its header (the archiver copies them): a content id hashes
  them without encoding the event again (``pipeline.batches``).

It takes canonical encodings only (arrays in one block, no over-long varints, union
branches in range, the block consumed exactly); anything else raises
:class:`NotCanonicalError`, and the reader decodes that block with fastavro instead,
which is the authority on what a block holds (and on the error a corrupt one gives).
A row-wise batch (``samples`` not empty: an older version resolved to the current
schema) goes to fastavro too. The test compares both decoders on generated batches.
"""

from __future__ import annotations

import struct
from typing import Any

from millrace.pipeline.archive.errors import ArchiveError

#: (the bytes of signals..rows, signals, kinds, counts, rows) per identity
Memo = dict[str, tuple[bytes, list[str], list[int], list[int], list[int]]]


class NotCanonicalError(ArchiveError, ValueError):
    """The block is not in the layout this decoder reads: decode it with fastavro (an
    internal signal, caught by the reader; never a failure of the file)."""


def _long(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n, shift = b & 0x7F, 7
    while True:
        pos += 1
        b = buf[pos]
        n |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0 or shift > 63:
                raise NotCanonicalError("over-long varint")
            return (n >> 1) ^ -(n & 1), pos + 1
        shift += 7


def _count(buf: bytes, pos: int, width: int) -> tuple[int, int]:
    """An array's item count (one block, or none): 0 or a positive count whose items
    fit in the bytes left at ``width`` bytes each at least."""
    c, pos = _long(buf, pos)
    if c == 0:
        return 0, pos
    if c < 0 or pos + c * width >= len(buf):
        raise NotCanonicalError("array block")
    return c, pos


def _end(buf: bytes, pos: int) -> int:
    if buf[pos] != 0:
        raise NotCanonicalError("array in several blocks")
    return pos + 1


def _str(buf: bytes, pos: int) -> tuple[str, int]:
    n, pos = _long(buf, pos)
    end = pos + n
    if n < 0 or end > len(buf):
        raise NotCanonicalError("string length")
    return buf[pos:end].decode(), end


def _bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _long(buf, pos)
    end = pos + n
    if n < 0 or end > len(buf):
        raise NotCanonicalError("bytes length")
    return buf[pos:end], end


def _longs(buf: bytes, pos: int) -> tuple[list[int], int]:
    c, pos = _count(buf, pos, 1)
    if not c:
        return [], pos
    out: list[int] = []
    append = out.append
    for _ in range(c):
        b = buf[pos]
        if b < 0x80:  # one byte (kinds, qualities): no call
            append((b >> 1) ^ -(b & 1))
            pos += 1
        else:
            v, pos = _long(buf, pos)
            append(v)
    return out, _end(buf, pos)


def _strs(buf: bytes, pos: int) -> tuple[list[str], int]:
    c, pos = _count(buf, pos, 1)
    if not c:
        return [], pos
    out: list[str] = []
    append = out.append
    size = len(buf)
    for _ in range(c):
        n = buf[pos]
        if n >= 0x80 or n & 1:  # a longer (or negative) length: the general path
            v, pos = _str(buf, pos)
            append(v)
            continue
        end = pos + 1 + (n >> 1)
        if end > size:
            raise NotCanonicalError("string length")
        append(buf[pos + 1 : end].decode())
        pos = end
    return out, _end(buf, pos)


def _doubles(buf: bytes, pos: int) -> tuple[list[float], int]:
    c, pos = _count(buf, pos, 8)
    if not c:
        return [], pos
    out = list(struct.unpack_from(f"<{c}d", buf, pos))
    return out, _end(buf, pos + 8 * c)


def _booleans(buf: bytes, pos: int) -> tuple[list[bool], int]:
    c, pos = _count(buf, pos, 1)
    if not c:
        return [], pos
    raw = buf[pos : pos + c]
    if raw.strip(b"\x00\x01"):
        raise NotCanonicalError("boolean byte")
    return [b == 1 for b in raw], _end(buf, pos + c)


def _optional_str(buf: bytes, pos: int) -> tuple[str | None, int]:
    branch = buf[pos]
    if branch == 0:
        return None, pos + 1
    if branch != 2:
        raise NotCanonicalError("union branch")
    return _str(buf, pos + 1)


def _optional_bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    branch = buf[pos]
    if branch == 0:
        return None, pos + 1
    if branch != 2:
        raise NotCanonicalError("union branch")
    return _bytes(buf, pos + 1)


def _columns(buf: bytes, pos: int, identity: str, memo: Memo) -> tuple[tuple[Any, ...], int]:
    """signals, kinds, counts, rows: the identity's lists again when the bytes are."""
    seen = memo.get(identity)
    if seen is not None and buf.startswith(seen[0], pos):
        _, signals, kinds, counts, rows = seen
        return (signals.copy(), kinds.copy(), counts.copy(), rows.copy()), pos + len(seen[0])
    start = pos
    signals, pos = _strs(buf, pos)
    kinds, pos = _longs(buf, pos)
    counts, pos = _longs(buf, pos)
    rows, pos = _longs(buf, pos)
    memo[identity] = (buf[start:pos], signals.copy(), kinds.copy(), counts.copy(), rows.copy())
    return (signals, kinds, counts, rows), pos


def _event(buf: bytes, pos: int, memo: Memo) -> tuple[dict[str, Any], int]:
    identity, pos = _str(buf, pos)
    source, pos = _str(buf, pos)
    received, pos = _long(buf, pos)
    if buf[pos] != 0:
        raise NotCanonicalError("row-wise samples")  # fastavro resolves those
    ip, pos = _optional_str(buf, pos + 1)
    batch_id, pos = _optional_str(buf, pos)
    ts_us, pos = _longs(buf, pos)
    qualities, pos = _longs(buf, pos)
    (signals, kinds, counts, rows), pos = _columns(buf, pos, identity, memo)
    doubles, pos = _doubles(buf, pos)
    booleans, pos = _booleans(buf, pos)
    strings, pos = _strs(buf, pos)
    longs, pos = _longs(buf, pos)
    return {
        "identity": identity,
        "source": source,
        "received_us": received,
        "samples": [],
        "ip": ip,
        "batch_id": batch_id,
        "ts_us": ts_us,
        "qualities": qualities,
        "signals": signals,
        "kinds": kinds,
        "counts": counts,
        "rows": rows,
        "doubles": doubles,
        "booleans": booleans,
        "strings": strings,
        "longs": longs,
    }, pos


#: one record: offset, timestamp_us, key, headers, value, raw, the value's datum bytes
Decoded = tuple[
    int,
    int,
    bytes | None,
    tuple[tuple[str, bytes], ...],
    dict[str, Any] | None,
    bytes | None,
    bytes | None,
]


def decode_block(buf: bytes, count: int, memo: Memo) -> list[Decoded]:
    """The ``count`` records of one decompressed block (NotCanonicalError: use fastavro).
    ``memo``: one per file, shared by its blocks."""
    out: list[Decoded] = []
    pos = 0
    try:
        for _ in range(count):
            offset, pos = _long(buf, pos)
            ts, pos = _long(buf, pos)
            key, pos = _optional_bytes(buf, pos)
            headers: tuple[tuple[str, bytes], ...] = ()
            n, pos = _count(buf, pos, 2)
            if n:
                items = []
                for _ in range(n):
                    k, pos = _str(buf, pos)
                    v, pos = _bytes(buf, pos)
                    items.append((k, v))
                headers, pos = tuple(items), _end(buf, pos)
            value = datum = None
            branch = buf[pos]
            pos += 1
            if branch == 2:
                start = pos
                value, pos = _event(buf, pos, memo)
                datum = buf[start:pos]
            elif branch != 0:
                raise NotCanonicalError("union branch")
            raw, pos = _optional_bytes(buf, pos)
            out.append((offset, ts, key, headers, value, raw, datum))
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise NotCanonicalError(f"{type(exc).__name__}: {exc}") from exc
    if pos != len(buf):
        raise NotCanonicalError("bytes left after the block's records")
    return out
