"""``millrace`` (the real CLI) for the distributed end-to-end tests, with two pieces of
test scaffolding applied first:

* the store: no ClickHouse server runs here, and chDB opens a data directory in one
  process only, so ``distributed.clickhouse_url`` names the test session's
  :class:`tests.store_server.StoreServer` and ``ClickHouseServerStore`` is replaced by
  :class:`tests.store_server.RemoteStore` (the SQL, deduplication and projections are
  still chDB's);
* librdkafka's mock group coordinator: the two aiokafka workarounds of
  ``tests.runtime.worker_main`` (applied when it is imported), and on request a shorter
  faust session (``MILLRACE_TEST_FAUST_SESSION_S``, see ``_short_faust_session``).

    python -m tests.distributed_main process --data-dir D --config C
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import millrace.pipeline.runtime.faust_runtime as faust_runtime
import millrace.projections.store.clickhouse as clickhouse
import tests.runtime.worker_main  # noqa: F401 - the mock's group workarounds
from millrace.pipeline.cli.main import main
from tests.store_server import RemoteStore


class StoreServerClient(RemoteStore):
    """``ClickHouseServerStore``'s signature over a RemoteStore."""

    def __init__(self, url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(url)


clickhouse.ClickHouseServerStore = StoreServerClient  # type: ignore[misc,assignment]


def _short_faust_session(seconds: float) -> None:
    """The faust workers' group session (10 s in millrace) set to ``seconds``: the mock
    holds every rebalance of a formed group open for the session less 1 s, and expires
    a SIGKILLed worker only after a session, so a test that kills a worker waits on it
    twice (``MILLRACE_TEST_FAUST_SESSION_S``; tests/distributed.py ``Deployment.start``)."""

    @dataclass(frozen=True)
    class ShortSession(faust_runtime.FaustRuntimeConfig):
        session_timeout_s: float = seconds

    faust_runtime.FaustRuntimeConfig = ShortSession  # type: ignore[misc]


if os.environ.get("MILLRACE_TEST_FAUST_SESSION_S"):
    _short_faust_session(float(os.environ["MILLRACE_TEST_FAUST_SESSION_S"]))

if __name__ == "__main__":
    main()
