"""Archive and restore: restore tasks with their progress, a restore started by time
range (or by archive files), failed ones retried; replay tasks and their progress; the
archive's windows, and archiving everything so far.

Each part is its endpoint's: ``GET/POST /restore...`` (``restore:run``), ``GET/POST
/replay`` (``replay:read`` / ``replay:run``), ``GET /archive`` and ``POST
/archive/flush`` (``archive:read`` / ``archive:manage``); a part the role may not
read is left out, a write it may not make is not offered. Task lists and the
windows are polled every :data:`POLL_S` (neither is on the live stream). A deployment
without an archive says so (the API's 409) instead of a table.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from nicegui import ui
from nicegui.element import Element

from millrace.api.console.client import ConsoleApiError
from millrace.api.console.pages import Page, PageContext, path_of
from millrace.api.console.values import human_bytes
from millrace.api.console.widgets_ops import (
    LiveReload,
    act,
    error_line,
    load_into,
    table,
    time_text,
)

POLL_S = 2.0
#: how long the flush button waits for its task (the API's default is 60 s); a flush
#: still running is shown pending and its windows appear as the list is polled
FLUSH_WAIT_S = 15.0
TASK_COLUMNS = [
    ("task_id", "Task"),
    ("status", "Status"),
    ("created", "Created (UTC)"),
    ("finished", "Finished (UTC)"),
    ("attempts", "Attempts"),
    ("progress", "Progress"),
    ("problem", "Errors"),
    ("params", "Parameters"),
]
WINDOW_COLUMNS = [
    ("topic", "Topic"),
    ("partition", "Partition"),
    ("start", "Window start (UTC)"),
    ("records", "Records"),
    ("readings", "Readings"),
    ("size", "Size"),
    ("path", "File"),
]


def task_row(t: dict[str, Any]) -> dict[str, Any]:
    """A restore or replay task as one line: what it did so far and what failed."""
    progress = t.get("progress") or {}
    files = t.get("files") or []
    errors = t.get("errors") or []
    done = ", ".join(
        f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in progress.items()
    )
    if files or errors:
        done = f"{len(files)} file(s) done, {len(errors)} failed" + (f"; {done}" if done else "")
    problems = [t["error"]] if t.get("error") else []
    problems += [f"{e['file']}: {e['reason']}" for e in errors[:5]]
    return {
        "task_id": t["task_id"],
        "status": t["status"],
        "created": time_text(t.get("created")),
        "finished": time_text(t.get("finished")),
        "attempts": t.get("attempts", 0),
        "progress": done,
        "problem": "; ".join(problems),
        "params": ", ".join(f"{k}={v}" for k, v in (t.get("params") or {}).items()),
    }


def _csv(text: str | None) -> list[str]:
    return [v.strip() for v in (text or "").split(",") if v.strip()]


def _heading(text: str) -> None:
    ui.label(text).classes("text-lg font-semibold").props('role="heading" aria-level="2"')


async def build(ctx: PageContext) -> None:
    if ctx.can("restore:run"):
        await _restores(ctx)
    await _replays(ctx)
    if ctx.can("archive:read"):
        await _windows(ctx)


async def _restores(ctx: PageContext) -> None:
    _heading("Restore tasks")
    with ui.row().classes("w-full items-end gap-3 flex-wrap"):
        start = ui.input("From (log time, ISO-8601)").props("name=restore-start")
        end = ui.input("To (log time, ISO-8601)").props("name=restore-end")
        identities = ui.input("Only identities (comma separated)")
        topics = ui.input("Only topics (comma separated; default all)")

        async def by_time() -> None:
            body: dict[str, Any] = {"start_time": start.value, "end_time": end.value}
            if ids := _csv(identities.value):
                body["identities"] = ids
            if names := _csv(topics.value):
                body["topics"] = names
            made = await ctx.api.post("/restore/time", body)
            ui.notify(f"restore {made['data']['task_id']} started")
            await reload()

        act(ctx, "restore:run", "Restore this range", by_time, "restore-time")
    with ui.row().classes("w-full items-end gap-3 flex-wrap"):
        urls = ui.textarea("Or archive files (one path or URL per line)").classes("grow")
        urls.props("name=restore-urls")

        async def by_url() -> None:
            body = {"urls": [u.strip() for u in (urls.value or "").splitlines() if u.strip()]}
            made = await ctx.api.post("/restore/url", body)
            ui.notify(f"restore {made['data']['task_id']} started")
            await reload()

        act(ctx, "restore:run", "Restore these files", by_url, "restore-url")
    error = error_line()
    grid = table(TASK_COLUMNS, "restore-table", "restore tasks", row_key="task_id")
    retry_box = ui.row().classes("gap-2 flex-wrap")

    async def reload() -> None:
        tasks = (await ctx.api.get("/restore", limit=100))["data"]
        grid.rows = [task_row(t) for t in tasks]
        _retry_buttons(ctx, retry_box, [t for t in tasks if t["status"] == "failed"], reload)

    await load_into(error, reload)
    LiveReload(ctx, reload, None, every_s=POLL_S, poll_s=POLL_S).restart()


def _retry_buttons(
    ctx: PageContext, box: Element, failed: list[dict[str, Any]], reload: Any
) -> None:
    ids = [t["task_id"] for t in failed]
    if getattr(box, "_shown", None) == ids:
        return  # unchanged: keep the keyboard focus where it is
    box._shown = ids  # type: ignore[attr-defined]
    box.clear()
    with box:
        for task_id in ids:

            async def retry(task_id: str = task_id) -> None:
                await ctx.api.post(f"/restore/{quote(task_id, safe='')}/retry")
                ui.notify(f"restore {task_id} retried")
                await reload()

            act(ctx, "restore:run", f"Retry {task_id}", retry, f"retry-{task_id}")


async def _replays(ctx: PageContext) -> None:
    _heading("Replay tasks")
    if ctx.can("replay:run"):
        with ui.row().classes("w-full items-end gap-3 flex-wrap"):
            projections = ui.input("Projections (comma separated; default all)")
            since = ui.input("From (ISO-8601; default the log's start)")

            async def replay() -> None:
                body: dict[str, Any] = {"projections": _csv(projections.value)}
                if since.value:
                    body["start_time"] = since.value
                made = await ctx.api.post("/replay", body)
                ui.notify(f"replay {made['data']['task_id']} started")
                await reload()

            with ui.dialog() as confirm, ui.card():
                ui.label("Rebuild these projections from the log? Queries go on meanwhile.")
                with ui.row():
                    ui.button("Cancel", on_click=confirm.close).props("flat no-caps")
                    go = act(ctx, "replay:run", "Replay", replay, "confirm-replay")
                    if go is not None:
                        go.on_click(confirm.close)
            ui.button("Start a replay…", on_click=confirm.open).props(
                'no-caps name=replay data-write="replay:run"'
            )
    error = error_line()
    grid = table(TASK_COLUMNS, "replay-table", "replay tasks", row_key="task_id")

    async def reload() -> None:
        grid.rows = [task_row(t) for t in (await ctx.api.get("/replay", limit=100))["data"]]

    await load_into(error, reload)
    LiveReload(ctx, reload, None, every_s=POLL_S, poll_s=POLL_S).restart()


async def _windows(ctx: PageContext) -> None:
    _heading("Archive")
    with ui.row().classes("w-full items-end gap-3 flex-wrap"):
        topic = ui.input("Topic (e.g. telemetry)")
        start = ui.input("From (ISO-8601)")
        end = ui.input("To (ISO-8601)")
        apply = ui.button("Apply filters").props("no-caps name=apply-archive-filters")

        async def flush() -> None:
            done = (await ctx.api.post("/archive/flush", wait_s=FLUSH_WAIT_S))["data"]
            ui.notify(f"archiving: task {done['task_id']} {done['status']}")
            await reload()

        act(ctx, "archive:manage", "Archive everything now", flush, "archive-flush")
    summary = ui.label("").props('data-testid="archive-summary"')
    error = error_line()
    grid = table(WINDOW_COLUMNS, "archive-table", "archived windows", row_key="path")

    async def reload() -> None:
        try:
            got = await ctx.api.get(
                "/archive",
                topic=topic.value or None,
                start_time=start.value or None,
                end_time=end.value or None,
                limit=1000,
            )
        except ConsoleApiError as exc:
            if exc.status != 409:
                raise
            summary.text = f"No archive: {exc.message}"
            grid.set_visibility(False)
            return
        grid.rows = [
            {**w, "start": time_text(w["start"]), "size": human_bytes(w["bytes"])}
            for w in got["data"]
        ]
        summary.text = f"{got['total']:,} window(s)"

    apply.on_click(lambda: load_into(error, reload))
    await load_into(error, reload)
    # windows close as the archiver writes them (a flush answers once its task is queued)
    LiveReload(ctx, reload, None, every_s=POLL_S, poll_s=POLL_S).restart()


PAGE = Page(
    path=path_of(__name__),
    title="Archive",
    icon="inventory_2",
    needs=("replay:read",),
    build=build,
)
