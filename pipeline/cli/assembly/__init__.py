"""One assembly for both deployments: the stages of a set of roles, built from the
chosen adapters. Part of the composition root (it may import every package).

Roles and their stages (``pipeline.runtime.stage``), in start order; they stop in
reverse order. Every process starts with ``config-follower`` (the runtime settings
``PATCH /api/v1/config`` changes, applied from the audit topic, the last ones on the
log first; ``settings``).

``process``
    ``pause-follower`` (pause/resume events from the audit topic, every member; first,
    so the pause in force is read before anything folds), ``runtime`` (asyncio:
    ``EmbeddedRuntime``; faust: a faust worker app), ``alarms`` (the alarm runner),
    ``alarm-rule-seeding`` (the file's rules), ``identity-watch``, ``tasks`` (the task
    runner: restores, replays) and ``archiver`` (only with ``archive.url``; it runs the
    ``archive-flush`` tasks). The
    alarm runner, rule seeding, identity watch, tasks and archiver are *singleton*
    stages: the assembly passes them to ``wrap_singleton`` (identity unless the
    deployment gives a leadership wrapper). ``gc-policy`` (``pipeline.runtime.gc_policy``)
    is appended after every role's stages wherever ``process`` runs.
``api``
    ``stream-tail`` (live streams) and ``api-server``.
``connect``
    ``connector-manager`` (the commissioning file's connections, the ``simulator:``
    section among them as a ``protocol: simulator`` connection), ``services`` (follows
    the ``services`` topic: the file's service, installed at start, and those
    installed through the API, applied to the manager at runtime) and
    ``command-router``; without the ``api`` role in the process (``millrace connect``),
    ``connector-control`` (start/stop/restart events from the audit topic,
    ``connectors.control``). Connector data is checked against the resource definitions
    in the store (``DefinitionCheckingPublisher``) whenever the role has a store: always
    in ``millrace run``, with ``distributed.clickhouse_url`` in ``millrace connect``.
``connect`` or ``process``
    ``runner-heartbeat`` (this process's sign of life, with the runtime's figures where
    ``process`` runs; ``heartbeat``), once per process.

Adapters add stages of their own: the local log its ``log-upkeep``.
``millrace run`` = every role, local log, chDB, asyncio runtime, one process;
``millrace connect`` / ``process`` / ``api`` = one role each on Kafka and a ClickHouse
server (``process`` also on chDB in ``data_dir``), faust for ``process``.

Modules: ``adapters`` (the log, stores and runtime a deployment chooses), ``process``,
``connect``, ``api`` and ``heartbeat`` (each role's stage builders; a new stage of a
role goes in its module), ``settings`` (the runtime settings and their follower),
``facade`` (``Assembly``: the parts, the stores,
read-your-writes, status).
"""

from millrace.pipeline.cli.assembly.adapters import (
    CONSUMERS,
    ROLES,
    Adapters,
    Purpose,
    Role,
    StoreFactory,
    chdb_stores,
    clickhouse_stores,
    distributed_adapters,
    kafka_log,
    local_adapters,
)
from millrace.pipeline.cli.assembly.facade import Assembly, build_stages

__all__ = [
    "CONSUMERS",
    "ROLES",
    "Adapters",
    "Assembly",
    "Purpose",
    "Role",
    "StoreFactory",
    "build_stages",
    "chdb_stores",
    "clickhouse_stores",
    "distributed_adapters",
    "kafka_log",
    "local_adapters",
]
