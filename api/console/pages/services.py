"""Services: the installed commissioning files; install or edit one in an editor that
marks validation violations at their line; enable, disable, remove; a service's
resources with their desired and current state and deviations, and the latest data of
the identities its endpoints name.

The list is ``GET /services``; ``/services?service=<id>`` is one service (``GET
/services/{id}``: its file with secrets masked, its resources), reloaded when the live
stream reports a deviation of it and every few seconds for the data. Installing is
``POST /services`` and saving ``PUT /services/{id}`` with the YAML text (as the JSON
envelope ``{"commissioning": text}``), validated first by ``POST /config/validate``
(:class:`~millrace.api.console.widgets_editor.CommissioningEditor`). Writes need
``services:manage``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import yaml
from nicegui import ui
from nicegui.element import Element

from millrace.api.console.client import ConsoleApiError
from millrace.api.console.pages import Page, PageContext, path_of
from millrace.api.console.widgets_editor import CommissioningEditor
from millrace.api.console.widgets_ops import (
    LiveReload,
    act,
    link_column,
    table,
    time_text,
    us_text,
)
from millrace.api.console.yaml_lines import masked_problems
from millrace.api.service_files import MASKED

MANAGE = "services:manage"
COLUMNS = [
    ("id", "Service"),
    ("description", "Description"),
    ("status", "Status"),
    ("revision", "Revision"),
    ("connections", "Connections"),
    ("endpoints", "Endpoints"),
    ("deviations", "Deviations"),
    ("updated", "Updated (UTC)"),
]
RESOURCE_COLUMNS = [
    ("resource_id", "Resource"),
    ("resource_type", "Type"),
    ("desired_state", "Desired"),
    ("current_state", "Current"),
    ("deviated", "Deviation"),
    ("info", "Info"),
    ("runner", "Runner"),
    ("since", "Since (UTC)"),
]
DATA_COLUMNS = [
    ("identity", "Identity"),
    ("signal", "Signal"),
    ("value", "Value"),
    ("time", "Time (UTC)"),
]
STARTER = """\
service: my-service
description: what this service collects
connections:
  sim:
    protocol: simulator
    devices: 2
    signals: 3
    interval_ms: 1000
    identity_prefix: "my-"
"""


def service_row(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": s["id"],
        "description": s.get("description", ""),
        "status": s["status"],
        "revision": s["revision"],
        "connections": s["connections"],
        "endpoints": s["endpoints"],
        "deviations": s["deviations"],
        "updated": us_text(s.get("updated_us")),
    }


def resource_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["resource_id"],
        **{k: r.get(k) for k in ("resource_id", "resource_type", "desired_state", "runner")},
        "current_state": r.get("current_state") or "",
        "deviated": "DEVIATED" if r.get("deviated") else "none",
        "info": r.get("info") or "",
        "since": us_text(r.get("ts_us")),
    }


def endpoint_identities(file: dict[str, Any]) -> list[str]:
    """The identities the service's endpoints name (templated ones name none yet)."""
    names = {str(e.get("identity", "")) for e in file.get("endpoints") or []}
    return sorted(n for n in names if n and not any(c in n for c in "{}*+#?["))


async def build(ctx: PageContext) -> None:
    sid = ctx.query.get("service")
    if sid:
        await _one(ctx, sid)
    else:
        await _list(ctx)


async def _list(ctx: PageContext) -> None:
    grid = table(COLUMNS, "service-table", "services")
    link_column(grid, "id", "/services?service=")

    async def reload() -> None:
        grid.rows = [service_row(s) for s in (await ctx.api.get("/services"))["data"]]

    if ctx.can(MANAGE):
        await _installer(ctx)
    # the page's elements are all made before the first API call, so the page is sent
    # whole (NiceGUI sends it once the handler awaits past its response timeout)
    await reload()
    live = LiveReload(ctx, reload, lambda: [{"kind": "deviation", "filters": {}}], every_s=2.0)
    live.restart()


async def _installer(ctx: PageContext) -> None:
    """The editor that installs a new service (for those who may manage services)."""
    ui.label("Install a service").classes("text-lg font-semibold").props(
        'role="heading" aria-level="2"'
    )
    editor = CommissioningEditor(ctx, STARTER)
    await editor.offer_templates()

    async def install() -> None:
        if (await editor.validate()) and editor.errors():
            ui.notify("fix the marked violations first", type="warning")
            return
        try:
            made = await ctx.api.post("/services", {"commissioning": editor.text})
        except ConsoleApiError as exc:
            editor.refused(exc.message, exc.details)
            return
        sid = made["data"]["id"]
        ui.notify(f"service {sid} installed")
        ui.navigate.to(f"/services?service={quote(sid, safe='')}")

    with ui.row().classes("gap-3"):
        ui.button("Validate", on_click=editor.validate).props("no-caps name=validate")
        act(ctx, MANAGE, "Install", install, "install")


async def _one(ctx: PageContext, sid: str) -> None:
    path = f"/services/{quote(sid, safe='')}"
    ui.link("← all services", "/services")
    head = ui.row().classes("items-center gap-2 flex-wrap").props('data-testid="service-summary"')
    if ctx.can(MANAGE):
        with ui.row().classes("gap-3 flex-wrap"):
            act(ctx, MANAGE, "Enable", lambda: switch("enable"), "enable")
            act(ctx, MANAGE, "Disable", lambda: switch("disable"), "disable")
            act(ctx, MANAGE, "Remove", lambda: remove(), "remove")
    _heading("Resources: desired and current state")
    resources = table(RESOURCE_COLUMNS, "resource-table", "the service's resources")
    _heading("Latest data of its endpoints' identities")
    data = table(DATA_COLUMNS, "service-data", "latest readings of the service")
    shown: dict[str, Any] = {}

    async def reload() -> None:
        one = (await ctx.api.get(path))["data"]
        shown.update(one)
        _summary(head, one)
        resources.rows = [resource_row(r) for r in one.get("resources", [])]
        names = endpoint_identities(one.get("file") or {})
        if names and ctx.can("signals:read"):
            got = await ctx.api.get("/signals/latest", identities=",".join(names), limit=200)
            data.rows = [
                {
                    "id": f"{i['identity']}/{i['signal']}",
                    "identity": i["identity"],
                    "signal": i["signal"],
                    "value": i.get("value"),
                    "time": time_text(i.get("timestamp")),
                }
                for i in got["data"]
            ]

    async def switch(action: str) -> None:
        await ctx.api.post(f"{path}/{action}")
        ui.notify(f"service {sid} {action}d")
        await reload()

    async def remove() -> None:
        await ctx.api.request("DELETE", path)
        ui.notify(f"service {sid} removed")
        ui.navigate.to("/services")

    await reload()
    deviations = [{"kind": "deviation", "filters": {"service_ids": [sid]}}]
    # deviations come on the stream; the data table is polled besides
    LiveReload(ctx, reload, lambda: deviations, every_s=1.0, poll_s=3.0, poll_always=True).restart()
    if ctx.can(MANAGE):
        _edit(ctx, path, shown, reload)


def _heading(text: str) -> None:
    ui.label(text).classes("text-lg font-semibold").props('role="heading" aria-level="2"')


def _summary(box: Element, s: dict[str, Any]) -> None:
    box.clear()
    with box:
        ui.label(s["id"]).classes("text-xl")
        ui.label(s["status"]).classes(
            "mr-chip " + ("mr-ok" if s["status"] == "enabled" else "")
        ).props('data-testid="service-status"')
        ui.label(f"revision {s['revision']}")
        ui.label(f"{s['deviations']} deviation(s)").classes(
            "mr-chip " + ("mr-bad" if s["deviations"] else "mr-ok")
        )
        if s.get("description"):
            ui.label(s["description"])


def _edit(ctx: PageContext, path: str, shown: dict[str, Any], reload: Any) -> None:
    _heading("Edit the commissioning file")
    ui.label(
        "Secrets are shown as *** (the API never returns them): type them again, or use "
        "${ENV} references, before saving."
    ).classes("text-sm text-slate-700")
    text = yaml.safe_dump(shown.get("file") or {}, sort_keys=False, allow_unicode=True)
    editor = CommissioningEditor(ctx, text, testid="service-edit")

    async def save() -> None:
        if still := masked_problems(editor.text):  # never store the placeholder as a secret
            editor.show(still)
            named = ", ".join(p.json_path for p in still)
            editor.summary.text = f"Not saved: {named} still hold {MASKED}"
            ui.notify(f"type the secret again (or a ${{ENV}} reference): {named}", type="warning")
            return
        if (await editor.validate()) and editor.errors():
            ui.notify("fix the marked violations first", type="warning")
            return
        try:
            await ctx.api.request("PUT", path, json={"commissioning": editor.text})
        except ConsoleApiError as exc:
            editor.refused(exc.message, exc.details)
            return
        ui.notify("service updated")
        await reload()

    with ui.row().classes("gap-3"):
        ui.button("Validate", on_click=editor.validate).props("no-caps name=validate")
        act(ctx, MANAGE, "Save", save, "save")


PAGE = Page(
    path=path_of(__name__),
    title="Services",
    icon="settings_input_component",
    needs=("services:read",),
    build=build,
)
