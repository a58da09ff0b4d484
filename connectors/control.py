"""Connector control through the log: how ``POST /api/v1/connectors/{name}/start|stop|
restart`` on ``millrace api`` reaches the connectors of the distributed deployment.

The route's audit event (target_type ``connector``, target_id the connection's name,
action the verb, status ``ok``) is the control event. Every ``millrace connect`` runs
a ``connector-control`` stage, an
:class:`~millrace.pipeline.runtime.control_follow.AuditFollower` of the audit topic
(the mechanism the pipeline pause uses), and applies each such event to its own
manager when it runs a connection of that name (:meth:`ConnectorManager.control`);
the others ignore it. In ``millrace run`` the API's process runs the manager: the route
acts at once, and no follower runs (it would act twice).

A connect process follows from the log's end: one started later runs its connections
as its file and services say, as a restarted ``millrace run`` does (a stop lasts until
the process restarts; disabling the service is what lasts).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from millrace.connectors.manager import ConnectorManager

log = logging.getLogger("millrace.connectors")

ACTIONS = ("start", "stop", "restart")
TARGET_TYPE = "connector"


def is_connector_control(event: dict[str, Any]) -> bool:
    """An audited, successful start/stop/restart of a connector."""
    return (
        event.get("target_type") == TARGET_TYPE
        and event.get("status") == "ok"
        and event.get("action") in ACTIONS
    )


def apply_control(manager: ConnectorManager) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """Applies a control event to ``manager`` (nothing when it runs no such connection)."""

    async def apply(event: dict[str, Any]) -> None:
        name, action = str(event["target_id"]), str(event["action"])
        after = await manager.control(name, action)
        if after is not None:
            log.info(
                "connector %s: %s through the log (by %s); desired state %s",
                name,
                action,
                event.get("actor"),
                after["desired_state"],
            )

    return apply
