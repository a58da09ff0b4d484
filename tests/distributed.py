"""Real ``millrace <role>`` processes against librdkafka's mock cluster, for the
distributed tests (one helper: the pause, CLI, end-to-end, archive and operations tests
start their workers through it).

* :class:`Role`: one ``millrace <role>`` subprocess, its output in a file;
  ``wait_for_line`` waits for a line of it.
* :class:`Deployment` (fixture ``deployment``): roles on one topic prefix, sharing the
  test session's chDB through ``tests/store_server.py`` (``tests/distributed_main.py``
  runs the CLI with that store), all stopped when the test ends.
* Kafka look-ups: :func:`publish`, :func:`group_progress`, :func:`until_folded` (the
  processing group's commits reach the log's end).
* :func:`readings_sum`: ``millrace sql`` over a worker's own chDB data directory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.log.kafka import KafkaEventLog, KafkaLogConfig
from millrace.pipeline.topics import TELEMETRY
from millrace.projections.store.chdb import ChdbStore
from tests.kafka_mock import MockKafkaCluster, MockKafkaError
from tests.store_server import StoreServer

ROOT = Path(__file__).resolve().parents[1]
KEY = "distributed-e2e-admin-key-0123456789"
CLI = "millrace.pipeline.cli.main"
#: the CLI with the session's chDB served as the ClickHouse server
CLI_ON_SESSION_STORE = "tests.distributed_main"


def kafka_env(bootstrap: str, prefix: str, **more: str) -> dict[str, str]:
    """This environment on ``bootstrap`` and topic ``prefix``, without a ClickHouse URL
    unless ``more`` gives one."""
    env = {**os.environ, "MILLRACE_KAFKA_BOOTSTRAP": bootstrap, "MILLRACE_TOPIC_PREFIX": prefix}
    env.pop("MILLRACE_CLICKHOUSE_URL", None)
    env.pop("MILLRACE_CLICKHOUSE_CLUSTER", None)
    return {**env, **more}


class Role:
    """One ``millrace <role>`` process (``python -m module *args``), its output in
    ``logs/<name>.log``."""

    def __init__(
        self, name: str, args: list[Any], env: dict[str, str], logs: Path, module: str = CLI
    ) -> None:
        self.name = name
        self.stopped = False
        self.log = logs / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, *map(str, args)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def leads(self, stage: str) -> bool:
        """It has led ``stage`` (a term started at some point)."""
        return f"{stage}: leader, stage started" in self.output()

    def leading(self, stage: str) -> bool:
        """Its last word on ``stage`` is a term started, not leadership lost (a lease
        may lapse on a loaded machine: leadership then moves without a death)."""
        out = self.output()
        return out.rfind(f"{stage}: leader, stage started") > out.rfind(f"{stage}: leadership lost")

    def alive(self) -> None:
        """Fails the test, with the output, when the process has exited."""
        assert self.proc.poll() is None, (
            f"{self.name} exited {self.proc.returncode}: {self.output()[-3000:]}"
        )

    def wait_for_line(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            self.alive()
            assert time.monotonic() < deadline, f"no {text!r}: {self.output()[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> int:
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def stop_cleanly(self) -> None:
        """Stops it and asserts it exited 0."""
        assert self.stop() == 0, self.output()[-3000:]


# -- Kafka look-ups ---------------------------------------------------------------------


def _log(bootstrap: str, prefix: str) -> KafkaEventLog:
    return KafkaEventLog(KafkaLogConfig(bootstrap_servers=bootstrap, topic_prefix=prefix))


async def publish(bootstrap: str, prefix: str, topic: str, events: list[Any]) -> None:
    """Appends ``(key, event)`` pairs to ``topic``."""
    from millrace.pipeline.publisher import LogPublisher

    log = _log(bootstrap, prefix)
    await log.start()
    try:
        await LogPublisher(log).publish(topic, events)
    finally:
        await log.close()


async def group_progress(bootstrap: str, prefix: str, topic: str = TELEMETRY) -> tuple[int, int]:
    """The processing group's committed offsets and the end offsets of ``topic``, each
    summed over its partitions."""
    from millrace.pipeline.runtime.faust_runtime import FaustRuntimeConfig

    group = FaustRuntimeConfig(bootstrap=bootstrap).consumer_name
    log = _log(bootstrap, prefix)
    await log.start((topic,))
    try:
        done = end = 0
        for p in range(log.partitions(topic)):
            done += await log.committed(group, TopicPartition(topic, p)) or 0
            end += (await log.offsets(topic, p))[1]
        return done, end
    finally:
        await log.close()


def committed_records(bootstrap: str, prefix: str) -> int:
    """Telemetry records the processing group has committed."""
    return asyncio.run(group_progress(bootstrap, prefix))[0]


def until_folded(bootstrap: str, prefix: str, role: Role, timeout: float = 120) -> None:
    """Until the worker's group committed every telemetry record (its Kafka commit
    never passes the sink's position, ``pipeline.runtime.faust_runtime``), instead of
    a fixed wait long enough for a slow start-up."""
    deadline = time.monotonic() + timeout
    while True:
        done, end = asyncio.run(group_progress(bootstrap, prefix))
        if done == end:
            return
        role.alive()
        assert time.monotonic() < deadline, f"{end - done} never folded: {role.output()[-3000:]}"
        time.sleep(0.2)


def readings_sum(data_dir: Path) -> str:
    """``count,sum`` of the readings in a worker's chDB (``millrace sql``; the
    worker must have stopped: chDB opens a data directory in one process)."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            CLI,
            "sql",
            "SELECT count(), sum(value) FROM millrace.readings",
            "--data-dir",
            str(data_dir),
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()[1]


# -- a deployment on the session's store ------------------------------------------------


class Deployment:
    """The roles of one test, on one topic prefix, one store and one log directory."""

    def __init__(self, bootstrap: str, store_url: str, tmp: Path) -> None:
        self.tmp = tmp
        self.prefix = f"d{uuid.uuid4().hex[:8]}-"
        self.bootstrap = bootstrap
        self.env = kafka_env(
            bootstrap, self.prefix, MILLRACE_CLICKHOUSE_URL=store_url, MILLRACE_API_KEY=KEY
        )
        self.roles: list[Role] = []

    def start(self, name: str, role: str, config: str, env: dict[str, str] | None = None) -> Role:
        """``millrace <role>`` with ``config`` (YAML after ``data_dir``); ``env`` adds to
        the deployment's environment."""
        data = self.tmp / name
        data.mkdir()
        path = self.tmp / f"{name}.yaml"
        path.write_text(f"data_dir: {data}\n{config}")
        args = [role, "--config", str(path)]
        if role == "process":
            args += ["--data-dir", str(data)]
        r = Role(name, args, {**self.env, **(env or {})}, self.tmp, module=CLI_ON_SESSION_STORE)
        self.roles.append(r)
        return r

    def logs(self) -> str:
        return "".join(f"\n--- {r.name}\n{r.output()[-3000:]}" for r in self.roles)

    def wait(self, cond: Any, what: str, timeout: float, detail: Any = None) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got = cond()
            if got:
                return got
            for r in self.roles:
                if not r.stopped and r.proc.poll() not in (None, -signal.SIGKILL):
                    pytest.fail(f"{r.name} exited {r.proc.returncode}{self.logs()}")
            if time.monotonic() > deadline:
                more = f" ({detail()})" if detail is not None else ""
                pytest.fail(f"timed out waiting for {what}{more}{self.logs()}")
            time.sleep(0.25)

    def stop_all(self) -> None:
        for r in reversed(self.roles):
            r.stop()

    @contextmanager
    def api(self, port: int, timeout: float = 150) -> Iterator[httpx.Client]:
        """A client of the ``millrace api`` role on ``port`` (``/api/v1``, the admin
        key), once its ``/status`` answers."""
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}/api/v1",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=timeout,
        ) as client:

            def up() -> bool:
                try:
                    return client.get("/status").status_code == 200
                except httpx.TransportError:
                    return False

            self.wait(up, "the API", 90)
            yield client


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A mock cluster of the module's own: the session's carries other tests' groups."""
    try:
        c = MockKafkaCluster().start()
    except MockKafkaError as exc:
        pytest.skip(f"mock Kafka cluster unavailable: {exc}")
    try:
        yield c.bootstrap
    finally:
        c.stop()


@pytest.fixture
def deployment(cluster: str, store: ChdbStore, tmp_path: Path) -> Iterator[Deployment]:
    # a checkpoint is not a projection (``store`` keeps them): another test's alarm
    # runner positions would be this deployment's
    store.execute("TRUNCATE TABLE IF EXISTS millrace.checkpoints")
    with StoreServer(store) as server:
        d = Deployment(cluster, server.url, tmp_path)
        try:
            yield d
        finally:
            d.stop_all()


def rows(store: ChdbStore, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in store.execute(sql).rows]
