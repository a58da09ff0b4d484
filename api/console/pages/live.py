"""Live data: the latest value of every signal, with filters, updating from the live
stream without reloading.

The table starts from ``GET /signals/latest`` and then follows a ``latest``
subscription of ``GET /stream`` (the API's own filters when the identity and signal
filters name exact values; glob patterns and the tag filter narrow in the console). The
grid (AG Grid) keys rows by identity and signal and receives only the rows that changed,
at most every :data:`FLUSH_S`; quality is shown as a word, not only a number.

Load time: the page is sent before its data (NiceGUI answers at the build's first
await), and the rows reach the grid the browser already made as one ``setGridOption``
call: changing the element's options would make NiceGUI destroy and rebuild the whole
grid. The grid has a fixed height and scrolls inside it, so AG Grid draws only the
visible rows (``autoHeight`` drew and measured every row of the page, on every update).
"""

from __future__ import annotations

import asyncio
from typing import Any

from nicegui import background_tasks, ui

from millrace.api.console.client import ConsoleApiError
from millrace.api.console.layout import shown_timer
from millrace.api.console.livetable import Filters, LiveTable
from millrace.api.console.pages import Page, PageContext, path_of

FLUSH_S = 0.5
#: the grid's box: a screenful on a tablet, never taller than 40 rows
GRID_HEIGHT = "min(70vh, 44rem)"


COLUMNS = [
    {
        "field": "identity",
        "headerName": "Identity",
        "sortable": True,
        "filter": True,
        "minWidth": 140,
    },
    {"field": "signal", "headerName": "Signal", "sortable": True, "filter": True},
    {"field": "value", "headerName": "Value", "cellDataType": False},
    {"field": "quality", "headerName": "Quality", "sortable": True},
    # wide enough for the whole time (and identity above): a narrow grid scrolls
    # sideways inside its box rather than cutting them short
    {
        "field": "timestamp",
        "headerName": "Time (UTC)",
        "sortable": True,
        "cellDataType": False,
        "minWidth": 200,
    },
]


async def build(ctx: PageContext) -> None:
    filters = Filters(
        identity=ctx.query.get("identity", ""),
        signal=ctx.query.get("signal", ""),
        tag=ctx.query.get("tag", ""),
    )
    with ui.row().classes("w-full items-end gap-3 flex-wrap"):
        identity = ui.input("Identity (names or patterns, e.g. press-*)", value=filters.identity)
        signal = ui.input("Signal (names or patterns)", value=filters.signal)
        tag = ui.input("Tag (registered identities with it)", value=filters.tag)
        apply = ui.button("Apply filters").props("name=apply-filters")
        received = ui.label("").props('data-testid="live-received" aria-live="off"')
    grid = ui.aggrid(
        {
            "columnDefs": COLUMNS,
            "rowData": [],
            ":getRowId": "(params) => params.data.key",
            "pagination": True,
            "paginationPageSize": 100,
            "animateRows": False,
        },
        theme="quartz",
    ).classes("w-full")
    grid.style(f"height: {GRID_HEIGHT}")
    grid.props('data-testid="live-grid" aria-label="latest values"')
    state: dict[str, Any] = {"table": LiveTable(), "task": None}

    async def follow(table: LiveTable, subscription: dict[str, Any]) -> None:
        while True:
            try:
                async for event, data in ctx.api.events([subscription]):
                    if event == "latest":
                        item = data.get("data", {})
                        if filters.match(item.get("identity", ""), item.get("signal", "")):
                            table.take(item)
            except ConsoleApiError as exc:
                received.text = f"live stream refused: {exc.message}"
                return
            await asyncio.sleep(1.0)  # the API ended the stream (restart): open another

    async def load() -> None:
        filters.identity, filters.signal, filters.tag = (
            identity.value or "",
            signal.value or "",
            (tag.value or "").strip(),
        )
        filters.identities = None
        if filters.tag:
            listed = await ctx.api.get("/identities", tag=filters.tag, limit=1000)
            filters.identities = {i["identity"] for i in listed.get("items", [])}
        exact = filters.server_side()
        latest = await ctx.api.get(
            "/signals/latest",
            identities=",".join(exact.get("identity", [])) or None,
            signals=",".join(exact.get("signal", [])) or None,
            limit=1000,
        )
        table = LiveTable()
        for item in latest["data"]:
            if filters.match(item["identity"], item["signal"]):
                table.take(item)
        table.added.clear()
        table.received = 0
        rows = list(table.rows.values())
        grid.options["rowData"] = rows  # what a redraw of the element would start from
        grid.run_grid_method("setGridOption", "rowData", rows)
        received.text = f"{len(table.rows)} signals, 0 live updates"
        if state["task"] is not None:
            state["task"].cancel()
        state["table"] = table
        subscription = {"kind": "latest", "filters": exact}
        state["task"] = background_tasks.create(follow(table, subscription), name="console-live")

    async def flush() -> None:
        table: LiveTable = state["table"]
        added, changed = table.drain()
        if added or changed:
            grid.run_grid_method("applyTransaction", {"add": added, "update": changed})
        received.text = f"{len(table.rows)} signals, {table.received} live updates"

    def stop() -> None:
        if state["task"] is not None:
            state["task"].cancel()

    async def apply_filters() -> None:
        try:
            await load()
        except ConsoleApiError as exc:
            ui.notify(f"The API refused: {exc.message}", type="negative")

    apply.on_click(apply_filters)
    for box in (identity, signal, tag):
        box.on("keydown.enter", apply_filters)
    ui.context.client.on_delete(stop)
    await load()
    shown_timer(FLUSH_S, flush)


PAGE = Page(
    path=path_of(__name__),
    title="Live data",
    icon="sensors",
    needs=("signals:read", "stream:read"),
    build=build,
)
