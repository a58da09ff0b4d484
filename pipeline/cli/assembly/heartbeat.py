"""The ``runner-heartbeat`` stage: one per process that runs the ``connect`` or the
``process`` role, its sign of life on the status topic (``pipeline.heartbeat``).

Where the process role runs, the heartbeat carries its runtime figures (records and
batches folded, readings, dead letters, errors, paused; the alarm runner's events where
it leads; the archiver's health where it runs, ``pipeline.archive.health``), so that an
API process of the distributed deployment can show them (``api.remote``). Runner
names: the process's (``runner_name`` in the configuration, ``MILLRACE_RUNNER_NAME``; the
host name by default); a process running the process role without connectors is
``<name>/process``, so that a ``millrace connect`` and a ``millrace process`` on one host
stay two runners. Two processes of one role on one host need a name each: under one name
their heartbeats overwrite each other and ``millrace api`` sums the figures of only one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from millrace.pipeline.heartbeat import RunnerHeartbeat
from millrace.pipeline.runtime.stage import LoopStage, Stage

if TYPE_CHECKING:
    from millrace.pipeline.cli.assembly.facade import Assembly

INTERVAL_S = 10.0


def runtime_figures(asm: Assembly) -> dict[str, float]:
    """The process role's counters in this process (empty where it does not run)."""
    figures: dict[str, float] = {}
    if asm.runtime is not None:
        st = asm.runtime.stats
        figures = {
            "records": st.records,
            "batches": st.batches,
            "readings": st.rows.get("readings", 0),
            "deadletters": st.deadletters,
            "errors": st.errors,
            "paused": float(asm.runtime.suspended),
        }
    elif asm.faust_app is not None:
        handler = asm.faust_app.millrace_handler()
        figures = {
            "records": handler.records,
            "batches": handler.batches,
            "readings": handler.rows.get("readings", 0),
            "deadletters": handler.deadletters,
            "errors": handler.errors,
            "paused": float(not handler.gate.is_set()),
        }
    if asm.alarms is not None and figures:
        figures["alarm_events"] = asm.alarms.stats.events
    archive = archive_here(asm)
    if archive is not None:
        # the archive's modules (fsspec, fastavro) only where an archiver runs
        from millrace.pipeline.archive.health import archive_figures

        figures |= archive_figures(archive)
    return figures


def archive_here(asm: Assembly) -> dict[str, Any] | None:
    """The archiver's health where it runs in this process (its singleton leads)."""
    if asm.archiver is None:
        return None
    wrapped = next((s for s in asm.stages if s.name == asm.archiver.name), None)
    if wrapped is not None and not getattr(wrapped, "running", True):
        return None
    return asm.archiver.health()


def heartbeat_info(asm: Assembly) -> str:
    """The heartbeat's text: the archiver's store and last error where it runs here."""
    archive = archive_here(asm)
    if archive is None:
        return ""
    from millrace.pipeline.archive.health import archive_info

    return archive_info(archive)


def heartbeat_stage(asm: Assembly) -> Stage:
    """The process's heartbeat; sets the assembly's ``heartbeat``."""
    name = asm.runner_name
    if "connect" not in asm.roles:
        name = f"{name}/process"
    asm.heartbeat = heartbeat = RunnerHeartbeat(
        asm.publisher,
        name,
        INTERVAL_S,
        figures=(lambda: runtime_figures(asm)) if "process" in asm.roles else None,
        info=(lambda: heartbeat_info(asm)) if "process" in asm.roles else None,
    )
    health = lambda: {"sent": heartbeat.sent}  # noqa: E731
    return LoopStage("runner-heartbeat", heartbeat.run, stop_timeout_s=5.0, health=health)
