"""The archiver is wired by the one assembly, in both deployments, only when an archive
is configured; the archive: section and MILLRACE_ARCHIVE_URL validate like the rest."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from millrace.pipeline.archive.archiver import Archiver
from millrace.pipeline.cli.assembly import Adapters, Assembly, Purpose, distributed_adapters
from millrace.pipeline.cli.config import load_config
from millrace.pipeline.errors import ConfigError
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.runtime.stage import Stage
from millrace.projections.store.base import ProjectionStore
from millrace.projections.store.chdb import ChdbStore


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, archive: dict[str, object] | None) -> Path:
    port = _closed_port()
    text = (
        f"data_dir: {tmp_path / 'data'}\n"
        "simulator: {devices: 0}\n"
        f"distributed: {{kafka_bootstrap: '127.0.0.1:{port}', "
        f"clickhouse_url: 'clickhouse://default@127.0.0.1:{port}/default'}}\n"
    )
    if archive is not None:
        text += "archive: {" + ", ".join(f"{k}: {v}" for k, v in archive.items()) + "}\n"
    path = tmp_path / "millrace.yaml"
    path.write_text(text)
    return path


def test_archiver_only_when_configured_in_both_deployments(
    tmp_path: Path, chdb_store: ChdbStore
) -> None:
    def stores(purpose: Purpose) -> ProjectionStore:
        return ChdbStore(chdb_store.path)

    for n, archive in enumerate((None, {"url": str(tmp_path / "archive"), "window": "15m"})):
        cfg = load_config(_config(tmp_path, archive))
        embedded = Adapters(LocalEventLog(Path(cfg.data_dir) / f"log{n}", cfg.log), stores)
        for adapters in (embedded, distributed_adapters(cfg, store="chdb")):
            wrapped: list[str] = []

            def wrap(stage: Stage, wrapped: list[str] = wrapped) -> Stage:
                wrapped.append(stage.name)
                return stage

            asm = Assembly(cfg, adapters, wrap_singleton=wrap)
            try:
                stages = asm.build(["process", "api"])
                names = {s.name for s in stages}
                if archive is None:
                    assert "archiver" not in names and asm.archiver is None
                    assert asm.app_context().archive is None
                    continue
                assert "archiver" in wrapped  # a singleton in either deployment
                assert isinstance(asm.archiver, Archiver)
                assert asm.archiver.window_us == 15 * 60_000_000
                assert asm.app_context().archive is asm.archive_store()
                assert "archive" in asm.status()
                if isinstance(adapters.log, LocalEventLog):  # retention waits for it
                    assert adapters.log._retention_hold == asm.archiver.archived_end
                    assert asm.archiver.sync is None  # fsync: batch, every append is on disk
            finally:
                asm.close()
        assert isinstance(embedded.log, LocalEventLog)
        embedded.log.close_sync()


def test_archive_url_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILLRACE_ARCHIVE_URL", "s3://bucket/millrace")
    cfg = load_config(_config(tmp_path, None))
    assert cfg.archive.url == "s3://bucket/millrace" and cfg.archive.enabled


def test_bad_archive_settings_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, {"url": "x", "window": "7m", "codec": "lz4"}))
    text = str(err.value)
    assert "$.archive.window" in text and "$.archive.codec" in text
