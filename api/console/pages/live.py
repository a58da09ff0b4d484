"""Live data: the latest value of every signal, with filters, updating from the live
stream without reloading.

The table starts from ``GET /signals/latest`` and then follows a ``latest``
subscription of ``GET /stream`` (the API's own filters when the identity and signal
filters name exact values; glob patterns and the tag filter narrow in the console). The
grid (AG Grid) keys rows by identity and signal and receives only the rows that changed,
at most every :data:`FLUSH_S`; quality is shown as a word, not only a number.
"""

from __future__ import annotations

import asyncio
import fnmatch
from dataclasses import dataclass, field
from typing import Any

from nicegui import background_tasks, ui

from millrace.api.console.client import ConsoleApiError
from millrace.api.console.pages import Page, PageContext

FLUSH_S = 0.5
MAX_ROWS = 2000  # the grid holds at most this many signals; the filters narrow further


def quality_text(code: Any) -> str:
    """0 is good (the projections' convention); anything else is named with its code."""
    try:
        value = int(code)
    except (TypeError, ValueError):
        return "unknown"
    return "good" if value == 0 else f"bad ({value})"


def is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


@dataclass
class Filters:
    """The page's filters: identity and signal are comma-separated exact names or glob
    patterns; ``identities`` is the tag filter's resolved set (None: no tag filter)."""

    identity: str = ""
    signal: str = ""
    tag: str = ""
    identities: set[str] | None = None

    def names(self, text: str) -> list[str]:
        return [n.strip() for n in text.split(",") if n.strip()]

    def server_side(self) -> dict[str, list[str]]:
        """The subscription's filters: exact names only (patterns are matched here)."""
        out: dict[str, list[str]] = {}
        ids = self.names(self.identity)
        if ids and not any(is_pattern(i) for i in ids):
            out["identity"] = ids
        sigs = self.names(self.signal)
        if sigs and not any(is_pattern(s) for s in sigs):
            out["signal"] = sigs
        return out

    def match(self, identity: str, signal: str) -> bool:
        ids, sigs = self.names(self.identity), self.names(self.signal)
        if ids and not any(fnmatch.fnmatchcase(identity, p) for p in ids):
            return False
        if sigs and not any(fnmatch.fnmatchcase(signal, p) for p in sigs):
            return False
        return self.identities is None or identity in self.identities


def row_of(item: dict[str, Any]) -> dict[str, Any]:
    value = item.get("value")
    return {
        "key": f"{item['identity']}\x1f{item['signal']}",
        "identity": item["identity"],
        "signal": item["signal"],
        "value": value if isinstance(value, (int, float, str)) else str(value),
        "quality": quality_text(item.get("quality")),
        "timestamp": item.get("timestamp"),
    }


@dataclass
class LiveTable:
    """The rows the grid shows and those changed since the last flush."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    added: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: int = 0

    def take(self, item: dict[str, Any]) -> None:
        row = row_of(item)
        key = row["key"]
        if key in self.rows:
            self.rows[key] = self.changed[key] = row
        elif len(self.rows) < MAX_ROWS:
            self.rows[key] = self.added[key] = row
        self.received += 1

    def drain(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        added, changed = list(self.added.values()), list(self.changed.values())
        self.added, self.changed = {}, {}
        return added, [r for r in changed if r["key"] not in {a["key"] for a in added}]


COLUMNS = [
    {"field": "identity", "headerName": "Identity", "sortable": True, "filter": True},
    {"field": "signal", "headerName": "Signal", "sortable": True, "filter": True},
    {"field": "value", "headerName": "Value"},
    {"field": "quality", "headerName": "Quality", "sortable": True},
    {"field": "timestamp", "headerName": "Time (UTC)", "sortable": True},
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
            "domLayout": "autoHeight",
        },
        theme="quartz",
    ).classes("w-full")
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
        grid.options["rowData"] = list(table.rows.values())
        grid.update()
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
    ui.timer(FLUSH_S, flush)


PAGE = Page(
    path="/live",
    title="Live data",
    icon="sensors",
    needs=("signals:read", "stream:read"),
    build=build,
)
