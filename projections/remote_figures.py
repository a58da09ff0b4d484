"""What an API process reads from the store about processes it does not run (the
distributed deployment's ``millrace api``): the connector connections and the process
role's runtime figures, both folded from the status topic into
``millrace.resource_states``.

* connections: resource type ``connection`` (resource id ``<protocol>:<name>``, each
  connector's own report), shaped as ``ConnectorManager.snapshot`` shapes them, so
  ``/connectors`` and ``/metrics`` answer alike in both deployments;
* workers: the runner heartbeats of the process role (resource ``runner:<name>``)
  carry the worker's runtime figures in their metrics (``pipeline.heartbeat``); a
  heartbeat older than ``max_age_us`` or saying ``stopped`` is a worker that is gone;
  the one running the archiver carries its health too (``worker["archive"]``, shaped
  as ``Archiver.health()``, ``pipeline.archive.health``).
"""

from __future__ import annotations

from typing import Any

from millrace.pipeline.archive.health import archive_health
from millrace.pipeline.heartbeat import FIGURE_PREFIX
from millrace.projections.store.base import ProjectionStore

_CONNECTIONS = """
SELECT resource_id, service_id, desired_state, current_state, info, runner, ts_us, metrics
FROM millrace.resource_states FINAL
WHERE resource_type = 'connection'
ORDER BY resource_id
"""

_WORKERS = """
SELECT resource_id, runner, ts_us, metrics, info
FROM millrace.resource_states FINAL
WHERE resource_type = 'runner' AND current_state = 'running'
  AND ts_us >= {since:Int64}
  AND length(arrayFilter(k -> startsWith(k, {prefix:String}), mapKeys(metrics))) > 0
ORDER BY resource_id
"""


def stored_connectors(store: ProjectionStore) -> list[dict[str, Any]]:
    """Every connection a connector reported, as ``ConnectorManager.snapshot`` has it."""
    out = []
    for rid, service, desired, current, info, runner, ts, metrics in store.execute(
        _CONNECTIONS
    ).rows:
        protocol, _, name = str(rid).partition(":")
        out.append(
            {
                "name": name,
                "protocol": protocol,
                "resource_id": str(rid),
                "service_id": str(service),
                "desired_state": str(desired),
                "current_state": str(current),
                "info": str(info),
                "runner": str(runner) or None,
                "ts_us": int(ts),
                "metrics": {str(k): float(v) for k, v in dict(metrics or {}).items()},
            }
        )
    return out


def worker_figures(store: ProjectionStore, since_us: int) -> list[dict[str, Any]]:
    """The runtime figures of each process-role worker whose last heartbeat is at or
    after ``since_us`` and running: ``{"runner", "ts_us", "figures": {name: value}}``."""
    rows = store.execute(_WORKERS, {"since": since_us, "prefix": FIGURE_PREFIX}).rows
    out = []
    for _rid, runner, ts, metrics, info in rows:
        figures = {
            str(k)[len(FIGURE_PREFIX) :]: float(v)
            for k, v in dict(metrics or {}).items()
            if str(k).startswith(FIGURE_PREFIX)
        }
        worker: dict[str, Any] = {"runner": str(runner), "ts_us": int(ts), "figures": figures}
        archive = archive_health(figures, str(info or ""))
        if archive is not None:  # the worker whose archiver runs
            worker["archive"] = archive
        out.append(worker)
    return out
