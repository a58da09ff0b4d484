"""What a restore reads: its parameters, the files they name, and each file's records.

By time: the archive store's manifests (``ArchiveStore.list_windows``) name the files
whose records overlap ``[start_us, end_us)``; records outside the range (a window is
wider than the range) are left out. By URL: a path on the archive store, or a
``file://``, ``http(s)://`` or ``s3://`` URL under one of the configured prefixes
(``restore.allowed_url_prefixes``; anything else is refused; ``urls``). A file on the archive
store is checked against its manifest (size and sha256); a file elsewhere is checked
against a manifest beside it when there is one. Files are read with the archive
format's reader, which resolves older event schemas to the current ones. A URL's
credentials (``${ENV}`` references, never a password) are resolved when the file is
fetched (``fetch``), from the environment of the task runner. A file fetched by URL
whose sha256 no manifest of the store names is foreign (``is_foreign``): the task
appends its records to the log (``republish``) instead of folding them.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from millrace.pipeline.archive.errors import ArchiveFormatError
from millrace.pipeline.archive.format import (
    ArchivedRecord,
    Manifest,
    manifest_path,
    read_archive,
    sha256_hex,
)
from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.restore.errors import RestoreError, RestoreForbiddenError
from millrace.pipeline.restore.fetch import fetch, fetch_optional
from millrace.pipeline.restore.urls import (
    BasicAuth,
    admit_url,
    check_credentials,
    check_url,
    masked_url,
    netloc_key,
    segments,
)
from millrace.pipeline.topics import TASKS, TOPIC_SCHEMAS

__all__ = [
    "RESTORABLE",
    "RestoreError",
    "RestoreFile",
    "RestoreForbiddenError",
    "RestoreParams",
    "canonical_name",
    "check_url",
    "files_by_time",
    "files_by_url",
    "is_foreign",
    "masked_url",
    "open_file",
]

#: topics a restore folds unless told otherwise (old tasks are not brought back)
RESTORABLE = tuple(t for t in TOPIC_SCHEMAS if t != TASKS)


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
        """RestoreError naming the offending field (a literal URL password among them:
        refused before the task is on the log)."""
        start, end = self.start_us, self.end_us
        if start is not None and end is not None and start >= end:
            raise RestoreError("start_time: must be before end_time")
        for t in self.topics:
            if t not in RESTORABLE:
                raise RestoreError(f"topics: unknown topic {t!r}; one of {list(RESTORABLE)}")
        for i, url in enumerate(self.urls):
            check_credentials(url, f"urls[{i}]")

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


def canonical_name(url: str, store: ArchiveStore | None) -> str:
    """One name per file, however it is written: a path on the archive store (the
    store's URL + path, ``file://`` + the store's directory, or a relative path with
    ``./`` or doubled slashes), else the URL with its scheme and host lower-cased and
    its path's segments joined once."""
    rel = _relative(store, url)
    if rel is not None:
        return rel
    parts = urlsplit(url)
    path = "/" + "/".join(segments(parts.path) or [parts.path])
    scheme, host, port = netloc_key(parts)
    where = host if port is None else f"{host}:{port}"
    return f"{scheme}://{where}{path}"


@dataclass(slots=True)
class RestoreFile:
    """One file of a restore: its name (archive path or URL, passwords masked) and how
    to open it (``url`` as fetched, without user info, and its credentials)."""

    name: str
    manifest: Manifest | None = None
    url: str | None = None
    size: int = 0
    readings: int = 0
    records: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    ident: str = ""  # the canonical name (``canonical_name``): the file's identity
    auth: BasicAuth | None = None  # the URL's credentials as written (``${ENV}``)


def files_by_time(store: ArchiveStore, params: RestoreParams) -> list[RestoreFile]:
    out: list[RestoreFile] = []
    for topic in params.topics or RESTORABLE:
        for m in store.list_windows(topic, None, params.start_us, params.end_us):
            out.append(RestoreFile(m.path, m, None, m.bytes, m.readings, m.records, ident=m.path))
    return out


def files_by_url(
    store: ArchiveStore | None, params: RestoreParams, allowed: Sequence[str] = ()
) -> list[RestoreFile]:
    """The files the URLs name, each once (by :func:`canonical_name`: one file named
    twice, as a path and as the store's URL, is restored once), each checked against
    the allow-list (``urls.admit_url``: RestoreError or RestoreForbiddenError naming
    ``urls[i]``) with the credentials it is fetched with."""
    archive_url = store.url if store is not None else None
    out: list[RestoreFile] = []
    seen: set[str] = set()
    for i, url in enumerate(params.urls):
        admitted = admit_url(url, allowed, archive_url, f"urls[{i}]")
        ident = canonical_name(url, store)
        if ident in seen:
            continue
        seen.add(ident)
        # the name is shown and kept in the task's events: no password in it
        if _relative(store, url) is not None:
            out.append(RestoreFile(masked_url(url), ident=ident))
        else:
            shown = masked_url(url)
            out.append(RestoreFile(shown, url=admitted.url, ident=ident, auth=admitted.auth))
    return out


def _local_path(url: str) -> str | None:
    if url.startswith("file://"):
        return url[len("file://") :]
    return url if url.startswith("/") else None


def _relative(store: ArchiveStore | None, url: str) -> str | None:
    """The path on the archive store that ``url`` names, or None."""
    if store is None:
        return None
    if "://" not in url and not url.startswith("/"):
        return posixpath.normpath(url.lstrip("/"))
    for have, base in ((url, store.url), (_local_path(url), _local_path(store.url))):
        if have is None or base is None:
            continue
        prefix = base.rstrip("/") + "/"
        if have.startswith(prefix):
            return posixpath.normpath(have[len(prefix) :].lstrip("/"))
    return None


def _manifest_on_store(store: ArchiveStore, rel: str) -> Manifest:
    topic = rel.split("/", 1)[0]
    for m in store.list_windows(topic if topic in TOPIC_SCHEMAS else None):
        if m.path == rel:
            return m
    raise ArchiveFormatError(f"{rel}: no such archive file (no manifest names it)")


def open_file(
    f: RestoreFile,
    store: ArchiveStore | None,
    codec: AvroCodec | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Iterator[ArchivedRecord], int]:
    """The file's records and its size in bytes (blocking). ArchiveFormatError for a
    missing, changed or unreadable file, ArchiveStoreError when it cannot be reached,
    RestoreError when its credentials name a variable ``env`` (default: this process's
    environment) does not set."""
    if f.url is None:
        if store is None:
            raise RestoreError("no archive store is configured (archive.url)")
        manifest = f.manifest or _manifest_on_store(store, f.ident or f.name)
        return store.open_records(manifest, codec), manifest.bytes
    data = fetch(f.url, f.auth, env)
    side = fetch_optional(manifest_path(f.url), f.auth, env)
    if side is not None:
        m = Manifest.from_json(side)
        if len(data) != m.bytes or sha256_hex(data) != m.sha256:
            raise ArchiveFormatError(f"{f.name}: checksum does not match its manifest")
    info, records = read_archive(io.BytesIO(data), codec)
    # what ``is_foreign`` compares with the archive store's manifests
    f.extra.update(sha256=sha256_hex(data), topic=info.topic)
    return records, len(data)


def is_foreign(f: RestoreFile, store: ArchiveStore | None) -> bool:
    """Whether ``f`` (opened by :func:`open_file`) is a file this deployment's archive
    does not hold: fetched by URL, and no manifest of the archive store names its
    sha256 (a copy of one of its files elsewhere is not foreign). Its records are then
    appended to the log (``republish``), not folded straight in. Blocking."""
    if f.url is None:
        return False
    if store is None:
        return True
    topic = f.extra.get("topic")
    windows = store.list_windows(topic if topic in TOPIC_SCHEMAS else None)
    return not any(m.sha256 == f.extra.get("sha256") for m in windows)
