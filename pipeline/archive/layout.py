"""Where the archive puts things and what it writes beside them (format version 1):
the windows (a duration dividing 24 h), the path of a data file and of its manifest,
the hour directories a time range may touch, and the :class:`Manifest` itself. The
records inside a file are :mod:`millrace.pipeline.archive.format`.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta

from millrace.pipeline.archive.errors import ArchiveFormatError

FORMAT_VERSION = 1
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
