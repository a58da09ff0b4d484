"""The ``api`` role's stages: the live-stream tail and the API server, and the API's
context (``AppContext``) built from the assembly's parts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from millrace.api.auth import KeyStore
from millrace.api.context import ApiSettings, AppContext
from millrace.api.limits import RequestLimits
from millrace.api.serve import ApiServerStage
from millrace.api.stream import LogTail, StreamHub
from millrace.api.users.access import (
    AccessControl,
    AccessSettings,
    announce_admin_password,
)
from millrace.pipeline.cli.assembly.operations import operations
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.runtime.executors import OwnThreads
from millrace.pipeline.runtime.stage import LoopStage, Stage

if TYPE_CHECKING:
    from millrace.pipeline.cli.assembly.facade import Assembly


def stream_stage(asm: Assembly) -> Stage:
    """The tail that feeds live streams; sets the assembly's stream hub and tail."""
    api = asm.config.api
    asm.stream_hub = StreamHub(
        max_streams=api.stream_max_connections, max_streams_per_owner=api.stream_max_per_key
    )
    # Kafka offset requests cross the network: poll its ends less often
    poll_s = 0.1 if isinstance(asm.log, LocalEventLog) else 0.5
    # decode once: with the runtime in this process, the events it decoded
    feed = asm.runtime.feed if asm.runtime is not None else None
    asm.stream_tail = tail = LogTail(asm.log, asm.codec, asm.stream_hub, poll_s=poll_s, feed=feed)
    return LoopStage(
        "stream-tail", tail.run, stop_timeout_s=5.0, health=lambda: {"skipped": tail.skipped}
    )


def api_stage(asm: Assembly) -> Stage:
    """The HTTP server; its app is created at start from :func:`app_context`, with the
    web console at ``/`` (:mod:`millrace.api.console`; its lifespan starts NiceGUI)."""
    from millrace.api.app import create_app
    from millrace.api.console.mount import console_app

    hub = asm.stream_hub
    return ApiServerStage(
        lambda: console_app(
            create_app(app_context(asm)),
            asm.config.data_dir,
            preload=asm.config.api.console_preload,
        ),
        asm.config.api.host,
        asm.config.api.port,
        asm.config.api.server,
        on_stop=hub.close if hub is not None else None,  # ends open event streams
        timeout_graceful_shutdown=5,
        lifespan="on",
    )


def key_store(asm: Assembly) -> KeyStore:
    """The API keys in ``data_dir`` (opened once)."""
    if asm.keys is None:
        data = Path(asm.config.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        asm.keys = KeyStore(data / "api_keys.json", os.environ.get("MILLRACE_API_KEY") or None)
    return asm.keys


def access_control(asm: Assembly) -> AccessControl:
    """Users, sessions, signing keys and roles in ``data_dir`` (opened once); the first
    start creates the ``admin`` user (``MILLRACE_ADMIN_PASSWORD``, or a password printed
    once)."""
    if asm.access is None:
        keys = key_store(asm)
        asm.access = AccessControl(
            keys,
            Path(asm.config.data_dir),
            settings=AccessSettings.of(asm.config.api.auth),
        )
        generated = asm.access.first_admin(os.environ.get("MILLRACE_ADMIN_PASSWORD") or None)
        if generated is not None:
            announce_admin_password(generated)
    return asm.access


def app_context(asm: Assembly) -> AppContext:
    """The API's view of this process: its stores, publisher, keys, limits and parts."""
    cfg = asm.config
    ing = cfg.ingest
    asm.sql_threads = asm.sql_threads or OwnThreads("millrace-sql", cfg.api.sql_sessions)
    manager = asm.manager
    ctx = AppContext(
        store=asm.store("read"),
        publisher=asm.publisher,
        keys=key_store(asm),
        access=access_control(asm),
        settings=ApiSettings(
            max_batch_samples=ing.max_batch_samples,
            max_batch_readings=ing.max_batch_readings,
            limits=RequestLimits.of(cfg.api, ing),
            strict_signals=ing.strict_signals,
            known_signals=frozenset(ing.signals),
            idempotency_window_s=ing.idempotency_window_s,
            restore_url_prefixes=tuple(cfg.restore.allowed_url_prefixes),
            **cfg.api.sql_limits(),
        ),
        status=asm.status,
        on_ingest=asm.runtime.wake if asm.runtime is not None else (lambda: None),
        connectors=manager.snapshot if manager is not None else list,
        connector_control=manager.control if manager is not None else None,
        registry=cfg.identities,
        wait_applied=asm.wait_applied,
        stream=asm.stream_hub,
        analyst_store=asm.store("analyst"),
        sql_executor=asm.sql_threads.executor,
        archive=asm.archive_store(),
    )
    ctx.ops = operations(asm, ctx)  # system info, health, metrics, logs, pause, config
    return ctx
