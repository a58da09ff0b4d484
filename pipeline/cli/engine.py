"""The embedded deployment wired together: log, projections, runtime, connectors, API.

This is the composition root (with ``main``): the only place that imports every
package.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from api.auth import KeyStore
from api.context import ApiSettings, AppContext
from api.limits import RequestLimits
from api.stream import LogTail, StreamHub
from connectors.commissioning import Commissioning
from connectors.definitions import DefinitionCheckingPublisher, cached_definitions
from connectors.manager import ConnectorManager, route_commands
from connectors.simulator import SimulatorConnector
from pipeline.alarms.evaluator import Evaluator
from pipeline.alarms.rules import parse_rule, rule_event
from pipeline.alarms.runner import AlarmRunner
from pipeline.cli.config import MillraceConfig
from pipeline.codec import default_codec
from pipeline.connector import Connector
from pipeline.heartbeat import RunnerHeartbeat
from pipeline.log.local import LocalEventLog
from pipeline.processors.alarms import AlarmProcessor
from pipeline.processors.audit import AuditProcessor
from pipeline.processors.deadletter import DeadLetterProcessor
from pipeline.processors.identity import IdentityProcessor
from pipeline.processors.status import StatusProcessor
from pipeline.processors.telemetry import TelemetryProcessor
from pipeline.publisher import LogPublisher
from pipeline.runtime.embedded import EmbeddedRuntime
from pipeline.runtime.executors import OwnThreads
from pipeline.topics import ALARMS
from projections.alarms import AlarmQueries
from projections.checkpoints import StoreCheckpoints
from projections.migrations import migrate
from projections.registry import RegistryQueries
from projections.store.chdb import (
    ANALYST_SETTINGS,
    PIPELINE_SETTINGS,
    ChdbStore,
    can_renice_threads,
)
from projections.watch import IdentityWatch, WatchSettings
from projections.writer import ProjectionWriter

log = logging.getLogger("millrace")


def _now_us() -> int:
    return time.time_ns() // 1000


def processors() -> list[Any]:
    return [
        TelemetryProcessor(),
        IdentityProcessor(),
        DeadLetterProcessor(),
        AuditProcessor(),
        StatusProcessor(),
        AlarmProcessor(),
    ]


class Engine:
    """One process: the local log, chDB projections, the runtime, connectors, API."""

    def __init__(self, config: MillraceConfig, commissioning: Commissioning | None = None) -> None:
        self.config = config
        data = Path(config.data_dir)
        self.log = LocalEventLog(data / "log", config.log)
        # chDB sessions (projections.store.chdb): the writer's; a pool for API reads;
        # a pool for analyst SQL whose queries give way to the others' and use one
        # thread each, run on threads of its own
        self.write_store = ChdbStore(data / "chdb", settings=PIPELINE_SETTINGS)
        self.read_store = ChdbStore(
            data / "chdb", sessions=config.api.read_sessions, settings=PIPELINE_SETTINGS
        )
        self.analyst_store = ChdbStore(
            data / "chdb", sessions=config.api.sql_sessions, settings=ANALYST_SETTINGS
        )
        self.sql_threads = OwnThreads("millrace-sql", config.api.sql_sessions)
        self.codec = default_codec()
        self.publisher = LogPublisher(self.log, self.codec)
        # live streams (SSE): the hub, fed by a tail of the log's ends
        self.stream_hub = StreamHub(
            max_streams=config.api.stream_max_connections,
            max_streams_per_owner=config.api.stream_max_per_key,
        )
        self.stream_tail = LogTail(self.log, self.codec, self.stream_hub)
        self.runtime = EmbeddedRuntime(
            self.log,
            ProjectionWriter(self.write_store),
            processors(),
            codec=self.codec,
            max_records=config.runtime.max_records,
            idle_sleep_s=config.runtime.idle_sleep_ms / 1000,
        )
        self.connectors: list[Connector] = []
        if config.simulator.devices > 0:
            self.connectors.append(SimulatorConnector(config.simulator))
        self.manager = ConnectorManager(commissioning or Commissioning(), spool_root=data / "spool")
        self.queries = RegistryQueries(self.read_store, config.identities.inactivity_timeout_s)
        self.watch = IdentityWatch(
            self.read_store,
            self.publisher,
            WatchSettings(
                default_inactivity_timeout_s=config.identities.inactivity_timeout_s,
                command_timeout_s=config.identities.command_timeout_s,
            ),
        )
        # this process's heartbeat, under the runner name connectors report
        self.heartbeat = RunnerHeartbeat(self.publisher, socket.gethostname(), 10.0)
        # the alarm runner keeps its checkpoints through a session of its own
        self.alarm_store = ChdbStore(data / "chdb", settings=PIPELINE_SETTINGS)
        self.alarms = AlarmRunner(
            self.log,
            self.publisher,
            StoreCheckpoints(self.alarm_store),
            self.codec,
            Evaluator,
            tick_s=config.alarms.tick_s,
        )
        self.keys = KeyStore(data / "api_keys.json", os.environ.get("MILLRACE_API_KEY") or None)
        self.started_us = time.time_ns() // 1000

    def open(self) -> None:
        Path(self.config.data_dir).mkdir(parents=True, exist_ok=True)
        self.log.open()
        migrate(self.write_store)
        for c in self.connectors:
            c.init()
        if not can_renice_threads() and self.config.api.sql_sessions > 1:
            log.warning(
                "no CAP_SYS_NICE: analyst SQL runs at the pipeline's OS priority; on a "
                "small machine set api.sql_sessions: 1 and api.sql_max_threads: 1, or "
                "grant the capability (docker run --cap-add SYS_NICE)"
            )

    def ensure_admin_key(self) -> str | None:
        """Create an admin key on first start when none exists; return it (once)."""
        if len(self.keys):
            return None
        _, plaintext = self.keys.create("initial admin", "admin")
        return plaintext

    def lag(self) -> int:
        """Records appended to the log that the projections do not hold yet."""
        total = 0
        for tp in self.runtime.topic_partitions():
            _, end = self.log.offsets_sync(tp.topic, tp.partition)
            total += max(0, end - self.runtime.position(tp))
        return total

    def status(self) -> dict[str, Any]:
        stats = asdict(self.runtime.stats)
        return {
            "started_us": self.started_us,
            "lag_records": self.lag(),
            "runtime": stats,
            "alarms": asdict(self.alarms.stats),
            "published": self.publisher.published,
            "connectors": [{"name": c.name, "stats": _connector_stats(c)} for c in self.connectors]
            + self.manager.snapshot(),
        }

    def app_context(self) -> AppContext:
        ing = self.config.ingest
        return AppContext(
            store=self.read_store,
            publisher=self.publisher,
            keys=self.keys,
            settings=ApiSettings(
                max_batch_samples=ing.max_batch_samples,
                max_batch_readings=ing.max_batch_readings,
                limits=RequestLimits.of(self.config.api, ing),
                strict_signals=ing.strict_signals,
                known_signals=frozenset(ing.signals),
                **self.config.api.sql_limits(),
            ),
            status=self.status,
            on_ingest=self.runtime.wake,
            connectors=self.manager.snapshot,
            registry=self.config.identities,
            wait_applied=self.wait_applied,
            stream=self.stream_hub,
            analyst_store=self.analyst_store,
            sql_executor=self.sql_threads.executor,
        )

    async def wait_applied(self, topic: str, timeout_s: float = 5.0) -> bool:
        """Wait until the runtime has processed everything appended to ``topic`` so far
        (read-your-writes for API writes); False after ``timeout_s``."""
        ends = {
            tp: self.log.offsets_sync(tp.topic, tp.partition)[1]
            for tp in self.runtime.topic_partitions()
            if tp.topic == topic
        }
        self.runtime.wake()
        deadline = time.monotonic() + timeout_s
        while any(self.runtime.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def _definitions(self) -> dict[str, Any]:
        defs = await asyncio.to_thread(self.queries.definitions)
        return {name: d["definition"] for name, d in defs.items()}

    async def serve(self, stop: asyncio.Event, with_api: bool = True) -> None:
        """Run connectors, the runtime and (optionally) the API until ``stop``."""
        from api.app import create_app
        from api.server import build_server

        # the loop's default pool (asyncio.to_thread) is left to the API's reads and the
        # engine's small stages: the runtime, the log and analyst SQL have their own
        threads = self.config.api.read_sessions + 4
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(threads, thread_name_prefix="millrace-api")
        )
        runtime_task = asyncio.create_task(self.runtime.run(stop), name="runtime")
        alarms_task = asyncio.create_task(self._alarms(stop), name="alarms")
        heartbeat_task = asyncio.create_task(self.heartbeat.run(stop), name="heartbeat")
        stream_task = asyncio.create_task(self.stream_tail.run(stop), name="stream-tail")
        upkeep_task = asyncio.create_task(self._upkeep(stop), name="log-upkeep")
        watch_task = asyncio.create_task(self.watch.run(stop), name="identity-watch")
        checked = DefinitionCheckingPublisher(self.publisher, cached_definitions(self._definitions))
        for c in self.connectors:
            await c.start(checked)
        await self.manager.start(checked)
        commands_task = asyncio.create_task(
            route_commands(self.log, self.manager, stop, self.publisher), name="commands"
        )
        server = None
        if with_api:
            app = create_app(self.app_context())
            # the engine owns SIGINT/SIGTERM (it stops connectors and the runtime too)
            server = build_server(
                app,
                self.config.api.host,
                self.config.api.port,
                self.config.api.server,
                timeout_graceful_shutdown=5,
            )
            api_task = asyncio.create_task(server.serve(), name="api")
        await stop.wait()
        self.stream_hub.close()  # ends open event streams, or uvicorn waits on them
        if server is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await api_task
        for c in self.connectors:
            await c.stop()
        await self.manager.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(commands_task, 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(alarms_task, 10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(heartbeat_task, 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stream_task, 5)
        for task in (upkeep_task, watch_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # the runtime notices ``stop`` after its current batch
        try:
            await asyncio.wait_for(runtime_task, timeout=30)
        except TimeoutError:
            runtime_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runtime_task

    async def _alarms(self, stop: asyncio.Event) -> None:
        """Run the evaluator; beside it, define the file's alarm rules (new or changed
        ones) — retried until they are, since a file's rule must never be silently
        missing (the runner picks them up from the log whenever they arrive)."""
        definer = asyncio.create_task(self._define_config_rules_until_done(stop))
        try:
            await self.alarms.run(stop)
        finally:
            definer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await definer

    async def _define_config_rules_until_done(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await self.define_config_rules()
                return
            except Exception:  # e.g. the store busy at start: the API still works
                log.exception("alarm rules of the configuration file not defined yet")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)

    async def define_config_rules(self) -> int:
        """Append RULE_DEFINED for each rule of the file that is new or differs from
        the one in force (rules made through the API are left alone); return how many."""
        if not self.config.alarms.rules:
            return 0
        if not await self.wait_applied(ALARMS, timeout_s=60):
            raise TimeoutError("the runtime has not applied the alarms topic yet")
        current, _ = await asyncio.to_thread(AlarmQueries(self.read_store).rules, 10_000, 0)
        in_force = {r["rule_id"]: r["definition"] for r in current}
        events = []
        for rule in self.config.alarms.rules:
            known = in_force.get(rule.id)
            if known is not None and parse_rule(known) == rule:
                continue
            events.append((f"rule:{rule.id}", rule_event(rule, rule.id, _now_us(), "config")))
        await self.publisher.publish(ALARMS, events)
        self.runtime.wake()
        self.alarms.wake()
        return len(events)

    async def _upkeep(self, stop: asyncio.Event) -> None:
        """fsync on the interval policy's clock even when appends stop; retention."""
        cfg = self.config.log
        every_s = cfg.fsync_interval_ms / 1000 if cfg.fsync == "interval" else 1.0
        last_retention = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(every_s)
            try:
                if cfg.fsync == "interval":
                    await self.log.flush_async()
                if time.monotonic() - last_retention >= 60:
                    last_retention = time.monotonic()
                    if cfg.retention_ms is not None or cfg.retention_bytes is not None:
                        await self.log.enforce_retention_async()
            except Exception:  # upkeep must not take the engine down
                log.exception("log upkeep failed")

    async def close(self) -> None:
        await self.log.close()
        self.runtime.close()
        self.sql_threads.shutdown(wait=False, cancel_futures=True)
        self.alarm_store.close()
        self.write_store.close()
        self.read_store.close()
        self.analyst_store.close()


def _connector_stats(c: Connector) -> dict[str, Any]:
    stats = getattr(c, "stats", None)
    if stats is None:
        return {}
    try:
        return asdict(stats)
    except TypeError:
        return dict(vars(stats))


def announce_key(key: str) -> None:
    """Print the first admin key once, to the terminal, never to the log."""
    sys.stdout.write(
        "\nmillrace created an admin API key (shown once, stored hashed):\n\n"
        f"    {key}\n\n"
        "Use it as 'Authorization: Bearer <key>'. Set MILLRACE_API_KEY to choose your own.\n\n"
    )
    sys.stdout.flush()
