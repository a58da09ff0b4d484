"""Runtime settings through the log: a stage that follows ``PATCH /api/v1/config``.

``PATCH /api/v1/config`` is audited: for each setting it changes, the API appends an
AuditEvent (action ``update``, target_type ``setting``, target_id the setting's name,
``after`` ``{"<name>": value}``, status ``ok``) to the ``audit`` topic. That event is
the one source of a setting's value: every process runs a :class:`ConfigFollower`
(the ``config-follower`` stage, first of its stages) that follows the audit topic with
the one :class:`~millrace.pipeline.runtime.control_follow.AuditFollower` and applies
the settings this process runs (the identity watch's timeouts in ``millrace process``,
the API's default inactivity timeout, every process's log level). No channel of its
own: the trail that says who changed what is also what the processes act on, so the
two cannot disagree.

At start the follower applies the last change of each setting already on the log over
the configuration file's value (read backwards from the log's end), before the stages
after it start: a restarted ``millrace run`` or a new ``millrace process`` runs with
the patched values.

Applied once: the process that served the PATCH applies the change at once (its
answer shows it); the follower then sees the event and finds the value already there.
Each change carries a time (:meth:`RuntimeSetting.change`): an event older than the
value in force (another PATCH of the same setting served here since) is not applied,
so two PATCHes in a row never flip a setting back and forth.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from millrace.pipeline.codec import AvroCodec, default_codec
from millrace.pipeline.log.base import EventLog
from millrace.pipeline.runtime.control_follow import AuditFollower
from millrace.pipeline.runtime.stage import Stage

log = logging.getLogger("millrace.runtime.config")

#: the audit target type of a runtime setting's change
SETTING = "setting"


@dataclass
class RuntimeSetting:
    """A setting ``PATCH /config`` may change while running."""

    get: Callable[[], Any]
    set: Callable[[Any], None]
    #: validates and converts a new value (raises ValueError naming the problem)
    parse: Callable[[Any], Any]
    description: str = ""
    #: when the value in force was changed (µs; 0: the configuration file's)
    changed_us: int = 0

    def change(self, value: Any, at_us: int) -> bool:
        """Set ``value`` changed at ``at_us``, unless a later change is in force or the
        value is already the one in force; True if it set it."""
        if at_us < self.changed_us:
            return False
        self.changed_us = at_us
        if self.get() == value:
            return False
        self.set(value)
        return True


def is_setting_change(event: Mapping[str, Any]) -> bool:
    """Whether an audit event is a runtime setting's applied change."""
    return (
        event.get("target_type") == SETTING
        and event.get("action") == "update"
        and event.get("status") == "ok"
    )


def setting_value(event: Mapping[str, Any]) -> Any:
    """The new value an audit event of a setting's change carries (KeyError, ValueError
    when it carries none)."""
    return json.loads(str(event["after"]))[str(event["target_id"])]


class ConfigFollower(Stage):
    """The ``config-follower`` stage: applies the settings of this process from the
    audit topic, the last change of each already on the log first (in :meth:`start`)."""

    name = "config-follower"

    def __init__(
        self,
        event_log: EventLog,
        settings: Mapping[str, RuntimeSetting],
        codec: AvroCodec | None = None,
        poll_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.applied = 0
        self.follower = AuditFollower(
            event_log,
            is_setting_change,
            self._on_event,
            codec or default_codec(),
            poll_s=poll_s,
            resume_last=True,
            last_key=lambda e: str(e.get("target_id")),
            last_keys=settings.keys(),
        )

    async def start(self) -> None:
        """Applies the last change of each setting on the log (over the file's)."""
        await self.follower.start()

    async def poll(self) -> int:
        """Read what was appended since the last poll; return the records read."""
        return await self.follower.poll()

    def _on_event(self, event: dict[str, Any]) -> None:
        name = str(event.get("target_id"))
        setting = self.settings.get(name)
        if setting is None:
            return  # not a setting of this build (a newer process wrote it)
        try:
            value = setting.parse(setting_value(event))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("setting %s not applied from the log: %s", name, exc)
            return
        if setting.change(value, int(event.get("ts_us") or 0)):
            self.applied += 1
            log.info("setting %s = %r (changed by %s)", name, value, event.get("actor"))

    async def run(self, stop: asyncio.Event) -> None:
        await self.follower.run(stop)

    def health(self) -> dict[str, Any]:
        return {"applied": self.applied, "handled": self.follower.handled}
