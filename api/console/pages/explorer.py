"""placeholder"""

from __future__ import annotations

from nicegui import ui

from millrace.api.console.pages import Page, PageContext


async def build(ctx: PageContext) -> None:
    ui.label("todo")


PAGE = Page(path="/explorer", title="explorer", icon="x", needs=("signals:read",), build=build)
