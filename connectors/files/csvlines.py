"""CSV bytes → physical lines: the encoding (a UTF-8 BOM dropped; UTF-16/32 decoded
whole and re-encoded as UTF-8, so that ``\\n`` is the byte 0x0A), the lines handed to
``csv.reader`` with the raw bytes of the record being read, and the lines that cannot
be decoded (:class:`BadLine`, with their exact bytes)."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from millrace.pipeline.errors import MillraceError


class FileFormatError(MillraceError, ValueError):
    """The file as a whole cannot be read with the configuration (e.g. a missing column)."""

    def __init__(self, line: int, raw: bytes, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.raw = raw
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BadLine:
    line: int
    raw: bytes  # the record's bytes, line ends removed
    reason: str
    end: int
    next_line: int


def prepare(data: bytes, encoding: str) -> tuple[bytes, str]:
    """The bytes to split into lines and the codec to decode each line with."""
    name = codecs.lookup(encoding).name
    if name in ("utf-8", "utf-8-sig"):
        return (data[3:] if data.startswith(codecs.BOM_UTF8) else data), "utf-8"
    if "\n,a".encode(encoding) == b"\n,a":
        return data, encoding
    try:  # UTF-16/32: decoded whole; lines are then UTF-8
        return data.decode(encoding).encode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        raise FileFormatError(1, data[:256], f"not {encoding}: {exc.reason}") from exc


class Lines:
    """Decoded physical lines for csv.reader, remembering the raw lines of the record
    being read and the lines that could not be decoded."""

    def __init__(self, data: bytes, encoding: str) -> None:
        self.data = data
        self.encoding = encoding
        self.pos = 0
        self.line_no = 0  # lines consumed so far
        self.record: list[bytes] = []
        self.record_line = 1
        self.bad: list[BadLine] = []

    def __iter__(self) -> Lines:
        return self

    def skip(self, n: int) -> None:
        for _ in range(n):
            if self.pos >= len(self.data):
                return
            self._next_raw()

    def _next_raw(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        nxt = len(self.data) if end < 0 else end + 1
        raw = self.data[self.pos : nxt]
        self.pos = nxt
        self.line_no += 1
        return raw

    def __next__(self) -> str:
        while self.pos < len(self.data):
            raw = self._next_raw()
            try:
                text = raw.decode(self.encoding)
            except UnicodeDecodeError as exc:
                self.bad.append(
                    BadLine(
                        self.line_no,
                        raw.rstrip(b"\r\n"),
                        f"not {self.encoding}: {exc.reason} at byte {exc.start}",
                        self.pos,
                        self.line_no + 1,
                    )
                )
                continue
            if not self.record:
                self.record_line = self.line_no
            self.record.append(raw)
            return text
        raise StopIteration

    def take_record(self) -> bytes:
        raw = b"".join(self.record).rstrip(b"\r\n")
        self.record = []
        return raw
