"""What was read already: the state that lets a restart go on without reading a file twice.

The state directory holds three files:

``ledger.jsonl``
    one JSON line per file read (``done``) or given up (``failed``), appended and
    fsynced before the file is deleted or moved. A file is identified by its path
    relative to the drop directory, size, modification time (ns) and a hash of its
    first and last KB (:class:`FileKey`), so a file that is modified after it was read
    (same name, new content) is a new file and is read again, whole. The last record
    of a path wins; records of files that are gone are dropped when the ledger is
    compacted at start.
``progress.json``
    the file being read and the byte offset up to which its readings were handed to
    the publisher, so that a restart in the middle of a large file resumes there.
``watermarks.json``
    with ``only_newer``, the time of the last reading per identity/signal.

Writes are fsynced, and replaced files are written aside and renamed, so that a crash
leaves either the old or the new state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("millrace.connectors.files")

HASH_BYTES = 1024


def digest(data: bytes) -> str:
    """Hash of the first and last KB of a file's content."""
    tail = data[-HASH_BYTES:] if len(data) > HASH_BYTES else b""
    return hashlib.sha256(data[:HASH_BYTES] + b"\0" + tail).hexdigest()[:32]


def digest_file(path: Path, size: int) -> str:
    """:func:`digest` of the file at ``path`` (of ``size`` bytes), reading only 2 KB."""
    with open(path, "rb") as f:
        head = f.read(HASH_BYTES)
        tail = b""
        if size > HASH_BYTES:
            f.seek(size - HASH_BYTES)
            tail = f.read(HASH_BYTES)
    return hashlib.sha256(head + b"\0" + tail).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class FileKey:
    path: str  # relative to the drop directory, with '/'
    size: int
    mtime_ns: int
    digest: str


@dataclass(frozen=True, slots=True)
class Record:
    key: FileKey
    status: Literal["done", "failed"]
    at_us: int = 0
    rows: int = 0
    readings: int = 0
    bad_lines: int = 0
    reason: str = ""

    def to_json(self) -> str:
        d: dict[str, Any] = asdict(self.key)
        d.update(
            status=self.status,
            at_us=self.at_us,
            rows=self.rows,
            readings=self.readings,
            bad_lines=self.bad_lines,
        )
        if self.reason:
            d["reason"] = self.reason
        return json.dumps(d, separators=(",", ":"), ensure_ascii=False)

    @staticmethod
    def from_json(line: str) -> Record:
        d = json.loads(line)
        key = FileKey(str(d["path"]), int(d["size"]), int(d["mtime_ns"]), str(d["digest"]))
        status = d["status"]
        if status not in ("done", "failed"):
            raise ValueError(f"unknown status {status!r}")
        return Record(
            key,
            status,
            int(d.get("at_us", 0)),
            int(d.get("rows", 0)),
            int(d.get("readings", 0)),
            int(d.get("bad_lines", 0)),
            str(d.get("reason", "")),
        )


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Ledger:
    """The state directory of one files connection (see the module doc)."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / "ledger.jsonl"
        self._records: dict[str, Record] = {}
        self._lines = 0

    def load(self, exists: Callable[[str], bool] | None = None) -> None:
        """Read the ledger; compact it when it holds many superseded records or records
        of files that no longer exist (``exists(path)`` False)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._records, self._lines = {}, 0
        torn = False
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            self._lines += 1
            try:
                rec = Record.from_json(line)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s line %d ignored: %s", self.path, n, exc)
                torn = True
                continue
            self._records[rec.key.path] = rec
        if text and not text.endswith("\n"):
            torn = True  # a crash during an append: rewrite before appending again
        if exists is not None:
            gone = [p for p in self._records if not exists(p)]
            for p in gone:
                del self._records[p]
        if torn or self._lines > 2 * len(self._records) + 64:
            self.compact()

    def compact(self) -> None:
        _write_atomic(self.path, "".join(r.to_json() + "\n" for r in self._records.values()))
        self._lines = len(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def get(self, path: str) -> Record | None:
        return self._records.get(path)

    def is_done(self, key: FileKey) -> bool:
        rec = self._records.get(key.path)
        return rec is not None and rec.key == key and rec.status == "done"

    def record(self, rec: Record) -> None:
        """Append ``rec`` durably."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(rec.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._records[rec.key.path] = rec
        self._lines += 1

    # -- the file being read ----------------------------------------------------------
    def progress(self, key: FileKey) -> tuple[int, int] | None:
        """(byte offset, line number) up to which ``key`` was read, if it was in part."""
        try:
            d = json.loads((self.dir / "progress.json").read_text(encoding="utf-8"))
            if FileKey(**d["key"]) == key:
                return int(d["offset"]), int(d["line"])
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s ignored: %s", self.dir / "progress.json", exc)
        return None

    def save_progress(self, key: FileKey, offset: int, line: int) -> None:
        _write_atomic(
            self.dir / "progress.json",
            json.dumps({"key": asdict(key), "offset": offset, "line": line}),
        )

    def clear_progress(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "progress.json").unlink()

    # -- only_newer -------------------------------------------------------------------
    def load_watermarks(self) -> dict[tuple[str, str], int]:
        try:
            items = json.loads((self.dir / "watermarks.json").read_text(encoding="utf-8"))
            return {(str(i), str(s)): int(t) for i, s, t in items}
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError) as exc:
            log.warning("%s ignored: %s", self.dir / "watermarks.json", exc)
            return {}

    def save_watermarks(self, marks: Mapping[tuple[str, str], int]) -> None:
        items = [[i, s, t] for (i, s), t in sorted(marks.items())]
        _write_atomic(self.dir / "watermarks.json", json.dumps(items, ensure_ascii=False))
