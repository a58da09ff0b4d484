"""The runtime settings of one process and its ``config-follower`` stage
(``pipeline.runtime.config_follow``): what ``PATCH /api/v1/config`` changes, applied in
every process from the audit topic, the last changes on the log first.

Every process runs the stage (every one has a log level), once, first of its stages:
the values on the log are in force before the identity watch ticks or the API
answers. The settings act on this process's parts: the configuration model (what
``GET /config`` shows and the API's context reads when it is built), the identity
watch where ``process`` runs, the local log's retention (``millrace run``; Kafka's is
the brokers') and what :func:`on_change` adds (the API's queries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from millrace.api.logring import LEVELS
from millrace.pipeline.log.local import LocalEventLog
from millrace.pipeline.runtime.config_follow import ConfigFollower, RuntimeSetting

if TYPE_CHECKING:
    from millrace.pipeline.cli.assembly.facade import Assembly


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("a positive integer (seconds)")
    return value


def _level(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in LEVELS:
        raise ValueError(f"one of {', '.join(LEVELS)}")
    return value.upper()


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("a whole number >= 0, or null (no limit)")
    return value


def _retention(asm: Assembly, log: LocalEventLog) -> dict[str, RuntimeSetting]:
    """The local log's retention (``millrace run``; Kafka's is the brokers')."""

    def setter(field: str) -> Callable[[int | None], None]:
        def set_(v: int | None) -> None:
            retention = {
                "retention_ms": log.config.retention_ms,
                "retention_bytes": log.config.retention_bytes,
                field: v,
            }
            log.set_retention(**retention)
            asm.config.log = log.config  # what GET /config shows

        return set_

    return {
        f"log.{field}": RuntimeSetting(
            partial(lambda f: getattr(log.config, f), field),
            setter(field),
            _limit,
            what,
        )
        for field, what in (
            ("retention_ms", "log segments older than this are deleted (once archived)"),
            ("retention_bytes", "per partition, the oldest segments above this are deleted"),
        )
    }


def runtime_settings(asm: Assembly) -> dict[str, RuntimeSetting]:
    """The settings of this process (made once per assembly)."""
    if asm.settings:
        return asm.settings
    reg = asm.config.identities
    millrace_log = logging.getLogger("millrace")

    # the identity watch reads its settings at every tick
    def set_inactivity(v: int) -> None:
        reg.inactivity_timeout_s = v
        if asm.watch is not None:
            asm.watch.settings.default_inactivity_timeout_s = v

    def set_command(v: int) -> None:
        reg.command_timeout_s = v
        if asm.watch is not None:
            asm.watch.settings.command_timeout_s = v

    asm.settings = {
        "log_level": RuntimeSetting(
            lambda: logging.getLevelName(millrace_log.getEffectiveLevel()),
            millrace_log.setLevel,
            _level,
            "level of millrace's loggers",
        ),
        "identities.inactivity_timeout_s": RuntimeSetting(
            lambda: reg.inactivity_timeout_s,
            set_inactivity,
            _positive_int,
            "no telemetry for this long: offline (identities without their own)",
        ),
        "identities.command_timeout_s": RuntimeSetting(
            lambda: reg.command_timeout_s,
            set_command,
            _positive_int,
            "a set value not reported back in time: STATE_TIMED_OUT",
        ),
    }
    if isinstance(asm.log, LocalEventLog):
        asm.settings.update(_retention(asm, asm.log))
    return asm.settings


def on_change(setting: RuntimeSetting, also: Any) -> None:
    """``also(value)`` after each change of ``setting`` (a part made after the
    settings, e.g. the API's queries)."""
    inner = setting.set

    def both(value: Any) -> None:
        inner(value)
        also(value)

    setting.set = both


def config_stage(asm: Assembly) -> ConfigFollower:
    """The ``config-follower`` stage of this process."""
    return ConfigFollower(asm.log, runtime_settings(asm), asm.codec)
