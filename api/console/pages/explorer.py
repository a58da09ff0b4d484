"""Explorer: an identity's signals over a time range as one time-series chart (ECharts).

The range comes from a preset or custom times; :mod:`..resolution` decides between raw
readings and 1m/5m/1h aggregates (average line with a min/max band) so no chart asks for
more than a few thousand points per signal. Zooming (wheel, drag, the slider, or the
keyboard-reachable zoom and pan buttons) asks the API again for the new range. Signals
with different units get their own y-axis. The CSV download holds exactly the points
drawn. The chart element carries the range and resolution it shows as ``data-*``
attributes (tests compare its points with the API's).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

from nicegui import events, ui

from millrace.api.console.client import ConsoleApiError
from millrace.api.console.pages import Page, PageContext, path_of
from millrace.api.console.resolution import (
    MAX_POINTS,
    PRESETS,
    iso,
    parse_time,
    plan,
    shifted,
    to_csv,
    units_axes,
    zoomed,
)

PALETTE = ["#1d4ed8", "#b91c1c", "#047857", "#7c3aed", "#b45309", "#0e7490", "#be185d"]
Series = dict[str, list[dict[str, Any]]]


async def fetch(
    ctx: PageContext, identity: str, signals: list[str], start: int, end: int
) -> tuple[str | None, bool, Series]:
    """``(bucket, truncated, points per signal oldest first)`` for the range."""
    path = f"/identities/{quote(identity, safe='')}/signals"
    window = {"start_time": start, "end_time": end, "epoch": "ms", "limit": MAX_POINTS}
    chosen = plan(start, end)
    if chosen.bucket is None:
        raw = await ctx.api.get(path, signals=",".join(signals), **window)
        if raw["meta"]["pagination"].get("next_page") is None:
            return None, False, _oldest_first(raw["data"]["signals"])
        chosen = plan(start, end, raw_too_long=True)
    agg = await ctx.api.get(
        path + "/aggregates",
        signals=",".join(signals),
        bucket=chosen.bucket,
        fields="min,max,avg",
        **window,
    )
    return chosen.bucket, chosen.truncated, _oldest_first(agg["data"]["signals"])


def _oldest_first(series: Series) -> Series:
    return {name: sorted(points, key=lambda p: p["timestamp"]) for name, points in series.items()}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else None


def chart_options(
    bucket: str | None, series: Series, units: dict[str, str], start: int, end: int
) -> dict[str, Any]:
    """ECharts options: a line per signal; with aggregates a min/max band under it."""
    axes = units_axes(units.get(s, "") for s in series)
    out: list[dict[str, Any]] = []
    for n, (signal, points) in enumerate(series.items()):
        unit = units.get(signal, "")
        label = f"{signal} [{unit}]" if unit else signal
        color = PALETTE[n % len(PALETTE)]
        common = {"type": "line", "yAxisIndex": axes[unit], "color": color, "symbol": "none"}
        if bucket is None:
            data = [[p["timestamp"], _number(p.get("value"))] for p in points]
            out.append({**common, "id": f"{signal}:value", "name": label, "data": data})
            continue
        lows = [[p["timestamp"], p.get("min")] for p in points]
        widths = [
            [p["timestamp"], None if p.get("min") is None else p["max"] - p["min"]] for p in points
        ]
        band = {**common, "stack": f"band:{signal}", "lineStyle": {"opacity": 0}}
        band_name = f"{label} min/max"
        out.append({**band, "id": f"{signal}:min", "name": band_name, "data": lows})
        out.append(
            {
                **band,
                "id": f"{signal}:band",
                "name": band_name,
                "data": widths,
                "areaStyle": {"opacity": 0.2, "color": color},
            }
        )
        avg = [[p["timestamp"], p.get("avg")] for p in points]
        out.append({**common, "id": f"{signal}:avg", "name": label, "data": avg})
    y_axes = [
        {
            "type": "value",
            "name": unit,
            "scale": True,
            "position": "left" if i == 0 else "right",
            "offset": max(0, i - 1) * 60,
        }
        for unit, i in axes.items()
    ] or [{"type": "value"}]
    return {
        "animation": False,
        "aria": {"enabled": True},
        "tooltip": {"trigger": "axis"},
        "legend": {"type": "scroll", "top": 0},
        "grid": {"left": 60, "right": 40 + 60 * max(0, len(axes) - 1), "top": 40, "bottom": 70},
        "xAxis": {"type": "time", "min": start, "max": end},
        "yAxis": y_axes,
        "dataZoom": [
            {"type": "inside", "start": 0, "end": 100},
            {"type": "slider", "start": 0, "end": 100},
        ],
        "series": out,
    }


async def build(ctx: PageContext) -> None:
    now = int(time.time() * 1000)
    q = ctx.query
    preset = q.get("range", "1 hour") if q.get("range") in PRESETS else "1 hour"
    custom = bool(q.get("from") or q.get("to"))
    state: dict[str, Any] = {
        "start": parse_time(q.get("from", "")) or now - PRESETS[preset] * 1000,
        "end": parse_time(q.get("to", "")) or now,
        "bucket": None,
        "series": {},
        "zoom": None,
    }
    # every element is made before the first await: NiceGUI sends the page then, and the
    # chart's code loads while the API answers (made later, it would load after them)
    units: dict[str, str] = {}
    chosen = q.get("identity") or ""

    with ui.row().classes("w-full items-end gap-3 flex-wrap"):
        identity = ui.select(
            [chosen] if chosen else [],
            label="Identity",
            with_input=True,
            new_value_mode="add-unique",
            value=q.get("identity") or None,
        ).classes("min-w-[14rem]")
        signals = (
            ui.select([], label="Signals", multiple=True, with_input=True, value=[])
            .classes("min-w-[18rem]")
            .props("use-chips")
        )
        range_select = ui.select(
            list(PRESETS), label="Range", value=None if custom else preset
        ).classes("w-32")
        start_in = ui.input("From (UTC)", value=iso(state["start"])[:19]).classes("w-52")
        end_in = ui.input("To (UTC)", value=iso(state["end"])[:19]).classes("w-52")
        show = ui.button("Show").props("name=show")
    with ui.row().classes("w-full items-center gap-2 flex-wrap"):
        zoom_in = ui.button("Zoom in", icon="zoom_in").props("flat name=zoom-in")
        zoom_out = ui.button("Zoom out", icon="zoom_out").props("flat name=zoom-out")
        pan_left = ui.button("Earlier", icon="chevron_left").props("flat name=pan-left")
        pan_right = ui.button("Later", icon="chevron_right").props("flat name=pan-right")
        download = ui.button("Download CSV", icon="download").props("flat name=download-csv")
        info = ui.label("").props('data-testid="explorer-info" role="status"')
    chart = ui.echart(chart_options(None, {}, units, state["start"], state["end"]))
    chart.classes("w-full h-[28rem]").props('data-testid="explorer-chart"')
    chart.props('aria-label="time series of the selected signals"')

    async def load_signals() -> None:
        if not identity.value:
            return
        rows = await ctx.api.get("/signals/latest", identities=identity.value, limit=1000)
        names = sorted({r["signal"] for r in rows["data"]})
        signals.set_options(names)
        wanted = [s for s in q.get("signals", "").split(",") if s in names]
        signals.value = wanted or names[:1]

    async def draw() -> None:
        if not identity.value or not signals.value:
            info.text = "choose an identity and signals"
            return
        start, end = state["start"], state["end"]
        try:
            bucket, truncated, series = await fetch(
                ctx, identity.value, list(signals.value), start, end
            )
        except ConsoleApiError as exc:
            info.text = f"The API refused: {exc.message}"
            return
        state.update(bucket=bucket, series=series)
        chart.options.clear()
        chart.options.update(chart_options(bucket, series, units, start, end))
        chart.props(f'data-start="{start}" data-end="{end}" data-bucket="{bucket or "raw"}"')
        chart.update()
        count = sum(len(p) for p in series.values())
        kind = "raw readings" if bucket is None else f"{bucket} aggregates (average, min/max band)"
        more = f"; newest {MAX_POINTS} buckets shown" if truncated else ""
        info.text = f"{kind}, {count} points, {iso(start)} to {iso(end)}{more}"
        start_in.value, end_in.value = iso(start)[:19], iso(end)[:19]

    async def apply_range(start: int, end: int) -> None:
        state["start"], state["end"] = start, end
        await draw()

    async def on_show() -> None:
        start, end = parse_time(start_in.value or ""), parse_time(end_in.value or "")
        if start is None or end is None or end <= start:
            info.text = "From and To must be times like 2026-01-31 08:00, From before To"
            return
        await apply_range(start, end)

    async def on_preset() -> None:
        if range_select.value not in PRESETS:
            return
        end = int(time.time() * 1000)
        await apply_range(end - PRESETS[range_select.value] * 1000, end)

    def on_zoom(e: events.GenericEventArguments) -> None:
        args = e.args if isinstance(e.args, dict) else {}
        part = (args.get("batch") or [args])[0]
        if "start" in part and "end" in part:
            state["zoom"] = (float(part["start"]), float(part["end"]), time.monotonic())

    async def settle_zoom() -> None:
        # the slider reports every step of a drag: ask the API once it rests
        if state["zoom"] is None or time.monotonic() - state["zoom"][2] < 0.4:
            return
        lo, hi, _ = state["zoom"]
        state["zoom"] = None
        if (lo, hi) != (0.0, 100.0):
            await apply_range(*zoomed(state["start"], state["end"], lo, hi))

    async def by(factor: float, shift: float) -> None:
        await apply_range(*shifted(state["start"], state["end"], factor, shift))

    def to_file() -> None:
        text = to_csv(state["bucket"], state["series"])
        ui.download.content(text, f"millrace-{identity.value}.csv", "text/csv")

    show.on_click(on_show)
    range_select.on_value_change(on_preset)
    chart.on("chart:datazoom", on_zoom)
    zoom_in.on_click(lambda: by(0.5, 0))
    zoom_out.on_click(lambda: by(2.0, 0))
    pan_left.on_click(lambda: by(1.0, -0.5))
    pan_right.on_click(lambda: by(1.0, 0.5))
    download.on_click(to_file)

    async def known() -> None:
        latest = await ctx.api.get("/signals/latest", limit=1000)
        seen = {row["identity"] for row in latest["data"]} | {chosen, identity.value or ""}
        identity.set_options(sorted(seen - {""}))

    async def described() -> None:
        if ctx.can("resources:read"):
            listed = await ctx.api.get("/resources")
            units.update({r["name"]: r.get("unit") or "" for r in listed.get("items", [])})

    # the chart needs the units (its axes) and the identity's signals; the choice of
    # identities only the select: asked at once
    await asyncio.gather(known(), described(), load_signals())
    if identity.value:
        await draw()
    identity.on_value_change(load_signals)
    signals.on_value_change(draw)
    ui.timer(0.2, settle_zoom)  # after the awaits: a timer makes NiceGUI send the page


PAGE = Page(
    path=path_of(__name__),
    title="Explorer",
    icon="show_chart",
    needs=("signals:read",),
    build=build,
)
