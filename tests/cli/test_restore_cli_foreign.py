"""``millrace restore --offline`` of a FOREIGN file (outside the archive store): its
records go onto the local log (``pipeline.restore.republish``), not straight into the
projections; the engine started afterwards folds them, each reading once, and a
second offline restore appends nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from millrace.pipeline.archive.store import ArchiveStore
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.restore.republish import HEADER
from tests.cli.test_restore_cli import cli, write_archive
from tests.test_crash_recovery import Engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def restored_on(data: Path) -> Counter[str]:
    log = LocalEventLog(data / "log")
    try:
        seen: Counter[str] = Counter()
        for p in range(log.partitions("telemetry")):
            for r in await log.read("telemetry", p, 0, 1_000_000):
                seen.update(v.decode() for k, v in r.headers if k == HEADER)
        return seen
    finally:
        await log.close()


def test_offline_restore_of_a_foreign_file_goes_onto_the_log(
    tmp_path: Path, engines: list[Engine]
) -> None:
    exports = tmp_path / "exports"
    sums = write_archive(exports)
    (manifest,) = ArchiveStore(str(exports)).list_windows()
    config = tmp_path / "millrace.yaml"
    config.write_text(
        f"simulator:\n  devices: 0\narchive:\n  url: {tmp_path / 'archive'}\n"
        f"restore:\n  allowed_url_prefixes: ['file://{exports}/']\n"
    )
    data = tmp_path / "data"
    args = ["--offline", "--config", str(config), "--data-dir", str(data)]
    url = f"file://{exports}/{manifest.path}"
    for _ in range(2):
        done = cli("restore", *args, "--url", url)
        assert done.returncode == 0, done.stderr
    on_log = asyncio.run(restored_on(data))
    assert len(on_log) == 200 and set(on_log.values()) == {1}
    engine = Engine(data, config)
    engines.append(engine)
    engine.start()
    engine.wait_caught_up()
    q = "SELECT signal, sum(value) AS total, count() AS n FROM millrace.readings GROUP BY signal"
    got = {r[0]: (float(r[1]), int(r[2])) for r in engine.sql(q)}
    assert got == {k: (v, 200) for k, v in sums.items()}
    engine.stop()
