"""Activities and audits: alarm steps and audit records together, and the audit trail
alone, each with the API's filters.

Activities are ``GET /activities`` (the alarm filters plus activity type, actor, action
and target type), reloaded when the live stream reports a matching ``activity``; the
audit trail is ``GET /audits`` (actor, action, target type and id, status, refused
only). A row's alarm links to its page; an audit row shows the object before and after.
Read-only: both need ``audits:read``.
"""

from __future__ import annotations

from typing import Any

from nicegui import ui

from millrace.api.console.pages import Page, PageContext, path_of
from millrace.api.console.widgets_ops import (
    LiveReload,
    Pager,
    choice,
    error_line,
    link_column,
    load_into,
    table,
    time_text,
)

ACTIVITY_COLUMNS = [
    ("time", "Time (UTC)"),
    ("activity_type", "Kind"),
    ("priority", "Priority"),
    ("what", "What"),
    ("who", "Who"),
    ("alarm", "Alarm"),
]
AUDIT_COLUMNS = [
    ("time", "Time (UTC)"),
    ("actor", "Actor"),
    ("action", "Action"),
    ("target_type", "Target type"),
    ("target_id", "Target"),
    ("status", "Outcome"),
    ("change", "Before → after"),
]
SORTS = {"-creation_time": "newest first", "creation_time": "oldest first"}


def activity_row(item: dict[str, Any]) -> dict[str, Any]:
    """One line of an activity: an alarm (what was raised, its status) or an audit."""
    row = {
        "id": item["id"],
        "time": time_text(item["creation_time"]),
        "activity_type": item["activity_type"],
        "priority": item["priority"],
        "what": "",
        "who": "",
        "alarm": "",
    }
    if (a := item.get("alarm")) is not None:
        row["what"] = f"{a['identity']}/{a['signal']}: {a['message'] or a['type']} ({a['state']}, "
        row["what"] += f"{a['management']['status']})"
        row["who"] = a["management"]["acknowledged_by"] or a["management"]["discarded_by"] or ""
        row["alarm"] = a["alarm_id"]
    if (r := item.get("audit")) is not None:
        row["what"] = f"{r['action']} {r['target_type']} {r['target_id']} → {r['status']}"
        row["who"] = r["actor"]
    return row


def _short(value: Any, most: int = 120) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= most else text[: most - 1] + "…"


def audit_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "time": time_text(r["creation_time"]),
        "actor": r["actor"],
        "action": r["action"],
        "target_type": r["target_type"],
        "target_id": r["target_id"],
        "status": r["status"],
        "change": f"{_short(r.get('before'))} → {_short(r.get('after'))}",
    }


def _texts(boxes: dict[str, ui.input | ui.select]) -> dict[str, str]:
    return {k: str(b.value).strip() for k, b in boxes.items() if b.value and str(b.value).strip()}


async def build(ctx: PageContext) -> None:
    with ui.tabs() as tabs:
        activity_tab = ui.tab("Activities")
        audit_tab = ui.tab("Audit trail")
    start = audit_tab if ctx.query.get("tab") == "audits" else activity_tab
    with ui.tab_panels(tabs, value=start).classes("w-full"):
        with ui.tab_panel(activity_tab).classes("gap-3"):
            await _activities(ctx)
        with ui.tab_panel(audit_tab).classes("gap-3"):
            await _audits(ctx)


async def _activities(ctx: PageContext) -> None:
    q = ctx.query
    with ui.row().classes("w-full items-end gap-3 flex-wrap"):
        boxes: dict[str, ui.input | ui.select] = {
            "activity_type": choice("Kind", {"": "any", "alarm": "alarms", "audit": "audits"}),
            "identity": ui.input("Identity", value=q.get("identity", "")),
            "actor": ui.input("Actor", value=q.get("actor", "")),
            "action": ui.input("Action"),
            "target_type": ui.input("Target type"),
            "priority_range": ui.input("Priority range (lo,hi)"),
            "start_time": ui.input("From (ISO-8601)"),
            "end_time": ui.input("To (ISO-8601)"),
        }
        sort = choice("Sort", SORTS, "-creation_time")
        apply = ui.button("Apply filters").props("no-caps name=apply-activity-filters")
    error = error_line()
    grid = table(ACTIVITY_COLUMNS, "activity-table", "activities")
    link_column(grid, "alarm", "/alarms?alarm=")

    async def reload() -> None:
        got = await ctx.api.get(
            "/activities", sort=sort.value, limit=pager.limit, page=pager.page, **_texts(boxes)
        )
        # an alarm is listed once per step: the row key is its place
        grid.rows = [{**activity_row(i), "id": n} for n, i in enumerate(got["data"])]
        pager.show(got["meta"])

    pager = Pager(reload)

    def subscription() -> list[dict[str, Any]]:
        live_filters = {
            k: v
            for k, v in _texts(boxes).items()
            if k not in ("start_time", "end_time")  # the stream is from now on
        }
        return [{"kind": "activity", "filters": live_filters}]

    live = LiveReload(ctx, reload, subscription)

    async def apply_filters() -> None:
        pager.page = 1
        await live.reapply(error)

    apply.on_click(apply_filters)
    await apply_filters()


async def _audits(ctx: PageContext) -> None:
    with ui.row().classes("w-full items-end gap-3 flex-wrap"):
        boxes: dict[str, ui.input | ui.select] = {
            "actor": ui.input("Actor"),
            "action": ui.input("Action"),
            "target_type": ui.input("Target type"),
            "target_id": ui.input("Target id"),
            "status": ui.input("Outcome (ok or an error code)"),
            "failed": choice("Refused", {"": "any", "true": "refused only", "false": "done only"}),
            "start_time": ui.input("From (ISO-8601)"),
            "end_time": ui.input("To (ISO-8601)"),
        }
        sort = choice("Sort", SORTS, "-creation_time")
        apply = ui.button("Apply filters").props("no-caps name=apply-audit-filters")
    error = error_line()
    grid = table(AUDIT_COLUMNS, "audit-table", "audit records")

    async def reload() -> None:
        got = await ctx.api.get(
            "/audits", sort=sort.value, limit=pager.limit, page=pager.page, **_texts(boxes)
        )
        grid.rows = [audit_row(r) for r in got["data"]]
        pager.show(got["meta"])

    pager = Pager(reload)
    with ui.row().classes("items-center gap-2"):
        ui.button("Refresh", on_click=lambda: apply_filters()).props("flat no-caps name=refresh")

    async def apply_filters() -> None:
        pager.page = 1
        await load_into(error, reload)

    apply.on_click(apply_filters)
    await apply_filters()


PAGE = Page(
    path=path_of(__name__),
    title="Activities",
    icon="history",
    needs=("audits:read",),
    build=build,
)
