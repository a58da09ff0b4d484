"""One identity (``/identities?identity=<id>``, drawn by the identities page): its
signals as sparklines, its state with desired values to set, its tags, provisioning and
lock. See :mod:`.identities` for where each part comes from.

A desired value set here is ``POST /identities/{id}/state``; the resource's line then
reads ``pending`` until the device reports the value and the registry marks it
``acknowledged`` (or ``timed out``). The page reloads whenever the live stream brings a
reading of the identity, so the change shows without a reload.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from nicegui import ui
from nicegui.element import Element

from millrace.api.console.pages import PageContext
from millrace.api.console.widgets_ops import LiveReload, act, us_text

SPARK_SIGNALS = 24  # sparklines drawn at most; the state table lists every resource
WRITE = "identities:write"
SET = "state:set"


def value_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def state_word(s: dict[str, Any]) -> str:
    """Where a desired value stands: pending, acknowledged, timed out, or none set."""
    if s.get("set") is None:
        return "reported only"
    if s.get("pending"):
        return "pending"
    if s.get("timed_out_us"):
        return "timed out"
    if s.get("acknowledged_us"):
        return "acknowledged"
    return "set"


def parse_value(text: str, fmt: str) -> Any:
    """The typed desired value of ``text`` for a resource of format ``fmt`` (the API
    checks it against the definition and answers 400 naming the resource)."""
    if fmt == "string":
        return text
    if fmt == "boolean":
        return text.strip().lower() in ("true", "1", "on", "yes")
    try:
        number = float(text)
    except ValueError:
        return text  # the API refuses it, saying why
    return int(number) if number.is_integer() and "." not in text else number


def provisioning_text(row: dict[str, Any]) -> str:
    parts = [f"{row['auth_type']} credential" if row.get("auth_type") else "no credential"]
    for key, words in (
        ("provisioned_us", "provisioned"),
        ("provision_until_us", "may provision until"),
        ("credential_expires_us", "credential expires"),
    ):
        if row.get(key):
            parts.append(f"{words} {us_text(row[key])}")
    return "provisioning: " + ", ".join(parts)


def spark_options(points: list[dict[str, Any]]) -> dict[str, Any]:
    """A small line of ``(timestamp ms, avg)`` without axes' labels."""
    return {
        "animation": False,
        "grid": {"left": 2, "right": 2, "top": 2, "bottom": 2},
        "xAxis": {"type": "time", "show": False},
        "yAxis": {"type": "value", "show": False, "scale": True},
        "series": [
            {
                "type": "line",
                "showSymbol": False,
                "data": [[p["timestamp"], p.get("avg")] for p in points],
            }
        ],
        "tooltip": {"trigger": "axis"},
    }


async def last_hour(
    ctx: PageContext, identity: str, signals: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """The last hour's 1m averages of ``signals`` (oldest first)."""
    if not signals or not ctx.can("signals:read"):
        return {}
    end = int(time.time() * 1000)
    got = await ctx.api.get(
        f"/identities/{quote(identity, safe='')}/signals/aggregates",
        signals=",".join(signals),
        bucket="1m",
        fields="avg",
        start_time=end - 3_600_000,
        end_time=end,
        epoch="ms",
        limit=1000,
        order="asc",
    )
    return dict(got["data"]["signals"])


async def identity_page(ctx: PageContext, identity: str) -> None:
    path = f"/identities/{quote(identity, safe='')}"
    ui.link("← all identities", "/identities")
    head = ui.column().classes("gap-1").props('data-testid="identity-summary"')
    ui.label("Signals (last hour, 1 min averages)").classes("text-lg font-semibold").props(
        'role="heading" aria-level="2"'
    )
    sparks = ui.row().classes("w-full gap-3 flex-wrap")
    ui.label("State").classes("text-lg font-semibold").props('role="heading" aria-level="2"')
    states = ui.column().classes("w-full gap-1").props('data-testid="identity-state"')
    ui.label("Tags").classes("text-lg font-semibold").props('role="heading" aria-level="2"')
    tags = ui.column().classes("gap-1").props('data-testid="identity-tags"')
    defs: dict[str, dict[str, Any]] = {}
    if ctx.can("resources:read"):
        defs = {d["name"]: d for d in (await ctx.api.get("/resources"))["items"]}
    charts: dict[str, Any] = {}

    async def reload() -> None:
        row = await ctx.api.get(path)
        _summary(head, row)
        table.show(row.get("state") or {})
        _tags(ctx, tags, path, row.get("tags") or {}, reload)
        signals = sorted(row.get("state") or {})[:SPARK_SIGNALS]
        series = await last_hour(ctx, identity, signals)
        _sparks(sparks, charts, series, row.get("state") or {}, defs)

    table = StateTable(ctx, states, path, defs, lambda: reload())
    await reload()
    _controls(ctx, path, reload)
    subscription = [{"kind": "latest", "filters": {"identity": [identity]}}]
    LiveReload(ctx, reload, lambda: subscription, every_s=1.0).restart()


def _summary(box: Element, row: dict[str, Any]) -> None:
    box.clear()
    with box, ui.row().classes("gap-2 flex-wrap items-center"):
        ui.label(row["identity"]).classes("text-xl")
        ui.label(row["status"]).classes("mr-chip").props('data-testid="identity-status"')
        online = bool(row.get("online"))
        ui.label("online" if online else "offline").classes(
            "mr-chip " + ("mr-ok" if online else "mr-bad")
        )
        ui.label(f"last seen {us_text(row.get('lastseen_us')) or 'never'}")
        if row.get("lastip"):
            ui.label(f"from {row['lastip']}")
    with box:
        ui.label(provisioning_text(row)).props('data-testid="identity-provisioning"')


def _sparks(
    box: Element,
    charts: dict[str, Any],
    series: dict[str, list[dict[str, Any]]],
    state: dict[str, Any],
    defs: dict[str, dict[str, Any]],
) -> None:
    if set(charts) != set(series):  # redraw the cards only when the signals change
        box.clear()
        charts.clear()
        with box:
            for signal in sorted(series):
                with ui.card().classes("w-56 gap-0 p-2").props(f'aria-label="signal {signal}"'):
                    unit = defs.get(signal, {}).get("unit", "")
                    ui.label(f"{signal}" + (f" [{unit}]" if unit else "")).classes("text-sm")
                    value = ui.label("").classes("font-semibold")
                    chart = ui.echart(spark_options([])).classes("w-full h-12")
                    chart.props(f'aria-label="{signal} over the last hour"')
                    charts[signal] = (value, chart)
    for signal, points in series.items():
        value, chart = charts[signal]
        value.text = value_text((state.get(signal) or {}).get("reported"))
        chart.options.update(spark_options(points))
        chart.update()


class StateTable:
    """The resources' lines, drawn once per set of resources and updated in place (a
    redraw would drop what the user is typing into a desired-value box)."""

    def __init__(
        self, ctx: PageContext, box: Element, path: str, defs: dict[str, Any], reload: Any
    ) -> None:
        self.ctx, self.box, self.path, self.defs, self.reload = ctx, box, path, defs, reload
        self.lines: dict[str, dict[str, ui.label]] = {}

    def show(self, state: dict[str, Any]) -> None:
        if set(state) != set(self.lines):
            self._draw(sorted(state))
        for name, s in state.items():
            line = self.lines[name]
            line["reported"].text = f"reported {value_text(s.get('reported'))}"
            line["desired"].text = f"desired {value_text(s.get('set')) or '-'}"
            word = state_word(s)
            line["word"].text = word
            tone = "mr-ok" if word == "acknowledged" else "mr-bad" if word == "timed out" else ""
            line["word"].classes(replace=f"mr-chip {tone}")
            line["word"].props(f'data-state="{word}"')
            line["by"].text = f"by {s['set_by']}" if s.get("set_by") else ""

    def _draw(self, names: list[str]) -> None:
        self.box.clear()
        self.lines.clear()
        with self.box:
            if not names:
                ui.label("nothing reported or set yet")
            for name in names:
                with (
                    ui.row()
                    .classes("items-center gap-3 flex-wrap")
                    .props(f'data-testid="state-{name}"')
                ):
                    ui.label(name).classes("font-semibold min-w-[10rem]")
                    self.lines[name] = {
                        "reported": ui.label(""),
                        "desired": ui.label(""),
                        "word": ui.label("").props(f'data-testid="state-word-{name}"'),
                        "by": ui.label("").classes("text-sm text-slate-700"),
                    }
                    d = self.defs.get(name, {})
                    if d.get("settable") and self.ctx.can(SET):
                        _setter(self.ctx, self.path, name, d, self.reload)


def _setter(ctx: PageContext, path: str, name: str, d: dict[str, Any], reload: Any) -> None:
    box = ui.input(f"New value of {name}").props(f"name=desired-{name} dense")

    async def send() -> None:
        value = parse_value(box.value or "", str(d.get("format", "number")))
        await ctx.api.post(f"{path}/state", {name: value})
        ui.notify(f"{name} set to {value_text(value)}: pending until the device reports it")
        await reload()

    act(ctx, SET, "Set", send, f"set-{name}")


def _tags(
    ctx: PageContext, box: Element, path: str, tags: dict[str, list[str]], reload: Any
) -> None:
    shown = repr(sorted(tags.items()))
    if getattr(box, "_shown", None) == shown:
        return  # unchanged: a redraw would move the keyboard focus
    box._shown = shown  # type: ignore[attr-defined]
    box.clear()
    with box:
        for tag in sorted(tags):
            with ui.row().classes("items-center gap-2"):
                ui.label(f"{tag}: {', '.join(tags[tag]) or '(no value)'}").props(
                    'data-testid="tag"'
                )

                async def remove(tag: str = tag) -> None:
                    await ctx.api.request("DELETE", f"{path}/tags/{quote(tag, safe='')}")
                    await reload()

                act(ctx, WRITE, f"Remove tag {tag}", remove, f"remove-tag-{tag}")
        if not tags:
            ui.label("no tags")


def _controls(ctx: PageContext, path: str, reload: Any) -> None:
    if not ctx.can(WRITE):
        return
    with ui.row().classes("items-end gap-3 flex-wrap"):
        tag = ui.input("Tag").props("name=tag-name")
        value = ui.input("Tag value (optional)").props("name=tag-value")

        async def add() -> None:
            if not tag.value:
                ui.notify("name the tag first", type="warning")
                return
            values = [value.value] if value.value else []
            await ctx.api.post(f"{path}/tags", {"tags": {tag.value: values}})
            tag.value = value.value = ""
            await reload()

        act(ctx, WRITE, "Add tag", add, "add-tag")
    with ui.row().classes("items-center gap-3 flex-wrap"):

        async def post(action: str) -> None:
            await ctx.api.post(f"{path}/{action}")
            await reload()

        async def reprovision() -> None:
            await ctx.api.request("PATCH", path, json={"status": "reprovision"})
            await reload()

        act(ctx, WRITE, "Lock", lambda: post("lock"), "lock")
        act(ctx, WRITE, "Unlock", lambda: post("unlock"), "unlock")
        act(ctx, WRITE, "Allow reprovisioning", reprovision, "reprovision")
