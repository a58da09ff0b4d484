"""Committed consumer-group offsets, one JSON file per group.

``<dir>/__consumer_offsets/<group>.json`` holds ``{"group": ..., "offsets": {topic:
{partition: offset}}}``.  A commit rewrites the group's file atomically: write a temp
file, fsync it, ``os.replace`` it over the old one, fsync the directory.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from millrace.pipeline.errors import LogError
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.log.local.segment import fsync_dir

_TMP_SUFFIX = ".json.tmp"


class FileOffsetStore:
    """Consumer-group offsets in files; groups are cached after their first use."""

    def __init__(self, directory: Path, durable: bool = True) -> None:
        self.directory = directory
        self._durable = durable
        self._groups: dict[str, dict[TopicPartition, int]] = {}
        self._lock = threading.Lock()

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob("*" + _TMP_SUFFIX):
            leftover.unlink()  # a commit interrupted before its os.replace

    def _path(self, group: str) -> Path:
        if not group:
            raise LogError("a consumer group needs a non-empty name")
        return self.directory / (quote(group, safe="") + ".json")

    def _load(self, group: str) -> dict[TopicPartition, int]:
        cached = self._groups.get(group)
        if cached is not None:
            return cached
        path = self._path(group)
        offsets: dict[TopicPartition, int] = {}
        try:
            doc = json.loads(path.read_bytes())
            for topic, partitions in doc["offsets"].items():
                for partition, offset in partitions.items():
                    offsets[TopicPartition(topic, int(partition))] = int(offset)
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LogError(f"unreadable consumer offsets {path}: {exc}") from exc
        self._groups[group] = offsets
        return offsets

    def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if not isinstance(offset, int) or offset < 0:
                raise LogError(f"invalid offset {offset!r} for {tp}")
        with self._lock:
            merged = {**self._load(group), **offsets}
            doc: dict[str, dict[str, int]] = {}
            for tp, offset in sorted(
                merged.items(), key=lambda item: (item[0].topic, item[0].partition)
            ):
                doc.setdefault(tp.topic, {})[str(tp.partition)] = offset
            data = json.dumps({"group": group, "offsets": doc}, sort_keys=True).encode()
            self._write_atomically(self._path(group), data)
            self._groups[group] = merged

    def committed(self, group: str, tp: TopicPartition) -> int | None:
        with self._lock:
            return self._load(group).get(tp)

    def _write_atomically(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name[: -len(".json")] + _TMP_SUFFIX)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self._durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if self._durable:
                fsync_dir(self.directory)
        except OSError as exc:
            raise LogError(f"cannot commit offsets to {path}: {exc}") from exc
