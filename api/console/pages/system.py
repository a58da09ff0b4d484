"""System status: the detail behind the overview's readiness and lag figures.

* readiness: each check of ``/health/ready`` (log writable, store answers, lag under
  its bound) with what it found;
* lag per stage: the processing runtime's (``lag_records`` of ``/status``: in the
  distributed deployment the processing group's Kafka lag) and the alarm runner's
  (``alarm_lag_records``), and whether folding is paused;
* heartbeats: every runner of ``/resource-runners`` (the processes' own heartbeats
  and the connectors' reports) with its last sign of life, missed intervals and
  health, and a process worker's figures from ``/status`` (``workers``: the
  distributed deployment's ``millrace process`` heartbeats carry them);
* the system's version, deployment and uptime (``/system/info``, ``system:read``).

Refreshed every :data:`REFRESH_S` (these figures are not on the live stream).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from nicegui import ui

from millrace.api.console.pages import Page, PageContext, path_of
from millrace.api.console.widgets_ops import gathered, polled, table, time_text

REFRESH_S = 2.0
CHECK_COLUMNS = [("check", "Check"), ("state", "State"), ("detail", "What it found")]
LAG_COLUMNS = [("stage", "Stage"), ("records", "Records behind"), ("note", "Note")]
RUNNER_COLUMNS = [
    ("runner", "Runner"),
    ("health", "Health"),
    ("last", "Last heard (UTC)"),
    ("interval_s", "Interval (s)"),
    ("misses", "Missed"),
    ("figures", "Figures"),
]


def check_rows(health: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per readiness check."""
    return [
        {
            "id": name,
            "check": name,
            "state": "ok" if check.get("ok") else "FAILING",
            "detail": str(check.get("detail", "")),
        }
        for name, check in (health.get("checks") or {}).items()
    ]


def lag_rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The lag of each stage that reports one."""
    paused = "folding paused" if status.get("paused") else ""
    distributed = status.get("mode") == "distributed"
    rows = [
        {
            "id": "processing",
            "stage": "processing (projections)",
            "records": int(status.get("lag_records", 0)),
            "note": paused or ("the processing group's Kafka lag" if distributed else ""),
        }
    ]
    if "alarm_lag_records" in status:
        rows.append(
            {
                "id": "alarm-runner",
                "stage": "alarm runner",
                "records": int(status["alarm_lag_records"]),
                "note": "from its checkpoint",
            }
        )
    return rows


def runner_rows(
    runners: list[dict[str, Any]], workers: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each runner with its health, and a worker's figures where its heartbeat has them."""
    figures = {w["runner"]: w.get("figures") or {} for w in workers}
    out = []
    for r in runners:
        got = figures.get(r["runner"], {})
        shown = ", ".join(
            f"{k} {int(got[k]):,}" for k in ("records", "readings", "batches") if k in got
        )
        out.append(
            {
                "id": r["runner"],
                "runner": r["runner"],
                "health": "healthy" if r.get("healthy") else f"MISSING ({r.get('state') or '?'})",
                "last": time_text(r.get("last")),
                "interval_s": r.get("interval_s"),
                "misses": r.get("misses", 0),
                "figures": shown,
            }
        )
    return out


async def fetch(ctx: PageContext) -> dict[str, Any]:
    """Every answer this page shows, asked at once (the role's permitted ones)."""
    calls: dict[str, Awaitable[Any]] = {
        "health": ctx.api.health("/health/ready"),
        "status": ctx.api.get("/status"),
    }
    if ctx.can("resources:read"):
        calls["runners"] = ctx.api.get("/resource-runners", items_per_page=200)
    if ctx.can("system:read"):
        calls["info"] = ctx.api.get("/system/info")
    return await gathered(calls)


def _heading(text: str, anchor: str) -> None:
    ui.label(text).classes("text-lg font-semibold").props(
        f'role="heading" aria-level="2" id="{anchor}"'
    )


async def build(ctx: PageContext) -> None:
    summary = ui.label("").classes("mr-chip").props('data-testid="system-ready"')
    _heading("Readiness checks", "readiness")
    checks = table(CHECK_COLUMNS, "ready-checks", "readiness checks")
    _heading("Lag per stage", "lag")
    lags = table(LAG_COLUMNS, "stage-lag", "lag per stage")
    _heading("Heartbeats", "heartbeats")
    runners = table(RUNNER_COLUMNS, "runner-table", "runners and their heartbeats")
    about = ui.label("").classes("text-sm text-slate-700").props('data-testid="system-info"')

    async def refresh() -> None:
        got = await fetch(ctx)
        ok = got["health"].get("status") == "ok"
        summary.text = "ready" if ok else "not ready"
        summary.classes(replace="mr-chip " + ("mr-ok" if ok else "mr-bad"))
        checks.rows = check_rows(got["health"])
        status = got["status"]["data"]
        lags.rows = lag_rows(status)
        runners.rows = runner_rows(
            got.get("runners", {}).get("data", []), status.get("workers") or []
        )
        if "info" in got:
            i = got["info"]["data"]
            about.text = (
                f"millrace {i.get('version')} ({i.get('deployment')}), up "
                f"{float(i.get('uptime_s', 0)):,.0f} s, store {i.get('store_version')}"
            )

    await polled(refresh, summary, REFRESH_S)


PAGE = Page(
    path=path_of(__name__),
    title="System",
    icon="monitor_heart",
    needs=("status:read",),
    build=build,
)
