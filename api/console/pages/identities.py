"""Identities: the device registry with filters and tags, status and last seen; one
identity's page (``/identities?identity=<id>``) with its signals as sparklines, its
state (desired and reported; set a desired value of a settable resource and watch it go
pending → acknowledged), its tags, provisioning and lock.

The list is ``GET /identities`` (regular expression, status, tag and value, last seen
before/after; ordered; paged by offset). The identity's page reads ``GET
/identities/{id}``, the last hour's 1m averages of its signals (one aggregates call)
and the resource definitions (``GET /resources``, which say what is settable); it
reloads when the live stream brings a reading of the identity, so a pending value
turns acknowledged in front of the user. Writes — ``POST .../state``, ``.../tags``,
``DELETE .../tags/{tag}``, ``.../lock``, ``.../unlock``, ``PATCH`` (reprovision) — are
offered to roles holding ``state:set`` or ``identities:write``.
"""

from __future__ import annotations

from typing import Any

from nicegui import ui

from millrace.api.console.pages import Page, PageContext, path_of
from millrace.api.console.widgets_ops import (
    LiveReload,
    act,
    choice,
    error_line,
    link_column,
    load_into,
    table,
    us_text,
)

STATUSES = ("whitelisted", "provisioned", "reprovision", "expired", "locked")
ORDERS = {
    "identity": "identity",
    "lastseen.desc": "last seen, newest first",
    "lastseen": "last seen, oldest first",
    "lastip": "last IP address",
}
COLUMNS = [
    ("identity", "Identity"),
    ("status", "Status"),
    ("online", "Online"),
    ("lastseen", "Last seen (UTC)"),
    ("lastip", "Last IP"),
    ("tags", "Tags"),
]
PAGE_ROWS = 100
WRITE = "identities:write"


def tags_text(tags: dict[str, list[str]]) -> str:
    return ", ".join(f"{k}={'|'.join(v)}" if v else k for k, v in sorted(tags.items()))


def list_row(i: dict[str, Any]) -> dict[str, Any]:
    return {
        "identity": i["identity"],
        "status": i["status"],
        "online": "online" if i.get("online") else "offline",
        "lastseen": us_text(i.get("lastseen_us")),
        "lastip": i.get("lastip") or "",
        "tags": tags_text(i.get("tags") or {}),
    }


async def build(ctx: PageContext) -> None:
    identity = ctx.query.get("identity")
    if identity:
        from millrace.api.console.pages.identity import identity_page

        await identity_page(ctx, identity)
    else:
        await _list(ctx)


async def _list(ctx: PageContext) -> None:
    q = ctx.query
    with ui.row().classes("w-full items-end gap-3 flex-wrap"):
        pattern = ui.input("Identity (regular expression)", value=q.get("pattern", ""))
        status = ui.select(list(STATUSES), label="Status", multiple=True, value=[]).classes(
            "min-w-[12rem]"
        )
        tag = ui.input("Has tag", value=q.get("tag", ""))
        tag_value = ui.input("Tag value")
        seen_after = ui.input("Seen after (ISO-8601)")
        order = choice("Order", ORDERS, "identity")
        apply = ui.button("Apply filters").props("no-caps name=apply-filters")
    error = error_line()
    grid = table(COLUMNS, "identity-table", "identities", row_key="identity")
    link_column(grid, "identity", "/identities?identity=")
    offset = {"at": 0}
    with ui.row().classes("items-center gap-2"):
        back = ui.button("Previous page").props("flat no-caps name=previous-page")
        shown = ui.label("").props('data-testid="pager"')
        forward = ui.button("Next page").props("flat no-caps name=next-page")

    async def reload() -> None:
        got = await ctx.api.get(
            "/identities",
            identity=pattern.value or None,
            status=",".join(status.value or []) or None,
            tag=tag.value or None,
            tag_value=tag_value.value or None,
            after=seen_after.value or None,
            order=order.value,
            limit=PAGE_ROWS,
            offset=offset["at"],
        )
        grid.rows = [list_row(i) for i in got["items"]]
        first = offset["at"] + 1 if got["items"] else 0
        shown.text = f"rows {first} to {offset['at'] + len(got['items'])}"
        back.set_enabled(offset["at"] > 0)
        forward.set_enabled(bool(got["meta"].get("may_load_more")))

    async def go(at: int) -> None:
        offset["at"] = max(0, at)
        await load_into(error, reload)

    back.on_click(lambda: go(offset["at"] - PAGE_ROWS))
    forward.on_click(lambda: go(offset["at"] + PAGE_ROWS))
    apply.on_click(lambda: go(0))
    if ctx.can(WRITE):
        _create_row(ctx, lambda: go(0))
    await go(0)
    # the registry has no stream kind: last seen and online are polled
    LiveReload(ctx, reload, None, every_s=5.0, poll_s=5.0).restart()


def _create_row(ctx: PageContext, reload: Any) -> None:
    with ui.row().classes("items-end gap-3 flex-wrap"):
        name = ui.input("New identity").props("name=new-identity")

        async def create() -> None:
            body: dict[str, Any] = {"identity": name.value} if name.value else {}
            made = await ctx.api.post("/identities", body)
            ui.notify(f"identity {made['identity']} created")
            name.value = ""
            await reload()

        act(ctx, WRITE, "Create identity", create, "create-identity")


PAGE = Page(
    path=path_of(__name__),
    title="Identities",
    icon="memory",
    needs=("identities:read",),
    build=build,
)
