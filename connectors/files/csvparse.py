"""CSV bytes → timestamped readings, without I/O (so that it can be tested on its own).

:class:`CsvFile` takes a whole file's bytes and the connection's :class:`CsvOptions`.
:meth:`CsvFile.layout` reads the header and resolves every configured column (a
missing timestamp, identity or value column makes the whole file unusable:
:class:`FileFormatError`); :meth:`CsvFile.rows` then yields one :class:`Row` per data
record or one :class:`BadLine` per record that cannot be used, so that one bad line
never costs the rest of the file. Each item carries the byte offset after it, which is
where reading resumes after a restart.

A line is all or nothing: when any of its cells cannot be read (wrong column count, a
number or time that does not parse), none of its values are emitted and the line goes
to the dead letters whole, so that fixing and replaying it cannot duplicate values.
An empty cell is no reading (not an error); blank lines are skipped.

Lines are split on ``\\n`` in the raw bytes, so that a line that is not valid in the
file's encoding is reported with its exact bytes. Encodings in which ``\\n`` is not
the byte 0x0A (UTF-16/32) are decoded whole and re-encoded as UTF-8 first.

The parts: ``csvlines`` (encoding, physical lines, undecodable lines), ``csvvalues``
(cells → values), ``csvtime`` (timestamps); here the header, the column layout and the
rows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from millrace.connectors._common.models import EndpointBase
from millrace.pipeline.timestamps import ts_problem

from .config import CsvOptions
from .csvlines import BadLine, FileFormatError, Lines, prepare
from .csvtime import TimestampParser, check_timestamp_format
from .csvvalues import parse_number, parse_value

__all__ = [
    "BadLine",
    "CsvFile",
    "FileFormatError",
    "Layout",
    "Reading",
    "Row",
    "TimestampParser",
    "check_timestamp_format",
    "parse_number",
    "parse_value",
]


@dataclass(frozen=True, slots=True)
class Reading:
    identity: str
    signal: str
    value: Any
    endpoint: EndpointBase | None  # None: a value column read without endpoints


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # 1-based number of the record's first line in the file
    ts_us: int
    readings: list[Reading]
    end: int  # byte offset after the record
    next_line: int


@dataclass
class Layout:
    """The file's columns resolved against the configuration."""

    names: list[str] | None  # header names; None without a header
    width: int | None
    ts_idx: list[int]
    identity_idx: int | None
    # (column index, column name, signal, data type, endpoint) read from every row
    plan: list[tuple[int, str, str, str, EndpointBase | None]] = field(default_factory=list)
    # identity -> the same, for endpoints when the identity is a column
    by_identity: dict[str, list[tuple[int, str, str, str, EndpointBase | None]]] = field(
        default_factory=dict
    )
    missing: list[tuple[EndpointBase, str]] = field(default_factory=list)
    found: list[EndpointBase] = field(default_factory=list)


def _column_name(ref: str | int) -> str:
    return f"column {ref}" if isinstance(ref, int) else repr(ref)


class CsvFile:
    """One file's bytes read with ``options``; ``endpoints`` select and type the values
    (none: every value column, typed ``options.value_type``)."""

    def __init__(
        self, data: bytes, options: CsvOptions, endpoints: Sequence[EndpointBase] = ()
    ) -> None:
        self.options = options
        self.endpoints = list(endpoints)
        self.data, self.encoding = prepare(data, options.encoding)
        self.timestamps = TimestampParser(
            options.timestamp_format, options.timezone, options.decimal_comma
        )
        self._lines = Lines(self.data, self.encoding)
        self._layout: Layout | None = None
        self._header_line = 0
        self._header_raw = b""

    def _reader(self) -> Iterator[list[str]]:
        o = self.options
        return csv.reader(self._lines, delimiter=o.separator, quotechar=o.quotechar, strict=True)

    def layout(self) -> Layout:
        """Read the header and resolve the columns; FileFormatError if the file does not
        have a configured timestamp, identity or value column."""
        if self._layout is not None:
            return self._layout
        o = self.options
        lines = self._lines
        lines.skip(o.skip_rows)
        names: list[str] | None = None
        if o.header is not False:
            lines.skip(0 if o.header is True else int(o.header))
            header: list[str] | None = None
            reader = self._reader()
            while header is None:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    raise FileFormatError(
                        lines.record_line, lines.take_record(), f"header: {exc}"
                    ) from exc
                if lines.bad:
                    bad = lines.bad[0]
                    raise FileFormatError(bad.line, bad.raw, f"header: {bad.reason}")
                if any(c.strip() for c in row):
                    header = [c.strip() for c in row]
                else:
                    lines.take_record()
            if header is None:
                self._layout = Layout(None, 0, [], None)  # empty file: no rows
                return self._layout
            self._header_line = lines.record_line
            self._header_raw = lines.take_record()
            names = header
            lines.skip(o.skip_after_header)
        self._layout = self._resolve(names)
        return self._layout

    def _index(self, ref: str | int, names: list[str] | None, what: str) -> int:
        if isinstance(ref, int):
            if names is not None and ref >= len(names):
                raise self._missing(f"{what} column {ref} is beyond the {len(names)} columns")
            return ref
        if names is None:
            raise FileFormatError(0, b"", f"{what} column {ref!r} needs a header row")
        try:
            return names.index(ref)
        except ValueError:
            raise self._missing(f"{what} column {ref!r} is not in the header") from None

    def _missing(self, reason: str) -> FileFormatError:
        return FileFormatError(self._header_line, self._header_raw, reason)

    def _resolve(self, names: list[str] | None) -> Layout:
        o = self.options
        ts_idx = [self._index(r, names, "timestamp") for r in o.timestamp]
        id_idx = (
            None if o.identity_column is None else self._index(o.identity_column, names, "identity")
        )
        lay = Layout(names, len(names) if names is not None else None, ts_idx, id_idx)
        used = {*ts_idx, id_idx}

        def name_of(i: int) -> str:
            return names[i] if names is not None else f"col{i}"

        if self.endpoints:
            for ep in self.endpoints:
                ref = ep.column_ref() if hasattr(ep, "column_ref") else ep.signal
                if isinstance(ref, int):
                    ok = names is None or ref < len(names)
                    idx = ref
                else:
                    ok = names is not None and ref in names
                    idx = names.index(ref) if ok and names is not None else -1
                if not ok:
                    lay.missing.append((ep, f"column {_column_name(ref)} is not in the file"))
                    continue
                lay.found.append(ep)
                item = (idx, name_of(idx), ep.signal, ep.data_type, ep)
                if id_idx is None:
                    lay.plan.append(item)
                else:
                    lay.by_identity.setdefault(ep.identity, []).append(item)
            return lay
        if o.value_columns is not None:
            cols = [self._index(r, names, "value") for r in o.value_columns]
        elif names is not None:
            cols = [i for i, n in enumerate(names) if i not in used and n]
        else:
            cols = []  # every other column of the first data row, see rows()
        lay.plan = [(i, name_of(i), name_of(i), o.value_type, None) for i in cols]
        return lay

    def rows(self, start: int = 0, start_line: int = 0) -> Iterator[Row | BadLine]:
        """The data records; from byte offset ``start`` (on line ``start_line``) when
        resuming a file read in part before."""
        lay = self.layout()
        lines = self._lines
        if start > lines.pos:
            lines.pos, lines.line_no = start, start_line - 1
        o = self.options
        identity = o.identity
        width = lay.width
        refs = [*lay.ts_idx] + ([lay.identity_idx] if lay.identity_idx is not None else [])
        refs += [p[0] for p in lay.plan]
        needed = max(refs) + 1 if refs else 0
        reader = self._reader()
        while True:
            try:
                row = next(reader)
                error = None
            except StopIteration:
                row, error = None, None
            except csv.Error as exc:
                row, error = None, str(exc)
                reader = self._reader()
            yield from self._flush_bad()
            if row is None and error is None:
                return
            line, raw = lines.record_line, lines.take_record()
            pos, nxt = lines.pos, lines.line_no + 1
            if error is not None:
                yield BadLine(line, raw, error, pos, nxt)
                continue
            assert row is not None
            if not any(c.strip() for c in row):
                continue
            if width is None:  # no header: the first data row sets the width
                if len(row) < needed:
                    yield BadLine(
                        line, raw, f"{len(row)} columns, column {needed - 1} is used", pos, nxt
                    )
                    continue
                width = len(row)
                if not lay.plan and o.value_columns is None and not self.endpoints:
                    skip = {*lay.ts_idx, lay.identity_idx}
                    lay.plan = [
                        (i, f"col{i}", f"col{i}", o.value_type, None)
                        for i in range(width)
                        if i not in skip
                    ]
            if len(row) != width:
                yield BadLine(line, raw, f"expected {width} columns, got {len(row)}", pos, nxt)
                continue
            try:
                yield self._row(lay, row, identity, line, pos, nxt)
            except ValueError as exc:
                yield BadLine(line, raw, str(exc), pos, nxt)

    def _flush_bad(self) -> Iterator[BadLine]:
        bad, self._lines.bad = self._lines.bad, []
        yield from bad

    def _row(
        self, lay: Layout, row: list[str], identity: str | None, line: int, end: int, nxt: int
    ) -> Row:
        o = self.options
        ts_text = " ".join(row[i].strip() for i in lay.ts_idx)
        if not ts_text.strip():
            raise ValueError("empty timestamp")
        ts = self.timestamps(ts_text)
        problem = ts_problem(ts)
        if problem is not None:
            raise ValueError(f"time {ts_text!r}: {problem}")
        plan = lay.plan
        if lay.identity_idx is not None:
            identity = row[lay.identity_idx].strip()
            if not identity:
                raise ValueError("empty identity")
            if self.endpoints:
                plan = lay.by_identity.get(identity, [])
        readings: list[Reading] = []
        for idx, name, signal, data_type, ep in plan:
            cell = row[idx].strip()
            if not cell:
                continue
            try:
                value = parse_value(cell, data_type, o.decimal_comma)
            except ValueError as exc:
                raise ValueError(f"column {name!r}: {exc}") from None
            readings.append(
                Reading(ep.identity if ep is not None else identity or "", signal, value, ep)
            )
        return Row(line, ts, readings, end, nxt)
