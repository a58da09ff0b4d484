"""Overview: is the system healthy, is data flowing, what needs attention.

Health and readiness, the ingest rate (readings folded per second over the last 10 s,
from the engine's row counters, or the workers' heartbeats under ``millrace api``:
:mod:`..rate`) and the lag, connectors and services with their states,
deviations, active alarms by priority and disk use; refreshed every 2 s. Every figure
links to the page that shows its detail when that page is registered.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from nicegui import ui
from nicegui.element import Element

from millrace.api.console.layout import write_button
from millrace.api.console.pages import Page, PageContext, path_of
from millrace.api.console.rate import IngestRate, sampled_at
from millrace.api.console.values import human_bytes, registered_link
from millrace.api.console.widgets_ops import gathered, polled

REFRESH_S = 2.0
HISTORY = 60  # points of the rate sparkline
RATE_WINDOW_S = 10.0


def figure(label: str, testid: str, target: str | None) -> ui.label:
    """A labelled number; a link to ``target`` when that page exists."""
    with ui.card().classes("mr-figure min-w-[11rem] gap-0").props(f'aria-label="{label}"'):
        ui.label(label).classes("text-sm text-slate-700")
        href = registered_link(target)
        holder: Element = ui.link("", href) if href else ui.element("div")
        with holder:
            value = ui.label("…").classes("text-2xl font-semibold")
        value.props(f'data-testid="{testid}"')
    return value


def sparkline(points: list[list[float]], width: int = 600, height: int = 80) -> str:
    """The rate's recent points as an SVG polyline scaled to its own range, with the
    newest value and the scale written out (the figure above is the same number)."""
    top = max((p[1] for p in points), default=0.0) or 1.0
    t0, t1 = (points[0][0], points[-1][0]) if len(points) > 1 else (0.0, 1.0)
    span = (t1 - t0) or 1.0
    xy = " ".join(
        f"{(t - t0) / span * width:.1f},{height - v / top * (height - 4) - 2:.1f}"
        for t, v in points
    )
    label = f"ingest rate over the last {len(points)} polls, up to {top:,.0f} readings/s"
    return (
        f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
        f'aria-label="{label}" data-testid="rate-chart" data-points="{len(points)}" '
        f'style="width:100%;height:{height}px;background:#f8fafc">'
        f'<polyline fill="none" stroke="#1d4ed8" stroke-width="2" points="{xy}"/></svg>'
        f'<div class="text-sm text-slate-700">readings/s, scale 0 to {top:,.0f}</div>'
    )


def changed(box: Element, content: Any) -> bool:
    """Whether ``content`` differs from what ``box`` shows (remembered on the box)."""
    key = repr(content)
    if getattr(box, "_shown", None) == key:
        return False
    box._shown = key  # type: ignore[attr-defined]
    return True


async def build(ctx: PageContext) -> None:
    with ui.row().classes("w-full gap-3 flex-wrap"):
        ready = figure("Readiness", "ready", "/system#readiness")
        rate = figure("Ingest rate (readings/s)", "ingest-rate", "/live")
        lag = figure("Lag (records)", "lag", "/system#lag")
        deviations = figure("Deviations", "deviations", "/services")
        alarms = figure("Active alarms", "alarms", "/alarms?state=active")
        disk = figure("Disk use", "disk", "/archive")
    # an inline SVG, not a chart library: the landing page loads no chart code
    spark = ui.html(sparkline([])).classes("w-full")
    with ui.row().classes("w-full gap-3 flex-wrap items-start"):
        with ui.card().classes("grow"):
            ui.label("Checks").classes("font-semibold")
            checks = ui.column().classes("gap-1")
            ui.label("Heartbeats").classes("font-semibold")
            runners = ui.column().classes("gap-1").props('data-testid="runners"')
        with ui.card().classes("grow"):
            ui.label("Connections and services").classes("font-semibold")
            connections = ui.column().classes("gap-1")
            with ui.row().classes("items-center gap-2"):
                paused = ui.label("").props('data-testid="paused"')

                async def switch() -> None:
                    action = "resume" if paused.text == "folding paused" else "pause"
                    await ctx.api.post(f"/pipeline/{action}")
                    await safe_refresh()

                write_button(ctx, "pipeline:control", "Pause / resume folding", switch)
        with ui.card().classes("grow"):
            ui.label("Active alarms by priority").classes("font-semibold")
            by_priority = ui.column().classes("gap-1")

    ingest = IngestRate(RATE_WINDOW_S)
    points: list[list[float]] = []

    async def refresh() -> None:
        got = await fetch(ctx)
        health = got["health"]
        ready.text = "ready" if health.get("status") == "ok" else "not ready"
        checks.clear()
        with checks:
            for name, check in health.get("checks", {}).items():
                mark = "ok" if check.get("ok") else "FAILING"
                ui.label(f"{name}: {mark} — {check.get('detail', '')}")
        status = got["status"]["data"]
        paused.text = "folding paused" if status.get("paused") else "folding"
        lag.text = f"{status.get('lag_records', 0):,}"
        folded = float(status.get("runtime", {}).get("rows", {}).get("readings", 0))
        # over the last RATE_WINDOW_S: the fold writes in batches, one poll apart is jumpy
        per_s = ingest.add(sampled_at(status, time.time()), folded)
        if per_s is not None:
            rate.text = f"{per_s:,.0f}"
            points.append([time.time() * 1000, round(per_s, 1)])
            del points[:-HISTORY]
            spark.content = sparkline(points)
        services = got["services"]["data"] if "services" in got else []
        _connections(ctx, connections, status.get("connectors", []), services)
        _counts(got, deviations, alarms, by_priority, disk)
        if "runners" in got:
            _runners(runners, got["runners"]["data"])

    safe_refresh = await polled(refresh, ready, REFRESH_S)


async def fetch(ctx: PageContext) -> dict[str, Any]:
    """Every answer the overview shows, asked at once (the role's permitted ones)."""
    calls: dict[str, Awaitable[Any]] = {
        "health": ctx.api.health("/health/ready"),
        "status": ctx.api.get("/status"),
    }
    if ctx.can("services:read"):
        calls["services"] = ctx.api.get("/services")
    if ctx.can("state:read"):
        calls["deviations"] = ctx.api.get("/resources/states/deviations/count")
    if ctx.can("system:read"):
        calls["info"] = ctx.api.get("/system/info")
    if ctx.can("resources:read"):
        calls["runners"] = ctx.api.get("/resource-runners", items_per_page=50)
    if ctx.can("alarms:read"):
        calls["alarms"] = ctx.api.get("/alarms", state="active", limit=1000, sort="-priority")
    return await gathered(calls)


def _connections(
    ctx: PageContext, box: Element, connectors: list[dict[str, Any]], services: list[Any]
) -> None:
    if not changed(box, (connectors, services)):
        return  # redrawing would take the keyboard focus off its buttons
    box.clear()
    with box:
        for c in connectors:
            state = f"{c.get('current_state')} (desired {c.get('desired_state')})"
            with ui.row().classes("items-center gap-2"):
                ui.label(f"connector {c['name']} [{c.get('protocol')}]: {state}")
                write_button(ctx, "connectors:control", "Restart", _restart(ctx, c["name"]))
        for s in services:
            enabled = "enabled" if s.get("enabled") else "disabled"
            deviated = f", {s['deviations']} deviated" if s.get("deviations") else ""
            target = registered_link(f"/services?service={quote(str(s.get('id')), safe='')}")
            text = f"service {s.get('id')}: {s.get('status')} ({enabled}{deviated})"
            ui.link(text, target) if target else ui.label(text)
        if not connectors and not services:
            ui.label("no connectors or services")


def _runners(box: Element, runners: list[dict[str, Any]]) -> None:
    """Each process's and connector's sign of life, linked to the system page."""
    shown = [(r["runner"], bool(r.get("healthy"))) for r in runners]
    if not changed(box, shown):
        return
    box.clear()
    with box:
        for name, healthy in shown:
            text = f"{name}: {'healthy' if healthy else 'MISSING'}"
            href = registered_link("/system#heartbeats")
            ui.link(text, href) if href else ui.label(text)
        if not shown:
            ui.label("no heartbeat yet")


def _restart(ctx: PageContext, name: str) -> Callable[[], Awaitable[None]]:
    async def restart() -> None:
        await ctx.api.post(f"/connectors/{quote(name, safe='')}/restart")
        ui.notify(f"connector {name} restarting")

    return restart


def _counts(
    got: dict[str, Any], deviations: ui.label, alarms: ui.label, box: Element, disk: ui.label
) -> None:
    # a figure the role may not see (its call was not made) stays a dash
    if "deviations" in got:
        rows = got["deviations"]["data"]
        deviations.text = f"{sum(int(r.get('count', 0)) for r in rows):,}"
    else:
        deviations.text = "—"
    if "info" in got:
        disk.text = human_bytes(disk_used(got["info"]["data"]))
    else:
        disk.text = "—"
    if "alarms" in got:
        page = got["alarms"]
        alarms.text = f"{page['meta']['pagination'].get('total_rows', len(page['data'])):,}"
        _by_priority(box, Counter(int(a.get("priority", 0)) for a in page["data"]))
    else:
        alarms.text = "—"


def disk_used(info: dict[str, Any]) -> int:
    """Bytes the data directory takes, from ``/system/info``: ``data_bytes`` is all of it,
    the log's part (``log_bytes``) included, so the two are not added."""
    return int((info.get("disk") or {}).get("data_bytes", 0))


def _by_priority(box: Element, counts: Counter[int]) -> None:
    if not changed(box, sorted(counts.items())):
        return
    box.clear()
    with box:
        for priority, n in sorted(counts.items(), reverse=True):
            href = registered_link(f"/alarms?state=active&priority_range={priority},{priority}")
            text = f"priority {priority}: {n}"
            ui.link(text, href) if href else ui.label(text)
        if not counts:
            ui.label("none active")


PAGE = Page(
    path=path_of(__name__), title="Overview", icon="dashboard", needs=("status:read",), build=build
)
