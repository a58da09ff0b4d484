"""``millrace`` (the real CLI) for the distributed end-to-end tests, with two pieces of
test scaffolding applied first:

* the store: no ClickHouse server runs here, and chDB opens a data directory in one
  process only, so ``distributed.clickhouse_url`` names the test session's
  :class:`tests.store_server.StoreServer` and ``ClickHouseServerStore`` is replaced by
  :class:`tests.store_server.RemoteStore` (the SQL, deduplication and projections are
  still chDB's);
* librdkafka's mock group coordinator: the two aiokafka workarounds of
  ``tests.runtime.worker_main`` (applied when it is imported).

    python -m tests.distributed_main process --data-dir D --config C
"""

from __future__ import annotations

from typing import Any

import millrace.projections.store.clickhouse as clickhouse
import tests.runtime.worker_main  # noqa: F401 - the mock's group workarounds
from millrace.pipeline.cli.main import main
from tests.store_server import RemoteStore


class StoreServerClient(RemoteStore):
    """``ClickHouseServerStore``'s signature over a RemoteStore."""

    def __init__(self, url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(url)


clickhouse.ClickHouseServerStore = StoreServerClient  # type: ignore[misc,assignment]

if __name__ == "__main__":
    main()
