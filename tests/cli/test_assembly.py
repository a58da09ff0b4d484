"""Both deployments build the same stages for the same roles (``pipeline.cli.assembly``).

The adapters are constructed, never connected: the Kafka log and the ClickHouse store
point at a port nothing listens on, and building the stages must not touch them.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from millrace.pipeline.cli.assembly import (
    ROLES,
    Adapters,
    Assembly,
    Purpose,
    Role,
    build_stages,
    distributed_adapters,
)
from millrace.pipeline.cli.config import MillraceConfig
from millrace.pipeline.log.kafka import KafkaEventLog
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.runtime.stage import Stage
from millrace.projections.store.base import ProjectionStore
from millrace.projections.store.chdb import ChdbStore
from millrace.projections.store.clickhouse import ClickHouseServerStore


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def config(tmp_path: Path) -> MillraceConfig:
    port = _closed_port()
    return MillraceConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "simulator": {"devices": 2, "signals": 2},
            "distributed": {
                "kafka_bootstrap": f"127.0.0.1:{port}",
                "clickhouse_url": f"clickhouse://default@127.0.0.1:{port}/default",
            },
        }
    )


@pytest.fixture
def embedded(config: MillraceConfig, chdb_store: ChdbStore) -> Adapters:
    """``millrace run``'s adapters; chDB on the session's shared directory (chDB binds
    one directory per process, see tests/conftest.py)."""

    def stores(purpose: Purpose) -> ProjectionStore:
        return ChdbStore(chdb_store.path)

    return Adapters(LocalEventLog(Path(config.data_dir) / "log", config.log), stores)


SINGLETONS = {"alarms", "alarm-rule-seeding", "identity-watch", "tasks"}
ROLE_SETS: list[tuple[Role, ...]] = [("connect",), ("process",), ("api",), ROLES]


def _names(stages: list[Stage]) -> set[str]:
    return {s.name for s in stages}


@pytest.mark.parametrize("roles", ROLE_SETS, ids=lambda r: "+".join(r))
def test_both_deployments_build_the_same_stages_for_the_same_roles(
    roles: tuple[Role, ...], config: MillraceConfig, embedded: Adapters
) -> None:
    distributed = distributed_adapters(config, store="required")
    assert isinstance(distributed.log, KafkaEventLog)
    one, local_stages = build_stages(roles, embedded, config)
    other, kafka_stages = build_stages(roles, distributed, config)
    try:
        # the local log's upkeep is its adapter's own stage; Kafka brings none
        assert _names(embedded.stages()) == {"log-upkeep"}
        assert distributed.stages() == []
        assert _names(local_stages) - {"log-upkeep"} == _names(kafka_stages)
        # nothing was connected: the ClickHouse pools are empty, Kafka not started
        for store in other._stores.values():
            assert isinstance(store, ClickHouseServerStore)
            assert store._all == []
        assert not distributed.log._started
        if "process" in roles:
            # asyncio in-process for millrace run, a faust app for millrace process
            assert one.runtime is not None and one.faust_app is None
            assert other.runtime is None and other.faust_app is not None
    finally:
        one.close()
        other.close()


def test_stage_names_of_each_role(config: MillraceConfig, embedded: Adapters) -> None:
    expected = {
        "process": {
            "runtime",
            "alarms",
            "alarm-rule-seeding",
            "identity-watch",
            "tasks",
            "pause-follower",
            "gc-policy",
            "runner-heartbeat",
        },
        "api": {"stream-tail", "api-server"},
        "connect": {
            "runner-heartbeat",
            "connector-manager",
            "services",
            "command-router",
            "connector-control",
        },
    }
    for role, names in expected.items():
        assembly, stages = build_stages([role], embedded, config)  # type: ignore[list-item]
        try:
            # every process follows the runtime settings (log level everywhere)
            assert _names(stages) == names | {"log-upkeep", "config-follower"}
        finally:
            assembly.close()
    everything, stages = build_stages(ROLES, embedded, config)
    try:
        # one heartbeat; the route controls the connectors of its own process
        assert [s.name for s in stages].count("runner-heartbeat") == 1
        assert [s.name for s in stages].count("config-follower") == 1  # applied once
        assert _names(stages) == set().union(*expected.values()) - {"connector-control"} | {
            "log-upkeep",
            "config-follower",
        }
        # the GC policy starts after everything else has built what it keeps; then the
        # API stops first, the processor runtime last
        assert [s.name for s in stages[-2:]] == ["api-server", "gc-policy"]
        # the settings on the log are in force first; the pause in force is read
        # before the runtime folds (a restart while paused)
        assert [s.name for s in stages[:3]] == ["config-follower", "pause-follower", "runtime"]
    finally:
        everything.close()


def test_singleton_stages_are_wrapped_in_either_deployment(
    config: MillraceConfig, embedded: Adapters
) -> None:
    wrapped: list[str] = []

    def wrap(stage: Stage) -> Stage:
        wrapped.append(stage.name)
        return stage

    for adapters in (embedded, distributed_adapters(config, store="chdb")):
        wrapped.clear()
        assembly = Assembly(config, adapters, wrap_singleton=wrap)
        try:
            stages = assembly.build(ROLES)
            assert set(wrapped) == SINGLETONS
            assert {s.name for s in stages if s.singleton} == SINGLETONS
        finally:
            assembly.close()


def test_unknown_role_is_refused(config: MillraceConfig, embedded: Adapters) -> None:
    from millrace.pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown role"):
        Assembly(config, embedded).build(["everything"])  # type: ignore[list-item]


def test_connect_without_a_store_publishes_unchecked(config: MillraceConfig) -> None:
    """``millrace connect`` without a ClickHouse URL has no store: it still runs, with
    connector data unchecked (logged); with one, it checks definitions."""
    from millrace.connectors.definitions import DefinitionCheckingPublisher
    from millrace.pipeline.cli.assembly.connect import connector_publisher

    config.distributed.clickhouse_url = None
    bare = Assembly(config, distributed_adapters(config, store="optional"))
    bare.build(["connect"])
    assert not isinstance(connector_publisher(bare), DefinitionCheckingPublisher)
    bare.close()
    config.distributed.clickhouse_url = "clickhouse://default@127.0.0.1:1/default"
    checked = Assembly(config, distributed_adapters(config, store="optional"))
    checked.build(["connect"])
    assert isinstance(connector_publisher(checked), DefinitionCheckingPublisher)
    checked.close()


def test_the_runner_name_comes_from_the_configuration(
    config: MillraceConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes of one role on one host each need their own runner name (under one
    name their heartbeats overwrite each other): ``runner_name`` or MILLRACE_RUNNER_NAME,
    the host name by default; the process role's heartbeat appends ``/process``."""
    from millrace.pipeline.cli.assembly.heartbeat import heartbeat_stage
    from millrace.pipeline.cli.config import ConfigError, load_config

    monkeypatch.setenv("MILLRACE_RUNNER_NAME", "line-2-worker-b")
    named = load_config(None, {("data_dir",): config.data_dir})
    assert named.runner_name == "line-2-worker-b"
    monkeypatch.delenv("MILLRACE_RUNNER_NAME")
    assert load_config(None, {("data_dir",): config.data_dir}).runner_name is None
    for bad in ("two words", "/rooted"):
        monkeypatch.setenv("MILLRACE_RUNNER_NAME", bad)
        with pytest.raises(ConfigError, match="runner_name"):
            load_config(None, {("data_dir",): config.data_dir})
    monkeypatch.delenv("MILLRACE_RUNNER_NAME")

    config.runner_name = "line-2-worker-b"
    asm = Assembly(config, distributed_adapters(config, store="optional"))
    heartbeat_stage(asm)
    assert asm.heartbeat is not None
    assert asm.heartbeat.resource_id == "runner:line-2-worker-b/process"
    asm.close()
    config.runner_name = None
    default = Assembly(config, distributed_adapters(config, store="optional"))
    assert default.runner_name == socket.gethostname()
    default.close()


def test_the_batch_filter_size_comes_from_the_configuration(
    config: MillraceConfig, embedded: Adapters
) -> None:
    """``ingest.batch_filter_mib``: the telemetry fold's Bloom filter per partition."""
    from millrace.pipeline.processors.telemetry import TelemetryProcessor

    config.ingest.batch_filter_mib = 3
    assembly, _ = build_stages(["process"], embedded, config)
    try:
        runtime = assembly.runtime
        folds = [p for p in getattr(runtime, "processors", []) if isinstance(p, TelemetryProcessor)]
        assert [p.ledger.filter_bytes for p in folds] == [3 * 2**20]
    finally:
        assembly.close()
