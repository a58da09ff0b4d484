"""The archive store: archive files and their manifests on a local directory or any
fsspec URL (``s3://bucket/prefix`` through s3fs, ``memory://`` in tests).

Visibility and exactly once: a window is written data file first, manifest second, and
readers see only windows that have a manifest, so a crash between the two (or during
either) leaves nothing visible; the rerun writes the same data bytes to the same path
and then the manifest. On a local directory the manifest is written to a temporary name
and renamed (an S3 PUT is atomic by itself). Manifests never change once written, so the
store caches them by path and a listing reads only the new ones.

S3 endpoint and credentials come from ``storage_options`` (``endpoint_url``, ``key``,
``secret``, ... as s3fs takes them) or, when absent, from the environment as boto reads
it (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ...).
"""

from __future__ import annotations

import io
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem

from millrace.pipeline.archive.errors import ArchiveFormatError, ArchiveStoreError
from millrace.pipeline.archive.format import (
    ArchivedRecord,
    Manifest,
    manifest_path,
    read_archive,
    sha256_hex,
)
from millrace.pipeline.archive.window import WindowBuilder
from millrace.pipeline.codec import AvroCodec
from millrace.pipeline.log.base import Record

log = logging.getLogger("millrace.archive")

MANIFEST_SUFFIX = ".manifest.json"


@dataclass(frozen=True, slots=True)
class VerifyProblem:
    """One file that failed verification, and why."""

    path: str
    reason: str


class ArchiveStore:
    """Archive files and manifests under one fsspec root.

    ``url`` is a local path or an fsspec URL; ``fs`` overrides the filesystem (tests
    wrap one to inject crashes). Every method is blocking: async callers run them in a
    thread (the archiver does).
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        fs: fsspec.AbstractFileSystem | None = None,
    ) -> None:
        self.url = url
        try:
            if fs is None:
                fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
            else:
                root = fs._strip_protocol(url)
        except (ImportError, ValueError, TypeError) as exc:
            raise ArchiveStoreError(f"archive url {self.display_url!r}: {exc}") from exc
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = str(root).rstrip("/")
        self._local = isinstance(fs, LocalFileSystem)
        self._manifests: dict[str, Manifest] = {}
        self._lock = threading.Lock()

    @property
    def display_url(self) -> str:
        """The URL without a password in it (``sftp://user:***@host/...``), for status
        pages and logs; storage options (they may hold secrets) are never shown."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))

    def __repr__(self) -> str:
        return f"ArchiveStore({self.display_url!r})"

    def _full(self, path: str) -> str:
        return f"{self.root}/{path}"

    # --- reading ------------------------------------------------------------------

    def _manifest_paths(self, topic: str | None) -> list[str]:
        base = self._full(topic) if topic else self.root
        try:
            self.fs.invalidate_cache()  # others write here too: list the store, not a cache
            if not self.fs.exists(base):
                return []
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        except Exception as exc:  # the filesystem's own (botocore's are not OSError)
            raise ArchiveStoreError(f"listing {self.display_url}: {exc}") from exc
        prefix = self.root + "/"
        out = []
        for p in found:
            p = str(p)
            if p.endswith(MANIFEST_SUFFIX):
                out.append(p[len(prefix) :] if p.startswith(prefix) else p)
        return out

    def _manifest(self, rel: str) -> Manifest | None:
        with self._lock:
            cached = self._manifests.get(rel)
        if cached is not None:
            return cached
        try:
            data = self.fs.cat_file(self._full(rel))
        except FileNotFoundError:
            return None
        except Exception as exc:  # the filesystem's own (botocore's are not OSError)
            raise ArchiveStoreError(f"reading {rel}: {exc}") from exc
        try:
            m = Manifest.from_json(data)
        except ArchiveFormatError as exc:
            log.warning("archive manifest %s is unreadable, skipped: %s", rel, exc)
            return None
        if manifest_path(m.path) != rel:
            log.warning("archive manifest %s names another file (%s), skipped", rel, m.path)
            return None
        with self._lock:
            self._manifests[rel] = m
        return m

    def list_windows(
        self,
        topic: str | None = None,
        partition: int | None = None,
        start_us: int | None = None,
        end_us: int | None = None,
    ) -> list[Manifest]:
        """Manifests of the windows whose records overlap ``[start_us, end_us)`` (by
        record timestamp), read from the manifests only, sorted by time, topic,
        partition and offset."""
        out = []
        for rel in self._manifest_paths(topic):
            if partition is not None and not rel.rsplit("/", 1)[-1].startswith(f"{partition}-"):
                continue
            m = self._manifest(rel)
            if m is None or (topic is not None and m.topic != topic):
                continue
            if partition is not None and m.partition != partition:
                continue
            if start_us is not None and m.max_timestamp_us < start_us:
                continue
            if end_us is not None and m.min_timestamp_us >= end_us:
                continue
            out.append(m)
        out.sort(key=lambda m: (m.window_start_us, m.topic, m.partition, m.first_offset))
        return out

    def positions(self, topic: str | None = None) -> dict[tuple[str, int], int]:
        """Per (topic, partition): the offset after the last archived record."""
        out: dict[tuple[str, int], int] = {}
        for m in self.list_windows(topic):
            key = (m.topic, m.partition)
            out[key] = max(out.get(key, 0), m.end_offset)
        return out

    def read_file(self, manifest: Manifest) -> bytes:
        """A window's data bytes, checked against its manifest's size and sha256."""
        try:
            data = bytes(self.fs.cat_file(self._full(manifest.path)))
        except FileNotFoundError as exc:
            raise ArchiveFormatError(f"{manifest.path}: missing") from exc
        except Exception as exc:  # the filesystem's own (botocore's are not OSError)
            raise ArchiveStoreError(f"reading {manifest.path}: {exc}") from exc
        if len(data) != manifest.bytes or sha256_hex(data) != manifest.sha256:
            raise ArchiveFormatError(f"{manifest.path}: checksum does not match its manifest")
        return data

    def open_records(
        self, manifest: Manifest, codec: AvroCodec | None = None
    ) -> Iterator[ArchivedRecord]:
        """The records of one window, checksum verified first (ArchiveFormatError for a
        missing, changed or unreadable file)."""
        data = self.read_file(manifest)
        info, records = read_archive(io.BytesIO(data), codec)
        if (info.topic, info.partition) != (manifest.topic, manifest.partition):
            raise ArchiveFormatError(f"{manifest.path}: header names another topic-partition")
        return records

    def verify(self, manifests: Iterable[Manifest] | None = None) -> list[VerifyProblem]:
        """Check every window (or ``manifests``): checksum, readable records, the
        manifest's offsets and counts; returns the problems (empty: all good)."""
        problems = []
        for m in self.list_windows() if manifests is None else manifests:
            try:
                n, first, last = 0, None, None
                for r in self.open_records(m):
                    first = r.offset if first is None else first
                    last, n = r.offset, n + 1
                if (n, first, last) != (m.records, m.first_offset, m.last_offset):
                    raise ArchiveFormatError(
                        f"{m.path}: holds {n} records {first}..{last}, the manifest says "
                        f"{m.records} records {m.first_offset}..{m.last_offset}"
                    )
            except ArchiveFormatError as exc:
                problems.append(VerifyProblem(m.path, str(exc)))
        return problems

    # --- writing ------------------------------------------------------------------

    def put_window(self, data: bytes, manifest: Manifest) -> Manifest:
        """Write a window: data file, then its manifest (the commit point)."""
        if len(data) != manifest.bytes or sha256_hex(data) != manifest.sha256:
            raise ArchiveFormatError(f"{manifest.path}: data does not match its manifest")
        rel_manifest = manifest_path(manifest.path)
        try:
            self._put(manifest.path, data)
            self._put(rel_manifest, manifest.to_json())
        except Exception as exc:  # the filesystem's own (botocore's are not OSError)
            raise ArchiveStoreError(f"writing {manifest.path}: {exc}") from exc
        with self._lock:
            self._manifests[rel_manifest] = manifest
        return manifest

    def _put(self, rel: str, data: bytes) -> None:
        full = self._full(rel)
        if not self._local:
            self.fs.pipe_file(full, data)
            return
        # a local write is not atomic: write a temporary name, fsync, rename
        os.makedirs(os.path.dirname(full), exist_ok=True)
        tmp = f"{full}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, full)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def write_window(
        self,
        records: Iterable[Record],
        window_start_us: int,
        window_end_us: int,
        *,
        codec: str = "zstandard",
        created_us: int = 0,
    ) -> Manifest:
        """Archive ``records`` (one topic-partition, offset order) as one window."""
        builder: WindowBuilder | None = None
        for r in records:
            if builder is None:
                builder = WindowBuilder(r, window_start_us, window_end_us, codec)
            builder.add(r)
        if builder is None:
            raise ValueError("write_window: no records")
        data, manifest = builder.finish(created_us)
        return self.put_window(data, manifest)
