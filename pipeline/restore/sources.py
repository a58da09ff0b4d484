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
import posixpath
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

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
URL_SCHEMES = ("file", "http", "https", "s3")

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+@")


def masked_url(text: str) -> str:
    """``text`` with every URL password shown as ``***`` (``scheme://user:***@host``):
    what task answers, task events (file names, reasons) and logs show of a URL. The
    task's parameters keep the URL as given: the runner needs it to fetch the file."""
    return _URL_PASSWORD.sub(r"\1***@", text)


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
    """RestoreForbiddenError unless ``url`` is a path inside the archive store, under the
    archive store's URL, or under an allowed prefix.

    URLs are compared parsed, not as strings: the scheme and the host (and port, and
    user) must be the prefix's exactly — ``https://files.example.com`` does not admit
    ``https://files.example.com.evil.net/`` — and the path must continue the prefix's
    path at a segment boundary. The path is percent-decoded and its ``.`` segments
    dropped first; a path with a ``..`` segment, an encoded slash or backslash, a query
    or a fragment is refused: what an HTTP client would normalise to another place
    never passes. An absolute local path is taken as a ``file://`` URL."""
    if "://" not in url and not url.startswith("/"):
        if _segments(url) is None:
            raise RestoreForbiddenError(f"urls: {url!r} is not a path inside the archive")
        return  # relative: a path on the archive store
    parts = urlsplit(url if "://" in url else "file://" + url)  # an absolute local path
    if _segments(parts.path) is None or parts.query or parts.fragment or "#" in url:
        raise RestoreForbiddenError(f"urls: {masked_url(url)!r} is not a plain file URL")
    if archive_url and _under(parts, archive_url):
        return  # on the archive store (whatever its filesystem)
    if parts.scheme.lower() not in URL_SCHEMES:
        raise RestoreForbiddenError(f"urls: {masked_url(url)!r}: scheme not allowed")
    if not any(p and _under(parts, p) for p in allowed):
        raise RestoreForbiddenError(
            f"urls: {masked_url(url)!r} is outside the allowed URL prefixes"
        )


def _segments(path: str) -> list[str] | None:
    """The path's segments after percent-decoding (``.`` and empty ones left out), or
    None when it could lead elsewhere (a ``..`` segment, encoded ``/`` or ``\\``, a backslash)."""
    lowered = path.lower()
    if "\\" in path or "%2f" in lowered or "%5c" in lowered:
        return None
    segments = unquote(path).split("/")
    if ".." in segments:
        return None
    return [seg for seg in segments if seg not in ("", ".")]


def _netloc(parts: SplitResult) -> tuple[str, str, int | None, str | None, str | None]:
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() == "file" and host == "localhost":
        host = ""
    return parts.scheme.lower(), host, port, parts.username, parts.password


def _under(parts: SplitResult, prefix: str) -> bool:
    """Whether the parsed URL is below ``prefix`` (a URL or, for the archive store, a
    local path): same scheme, host, port and user, the path below the prefix's path."""
    if "://" not in prefix:
        prefix = "file://" + prefix  # a local archive directory
    base = urlsplit(prefix)
    if _netloc(parts) != _netloc(base):
        return False
    want, have = _segments(base.path), _segments(parts.path)
    if want is None or have is None:
        return False
    return len(have) > len(want) and have[: len(want)] == want


def canonical_name(url: str, store: ArchiveStore | None) -> str:
    """One name per file, however it is written: a path on the archive store (the
    store's URL + path, ``file://`` + the store's directory, or a relative path with
    ``./`` or doubled slashes), else the URL with its scheme and host lower-cased and
    its path's segments joined once."""
    rel = _relative(store, url)
    if rel is not None:
        return rel
    parts = urlsplit(url)
    path = "/" + "/".join(_segments(parts.path) or [parts.path])
    scheme, host, port, _, _ = _netloc(parts)
    where = host if port is None else f"{host}:{port}"
    return f"{scheme}://{where}{path}"


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
    ident: str = ""  # the canonical name (``canonical_name``): the file's identity


def files_by_time(store: ArchiveStore, params: RestoreParams) -> list[RestoreFile]:
    out: list[RestoreFile] = []
    for topic in params.topics or RESTORABLE:
        for m in store.list_windows(topic, None, params.start_us, params.end_us):
            out.append(RestoreFile(m.path, m, None, m.bytes, m.readings, m.records, ident=m.path))
    return out


def files_by_url(store: ArchiveStore | None, params: RestoreParams) -> list[RestoreFile]:
    """The files the URLs name, each once (by :func:`canonical_name`: one file named
    twice, as a path and as the store's URL, is restored once)."""
    out: list[RestoreFile] = []
    seen: set[str] = set()
    for url in params.urls:
        ident = canonical_name(url, store)
        if ident in seen:
            continue
        seen.add(ident)
        rel = _relative(store, url)
        # the name is shown and kept in the task's events: no password in it
        local = rel is not None
        out.append(RestoreFile(masked_url(url), None, None if local else url, ident=ident))
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
    f: RestoreFile, store: ArchiveStore | None, codec: AvroCodec | None = None
) -> tuple[Iterator[ArchivedRecord], int]:
    """The file's records and its size in bytes (blocking). ArchiveFormatError for a
    missing, changed or unreadable file, ArchiveStoreError when it cannot be reached."""
    if f.url is None:
        if store is None:
            raise RestoreError("no archive store is configured (archive.url)")
        manifest = f.manifest or _manifest_on_store(store, f.ident or f.name)
        return store.open_records(manifest, codec), manifest.bytes
    data = _fetch(f.url)
    side = _fetch_optional(manifest_path(f.url))
    if side is not None:
        m = Manifest.from_json(side)
        if len(data) != m.bytes or sha256_hex(data) != m.sha256:
            raise ArchiveFormatError(f"{f.name}: checksum does not match its manifest")
    _, records = read_archive(io.BytesIO(data), codec)
    return records, len(data)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> None:
        fp.close()  # the redirect's response holds the connection: release it now
        where = masked_url(req.full_url)
        raise ArchiveStoreError(f"{where}: answered {code} (a redirect, not followed)")


def _fetch_http(url: str) -> bytes:
    """An http(s) file, redirects refused (the allow-list vetted this URL, not wherever
    the server sends the client next)."""
    opener = urllib.request.build_opener(_NoRedirect)
    shown = masked_url(url)
    try:
        with opener.open(url, timeout=60) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        exc.close()  # its response holds the connection
        if exc.code == 404:
            raise ArchiveFormatError(f"{shown}: missing") from exc
        raise ArchiveStoreError(f"{shown}: HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise ArchiveStoreError(f"{shown}: {masked_url(str(exc))}") from exc


def _fetch(url: str) -> bytes:
    if urlsplit(url).scheme.lower() in ("http", "https"):
        return _fetch_http(url)
    shown = masked_url(url)
    try:
        with fsspec.open(url, "rb") as fh:
            return bytes(fh.read())
    except FileNotFoundError as exc:
        raise ArchiveFormatError(f"{shown}: missing") from exc
    except (OSError, ValueError, ImportError) as exc:
        raise ArchiveStoreError(f"{shown}: {masked_url(str(exc))}") from exc


def _fetch_optional(url: str) -> bytes | None:
    try:
        return _fetch(url)
    except (ArchiveFormatError, ArchiveStoreError):
        return None
