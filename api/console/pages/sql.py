"""Analyst SQL: a query editor, the result as a table, and a chart when the result has
a time column; the same read-only rules as ``POST /api/v1/sql`` because it is that
endpoint (one statement, the allow-listed tables, the server's limits; a refusal is
shown as the API words it, naming what it refused).

The chart takes the first date/time column as its x axis and each numeric column as a
line (at most :data:`MAX_SERIES`); ECharts thins the drawing of long results with LTTB
sampling, so a large result draws as fast as a small one. The table pages through the
rows in the browser; the CSV download holds every row the API returned.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from nicegui import ui

from millrace.api.console.client import ConsoleApiError
from millrace.api.console.pages import Page, PageContext, path_of
from millrace.projections.sandbox import ANALYST_TABLES, AUDIT_TABLES

MAX_SERIES = 8
EXAMPLE = """\
SELECT toStartOfMinute(ts) AS minute, signal, avg(value) AS average
FROM millrace.readings
WHERE ts > now() - INTERVAL 1 HOUR
GROUP BY minute, signal
ORDER BY minute
LIMIT 5000"""
NUMERIC = ("Int", "UInt", "Float", "Decimal")


def _base(kind: str) -> str:
    """``Nullable(LowCardinality(Float64))`` -> ``Float64``."""
    while "(" in kind and kind.split("(", 1)[0] in ("Nullable", "LowCardinality"):
        kind = kind.split("(", 1)[1].rsplit(")", 1)[0]
    return kind


def is_time(kind: str) -> bool:
    return _base(kind).startswith(("DateTime", "Date"))


def is_number(kind: str) -> bool:
    return _base(kind).startswith(NUMERIC)


def chart_of(columns: list[dict[str, str]], rows: list[list[Any]]) -> dict[str, Any] | None:
    """ECharts options for a result with a time column and numeric columns (one line
    each); None when it has no such pair. A text column next to them (e.g. ``signal``)
    splits the lines by its values, as a long-format result means."""
    kinds = [c["type"] for c in columns]
    x = next((i for i, k in enumerate(kinds) if is_time(k)), None)
    numbers = [i for i, k in enumerate(kinds) if is_number(k) and i != x]
    if x is None or not numbers:
        return None
    label = next(
        (i for i, k in enumerate(kinds) if i != x and i not in numbers and "String" in k), None
    )
    series: dict[str, list[list[Any]]] = {}
    for row in rows:
        for i in numbers:
            name = columns[i]["name"]
            if label is not None:
                name = f"{row[label]} {name}" if len(numbers) > 1 else str(row[label])
            series.setdefault(name, []).append([str(row[x]).replace(" ", "T") + "Z", row[i]])
    lines = list(series.items())[:MAX_SERIES]
    return {
        "animation": False,
        "tooltip": {"trigger": "axis"},
        "legend": {"type": "scroll"},
        "grid": {"left": 60, "right": 20, "top": 40, "bottom": 40},
        "xAxis": {"type": "time"},
        "yAxis": {"type": "value", "scale": True},
        "dataZoom": [{"type": "inside"}, {"type": "slider"}],
        "series": [
            {
                "type": "line",
                "name": name,
                "showSymbol": False,
                "sampling": "lttb",
                "data": points,
            }
            for name, points in lines
        ],
        "aria": {"enabled": True},
    }


def to_csv(columns: list[dict[str, str]], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([c["name"] for c in columns])
    w.writerows(rows)
    return out.getvalue()


async def build(ctx: PageContext) -> None:
    tables = sorted(ANALYST_TABLES | (AUDIT_TABLES if ctx.can("audits:read") else set()))
    ui.label(
        "One read-only statement (SELECT, DESCRIBE, EXPLAIN) over: "
        + ", ".join(tables)
        + ". The server's limits apply."
    ).classes("text-sm text-slate-700")
    editor = ui.codemirror(ctx.query.get("q", EXAMPLE), language="SQL").classes("w-full h-48")
    editor.props('data-testid="sql-editor" aria-label="SQL query"')
    with ui.row().classes("items-end gap-3 flex-wrap"):
        max_rows = ui.number("Row limit", value=10_000, min=1, max=1_000_000, precision=0)
        run = ui.button("Run (Ctrl+Enter)").props("no-caps name=run-sql")
        download = ui.button("Download CSV").props("flat no-caps name=download-csv")
        meta = ui.label("").props('data-testid="sql-meta" aria-live="polite"')
    error = ui.label("").classes("text-red-800").props('role="alert" data-testid="sql-error"')
    chart = ui.echart({"series": []}).classes("w-full h-80")
    chart.props('data-testid="sql-chart" aria-label="chart of the result"')
    chart.set_visibility(False)
    grid = ui.table(columns=[], rows=[], row_key="_n").classes("w-full")
    grid.props('data-testid="sql-result" aria-label="query result" flat bordered dense')
    last: dict[str, Any] = {"columns": [], "rows": []}

    async def execute() -> None:
        try:
            answer = await ctx.api.post(
                "/sql", {"query": editor.value or "", "max_rows": int(max_rows.value or 10_000)}
            )
        except ConsoleApiError as exc:
            error.text = f"The API refused the query: {exc.message}"
            meta.text, grid.rows = "", []  # no earlier result under this query's text
            chart.set_visibility(False)
            return
        error.text = ""
        columns, rows = answer["columns"], answer["rows"]
        last.update(columns=columns, rows=rows)
        m = answer["meta"]
        meta.text = f"{m['rows']:,} rows, {m['rows_read']:,} read, {m['elapsed_ms']:,} ms"
        grid.columns = [
            {
                "name": str(i),
                "field": str(i),
                "label": f"{c['name']} ({c['type']})",
                "align": "left",
            }
            for i, c in enumerate(columns)
        ]
        grid.rows = [{"_n": n, **{str(i): v for i, v in enumerate(r)}} for n, r in enumerate(rows)]
        options = chart_of(columns, rows)
        chart.set_visibility(options is not None)
        if options is not None:
            chart.options.clear()
            chart.options.update(options)
            chart.update()

    def save() -> None:
        if not last["columns"]:
            ui.notify("run a query first", type="warning")
            return
        ui.download.content(to_csv(last["columns"], last["rows"]), "result.csv", "text/csv")

    run.on_click(execute)
    download.on_click(save)
    editor.map_key("Mod-Enter", lambda _: execute())
    grid.props(':pagination="{rowsPerPage: 50}"')


PAGE = Page(path=path_of(__name__), title="SQL", icon="terminal", needs=("sql:query",), build=build)
