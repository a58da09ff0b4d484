"""What a restore reads: its parameters, the files they name, and each file's records.

By time: the archive store's manifests (``ArchiveStore.list_windows``) name the files
whose records overlap ``[start_us, end_us)``; records outside the range (a window is
wider than the range) are left out. By URL: a path on the archive store, or a
``file://``, ``http(s)://`` or ``s3://`` URL under one of the configured prefixes
(``restore.allowed_url_prefixes``; anything else is refused). A file on the archive
store is checked against its manifest (size and sha256); a file elsewhere is checked
against a manifest beside it when there is one. Files are read with the archive
format's reader, which resolves older event schemas to the current ones.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec

from millrace.pipeline.archive.errors import ArchiveFormatError, ArchiveStoreError
from millrace.pipeline.archive.format import (
    ArchivedRecord,
    Manifest,
    manifest_path,
    read_archive,
    sha256_hex,
)
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.errors import MillraceError
from millrace.pipeline.topics import TASKS, TOPIC_SCHEMAS

#: topics a restore folds unless told otherwise (old tasks are not brought back)
RESTORABLE = tuple(t for t in TOPIC_SCHEMAS if t != TASKS)
URL_SCHEMES = ("file://", "http://", "https://", "s3://")


class RestoreError(MillraceError):
    """A restore cannot run as asked (bad parameters, no archive store)."""


class RestoreForbiddenError(RestoreError):
    """A URL outside the configured allow-list."""


@dataclass(frozen=True, slots=True)
class RestoreParams:
    """A restore task's parameters (stored as the task's JSON params)."""

    start_us: int | None = None
    end_us: int | None = None
    identities: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, params: Mapping[str, Any]) -> RestoreParams:
        def opt(name: str) -> int | None:
            v = params.get(name)
            return None if v is None else int(v)

        return cls(
            opt("start_us"),
            opt("end_us"),
            tuple(str(x) for x in params.get("identities") or ()),
            tuple(str(x) for x in params.get("topics") or ()),
            tuple(str(x) for x in params.get("urls") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.start_us is not None:
            out["start_us"] = self.start_us
        if self.end_us is not None:
            out["end_us"] = self.end_us
        for name in ("identities", "topics", "urls"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        return out

    def check(self) -> None:
        """RestoreError naming the offending field."""
        start, end = self.start_us, self.end_us
        if start is not None and end is not None and start >= end:
            raise RestoreError("start_time: must be before end_time")
        for t in self.topics:
            if t not in RESTORABLE:
                raise RestoreError(f"topics: unknown topic {t!r}; one of {list(RESTORABLE)}")

    def keeps(self, rec: ArchivedRecord) -> bool:
        """Whether ``rec`` is in the restore's time range and names one of its identities."""
        if self.start_us is not None and rec.timestamp_us < self.start_us:
            return False
        if self.end_us is not None and rec.timestamp_us >= self.end_us:
            return False
        if self.identities:
            named = rec.value.get("identity") if rec.value is not None else None
            if named is None and rec.key is not None:
                named = rec.key.decode("utf-8", "replace")
            return named in self.identities
        return True


def check_url(url: str, allowed: Sequence[str], archive_url: str | None) -> None:
    """RestoreForbiddenError unless ``url`` is a path on the archive store, under the
    archive store's URL, or under an allowed prefix."""
    if not any(url.startswith(s) for s in URL_SCHEMES) and "://" not in url:
        if url.startswith("/") or ".." in url.split("/"):
            raise RestoreForbiddenError(f"urls: {url!r} is not a path inside the archive")
        return  # relative: a path on the archive store
    if archive_url and url.startswith(archive_url.rstrip("/") + "/") and ".." not in url:
        return
    if not any(url.startswith(s) for s in URL_SCHEMES):
        raise RestoreForbiddenError(f"urls: {url!r}: scheme not allowed")
    if ".." in url.split("/") or not any(p and url.startswith(p) for p in allowed):
        raise RestoreForbiddenError(f"urls: {url!r} is outside the allowed URL prefixes")


@dataclass(slots=True)
class RestoreFile:
    """One file of a restore: its name (archive path or URL) and how to open it."""

    name: str
    manifest: Manifest | None = None
    url: str | None = None
    size: int = 0
    readings: int = 0
    records: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def files_by_time(store: ArchiveStore, params: RestoreParams) -> list[RestoreFile]:
    out: list[RestoreFile] = []
    for topic in params.topics or RESTORABLE:
        for m in store.list_windows(topic, None, params.start_us, params.end_us):
            out.append(RestoreFile(m.path, m, None, m.bytes, m.readings, m.records))
    return out


def files_by_url(store: ArchiveStore | None, params: RestoreParams) -> list[RestoreFile]:
    out: list[RestoreFile] = []
    for url in params.urls:
        rel = _relative(store, url)
        out.append(RestoreFile(url, None, None if rel is not None else url))
    return out


def _relative(store: ArchiveStore | None, url: str) -> str | None:
    if store is None:
        return None
    if "://" not in url and not url.startswith("/"):
        return url
    prefix = store.url.rstrip("/") + "/"
    return url[len(prefix) :] if url.startswith(prefix) else None


def _manifest_on_store(store: ArchiveStore, rel: str) -> Manifest:
    topic = rel.split("/", 1)[0]
    for m in store.list_windows(topic if topic in TOPIC_SCHEMAS else None):
        if m.path == rel:
            return m
    raise ArchiveFormatError(f"{rel}: no such archive file (no manifest names it)")


def open_file(
    f: RestoreFile, store: ArchiveStore | None, codec: AvroCodec | None = None
) -> tuple[Iterator[ArchivedRecord], int]:
    """The file's records and its size in bytes (blocking). ArchiveFormatError for a
    missing, changed or unreadable file, ArchiveStoreError when it cannot be reached."""
    if f.url is None:
        if store is None:
            raise RestoreError("no archive store is configured (archive.url)")
        manifest = f.manifest or _manifest_on_store(store, _relative(store, f.name) or f.name)
        return store.open_records(manifest, codec), manifest.bytes
    data = _fetch(f.url)
    side = _fetch_optional(manifest_path(f.url))
    if side is not None:
        m = Manifest.from_json(side)
        if len(data) != m.bytes or sha256_hex(data) != m.sha256:
            raise ArchiveFormatError(f"{f.url}: checksum does not match its manifest")
    _, records = read_archive(io.BytesIO(data), codec)
    return records, len(data)


def _fetch(url: str) -> bytes:
    try:
        with fsspec.open(url, "rb") as fh:
            return bytes(fh.read())
    except FileNotFoundError as exc:
        raise ArchiveFormatError(f"{url}: missing") from exc
    except (OSError, ValueError, ImportError) as exc:
        raise ArchiveStoreError(f"{url}: {exc}") from exc


def _fetch_optional(url: str) -> bytes | None:
    try:
        return _fetch(url)
    except (ArchiveFormatError, ArchiveStoreError):
        return None
