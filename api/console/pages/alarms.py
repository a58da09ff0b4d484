"""Alarms: the alarm list with the API's filters and sorts, live; acknowledge, discard
and annotate one alarm or a selection (with each item's result); one alarm's history.

The list is ``GET /alarms`` (its filters and sorts, paged); it follows a live-stream
subscription of kind ``alarm`` with the same filters and reloads when one arrives
(:class:`~millrace.api.console.widgets_ops.LiveReload`). ``/alarms?alarm=<id>`` shows
one alarm: its fields, its history (raised, cleared, acknowledged, discarded, each
annotation, and the audit records of what users did to it when the role may read
audits) and the actions on it. Writes are the API's ``/alarms/{id}/acknowledge``,
``/discard``, ``/annotations`` and ``/alarms/batch/...``; they are offered only to a
role holding ``alarms:acknowledge``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from nicegui import ui

from millrace.api.console.pages import Page, PageContext, path_of
from millrace.api.console.widgets_ops import (
    LiveReload,
    Pager,
    Reload,
    act,
    batch_results,
    choice,
    error_line,
    link_column,
    table,
    time_text,
)

SORTS = {
    "-creation_time": "newest first",
    "creation_time": "oldest first",
    "-priority": "highest priority first",
    "priority": "lowest priority first",
}
TRISTATE = {"": "any", "true": "only these", "false": "none of these"}
COLUMNS = [
    ("alarm_id", "Alarm"),
    ("priority", "Priority"),
    ("state", "State"),
    ("status", "Management"),
    ("identity", "Identity"),
    ("signal", "Signal"),
    ("type", "Type"),
    ("message", "Message"),
    ("raised", "Raised (UTC)"),
    ("cleared", "Cleared (UTC)"),
]
ACK = "alarms:acknowledge"


def row_of(a: dict[str, Any]) -> dict[str, Any]:
    return {
        "alarm_id": a["alarm_id"],
        "priority": a["priority"],
        "state": a["state"],
        "status": a["management"]["status"],
        "identity": a["identity"],
        "signal": a["signal"],
        "type": a["type"],
        "message": a["message"],
        "raised": time_text(a["creation_time"]),
        "cleared": time_text(a["clear_time"]),
    }


async def build(ctx: PageContext) -> None:
    alarm_id = ctx.query.get("alarm")
    if alarm_id:
        await _one(ctx, alarm_id)
    else:
        await _list(ctx)


async def _list(ctx: PageContext) -> None:
    q = ctx.query
    with ui.row().classes("w-full items-end gap-3 flex-wrap"):
        identity = ui.input("Identity (exact, comma separated)", value=q.get("identity", ""))
        signal = ui.input("Signal", value=q.get("signal", ""))
        kind = ui.input("Type", value=q.get("type", ""))
        priority = ui.input("Priority range (lo,hi)", value=q.get("priority_range", ""))
        states = {"": "any", "active": "active", "cleared": "cleared"}
        state = choice("State", states, q.get("state", ""))
        acked = choice("Acknowledged", TRISTATE, q.get("include_acknowledged", ""))
        discarded = choice("Discarded", TRISTATE, q.get("include_discarded", ""))
        sort = choice("Sort", SORTS, q.get("sort", "-creation_time"))
        apply = ui.button("Apply filters").props("no-caps name=apply-filters")
    error = error_line()

    def filters() -> dict[str, Any]:
        out = {
            "identity": identity.value,
            "signal": signal.value,
            "type": kind.value,
            "priority_range": priority.value,
            "state": state.value,
            "include_acknowledged": acked.value,
            "include_discarded": discarded.value,
        }
        return {k: str(v).strip() for k, v in out.items() if v and str(v).strip()}

    actions = ui.column().classes("w-full gap-2")  # the batch writes, above the table
    selection = "multiple" if ctx.can(ACK) else None
    grid = table(COLUMNS, "alarm-table", "alarms", row_key="alarm_id", selection=selection)
    link_column(grid, "alarm_id", "/alarms?alarm=")

    async def reload() -> None:
        page = await ctx.api.get(
            "/alarms", sort=sort.value, limit=pager.limit, page=pager.page, **filters()
        )
        error.text = ""
        grid.rows = [row_of(a) for a in page["data"]]
        shown = {a["alarm_id"] for a in page["data"]}
        grid.selected = [r for r in grid.selected if r["alarm_id"] in shown]
        grid.update()
        pager.show(page["meta"])

    pager = Pager(reload)
    live = LiveReload(ctx, reload, lambda: [{"kind": "alarm", "filters": filters()}])

    if ctx.can(ACK):
        with actions:
            results = ui.column().classes("gap-1").props('data-testid="batch-results"')
            _batch_row(ctx, grid, results, reload)

    async def apply_filters() -> None:
        pager.page = 1
        await live.reapply(error)

    apply.on_click(apply_filters)
    for box in (identity, signal, kind, priority):
        box.on("keydown.enter", apply_filters)
    await apply_filters()


def _batch_row(ctx: PageContext, grid: ui.table, results: ui.column, reload: Reload) -> None:
    """Note, acknowledge and discard for the selected rows; each item's result shown."""
    with ui.row().classes("items-end gap-3 flex-wrap"):
        note = ui.input("Note for the selected alarms (optional)").props("name=batch-note")

        async def batch(action: str, what: str) -> None:
            ids = [r["alarm_id"] for r in grid.selected]
            if not ids:
                ui.notify("select alarms first", type="warning")
                return
            body: dict[str, Any] = {"ids": ids}
            if note.value:
                body["note"] = note.value
            answer = await ctx.api.post(f"/alarms/batch/{action}", body)
            batch_results(results, answer["data"], what)
            grid.selected = []
            await reload()

        ack = lambda: batch("acknowledge", "acknowledged")  # noqa: E731
        act(ctx, ACK, "Acknowledge selected", ack, "batch-acknowledge")
        discard = lambda: batch("discard", "discarded")  # noqa: E731
        act(ctx, ACK, "Discard selected", discard, "batch-discard")


async def _one(ctx: PageContext, alarm_id: str) -> None:
    path = f"/alarms/{quote(alarm_id, safe='')}"
    ui.link("← all alarms", "/alarms")
    summary = ui.column().classes("gap-1").props('data-testid="alarm-summary"')
    ui.label("History").classes("text-lg font-semibold").props('role="heading" aria-level="2"')
    history = ui.column().classes("gap-1").props('data-testid="alarm-history"')

    shown: dict[str, Any] = {}

    async def reload() -> None:
        alarm = await ctx.api.get(path)
        shown.update(alarm)
        notes = (await ctx.api.get(path + "/annotations", limit=1000))["data"]
        audits: list[dict[str, Any]] = []
        if ctx.can("audits:read"):
            got = await ctx.api.get(
                "/audits", target_type="alarm", target_id=alarm_id, limit=200, sort="creation_time"
            )
            audits = got["data"]
        _summary(summary, alarm)
        _history(history, alarm, notes, audits)

    await reload()
    if ctx.can(ACK):
        with ui.row().classes("items-end gap-3 flex-wrap"):
            note = ui.input("Note or annotation text").props("name=alarm-note")

            async def step(action: str) -> None:
                await ctx.api.post(f"{path}/{action}", {"note": note.value or None})
                ui.notify(f"alarm {action}d" if action != "acknowledge" else "alarm acknowledged")
                await reload()

            async def annotate() -> None:
                if not note.value:
                    ui.notify("write the annotation first", type="warning")
                    return
                await ctx.api.post(f"{path}/annotations", {"text": note.value})
                note.value = ""
                await reload()

            act(ctx, ACK, "Acknowledge", lambda: step("acknowledge"), "acknowledge")
            act(ctx, ACK, "Discard", lambda: step("discard"), "discard")
            act(ctx, ACK, "Annotate", annotate, "annotate")
    # the stream has no alarm id filter: the alarm's identity and signal narrow it
    about = {"identity": [shown["identity"]], "signal": [shown["signal"]]}
    live = LiveReload(ctx, reload, lambda: [{"kind": "alarm", "filters": about}], every_s=2.0)
    live.restart()


def _summary(box: ui.column, a: dict[str, Any]) -> None:
    m = a["management"]
    box.clear()
    with box:
        ui.label(a["message"] or a["type"]).classes("text-xl")
        with ui.row().classes("gap-2 flex-wrap"):
            ui.label(f"priority {a['priority']}").classes("mr-chip")
            ui.label(a["state"]).classes(
                "mr-chip " + ("mr-bad" if a["state"] == "active" else "mr-ok")
            ).props('data-testid="alarm-state"')
            ui.label(m["status"]).classes("mr-chip").props('data-testid="alarm-status"')
        ui.label(
            f"{a['identity']} / {a['signal']} · rule {a['rule_id']} · type {a['type']} · "
            f"trigger value {a['trigger_value']}"
        )


def history_items(
    a: dict[str, Any], notes: list[dict[str, Any]], audits: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    """``(time, what happened)`` for an alarm, oldest first: its own steps, its
    annotations and the audit records of users' actions on it."""
    m = a["management"]
    items = [(a["creation_time"], f"raised at value {a['trigger_value']}")]
    if a["clear_time"]:
        items.append((a["clear_time"], f"cleared at value {a['clear_value']}"))
    if m["acknowledged_time"]:
        note = f": {m['acknowledge_note']}" if m["acknowledge_note"] else ""
        items.append((m["acknowledged_time"], f"acknowledged by {m['acknowledged_by']}{note}"))
    if m["discarded_time"]:
        note = f": {m['discard_note']}" if m["discard_note"] else ""
        items.append((m["discarded_time"], f"discarded by {m['discarded_by']}{note}"))
    for n in notes:
        items.append((n["time"], f"annotated by {n['user']}: {n['text']}"))
    for r in audits:
        items.append((r["creation_time"], f"audit: {r['action']} by {r['actor']} → {r['status']}"))
    return sorted((str(t), text) for t, text in items)


def _history(
    box: ui.column, a: dict[str, Any], notes: list[dict[str, Any]], audits: list[dict[str, Any]]
) -> None:
    items = history_items(a, notes, audits)
    if getattr(box, "_shown", None) == items:
        return  # unchanged: redrawing would make screen readers read it again
    box._shown = items  # type: ignore[attr-defined]
    box.clear()
    with box, ui.element("ol").classes("list-decimal pl-6"):
        for when, what in items:
            with ui.element("li").props('data-testid="history-item"'):
                ui.label(f"{time_text(when)} — {what}")


PAGE = Page(
    path=path_of(__name__),
    title="Alarms",
    icon="notifications",
    needs=("alarms:read",),
    build=build,
)
