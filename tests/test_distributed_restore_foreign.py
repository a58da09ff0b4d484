"""A foreign archive file restored in the distributed deployment: the task runner of
``millrace process`` appends its records to Kafka (librdkafka's mock cluster,
``tests/distributed.py``), the faust workers fold them, each reading once; a second
restore of the file appends nothing (``pipeline.restore.republish``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from millrace.projections.store.chdb import ChdbStore
from tests.distributed import Deployment, cluster  # noqa: F401
from tests.pipeline.restore.helpers import T0
from tests.pipeline.restore.test_restore_foreign import foreign_file
from tests.test_distributed_replay import serving, stored

pytest.importorskip("faust")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def deployed(
    cluster: str,  # noqa: F811
    chdb_store: ChdbStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Deployment, httpx.Client, Path]]:
    tmp = tmp_path_factory.mktemp("restore-foreign")
    exports = tmp / "exports"
    exports.mkdir()
    config = (
        f"archive: {{url: '{tmp / 'archive'}', poll_ms: 100}}\n"
        f"restore: {{allowed_url_prefixes: ['file://{exports}/']}}\n"
    )
    with serving(cluster, chdb_store, tmp, config) as (d, client):
        yield d, client, exports


def test_a_foreign_file_goes_onto_kafka_and_is_folded_once(
    deployed: tuple[Deployment, httpx.Client, Path], chdb_store: ChdbStore
) -> None:
    d, client, exports = deployed
    samples = foreign_file(exports / "far.avro", n=24)
    want = Counter(
        (identity, T0 + at, value) for identity, at, values in samples for value in values.values()
    )
    url = f"file://{exports / 'far.avro'}"

    def restore() -> dict[str, Any]:
        r = client.post("/restore/url", json={"urls": [url]})
        assert r.status_code == 202, r.text
        task_id = r.json()["data"]["task_id"]

        def ended() -> dict[str, Any] | None:
            got = client.get(f"/restore/{task_id}")
            if got.status_code == 404:
                return None  # the tasks projection has not folded its creation yet
            assert got.status_code == 200, got.text
            task: dict[str, Any] = got.json()["data"]
            return task if task["status"] in ("completed", "failed") else None

        task: dict[str, Any] = d.wait(ended, f"restore {task_id} to end", 120)
        assert task["status"] == "completed", f"{task}{d.logs()}"
        (done,) = task["files"]
        return dict(done)

    first = restore()
    d.wait(lambda: stored(chdb_store, "far-") == want, "the restored readings folded", 120)
    second = restore()
    counts = [json.dumps(f, sort_keys=True) for f in (first, second)]
    assert first["events"] == len(samples), counts
    assert (second["events"], second["skipped"]) == (0, len(samples)), counts
    assert stored(chdb_store, "far-") == want
