"""placeholder"""

from __future__ import annotations

from nicegui import ui

from millrace.api.console.pages import Page, PageContext


async def build(ctx: PageContext) -> None:
    ui.label("todo")


PAGE = Page(path="/live", title="live", icon="x", needs=("signals:read",), build=build)
