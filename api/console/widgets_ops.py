"""Widgets the operations pages share (alarms, activities, identities, services, archive,
users): a live reload that follows the API's stream, paged tables, per-item results of a
batch write, and a guard that shows the API's refusal instead of raising.

:class:`LiveReload` keeps a page's list in step with the system: a subscription of the
live stream (``ctx.api.events``) marks the list stale whenever a matching item arrives,
and a timer reloads it from its list endpoint at most every ``every_s`` — so the list
keeps the API's own sort, filters and paging while following the stream. When the
stream is refused (a role without ``stream:read``, a filter the stream does not take)
the page polls instead, and says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nicegui import background_tasks, ui

from millrace.api.console.client import ConsoleApiError, SignedOutError
from millrace.api.console.layout import shown_timer, write_button
from millrace.api.console.pages import PageContext

Reload = Callable[[], Awaitable[None]]


async def guarded(action: Callable[[], Awaitable[Any]], what: str = "") -> Any:
    """``action()``'s answer; a refusal of the API is shown (as the API worded it) and
    answers None."""
    try:
        return await action()
    except ConsoleApiError as exc:
        ui.notify(f"{what + ': ' if what else ''}the API refused: {exc.message}", type="negative")
        return None


async def load_into(error: ui.label, reload: Reload) -> bool:
    """Run ``reload`` after a filter change; a refusal of the API (which names the
    offending filter) is written into ``error``. Whether it loaded."""
    try:
        await reload()
    except ConsoleApiError as exc:
        error.text = f"The API refused the filters: {exc.message}"
        return False
    error.text = ""
    return True


async def polled(refresh: Reload, error: ui.label, every_s: float) -> Reload:
    """Run ``refresh`` now and every ``every_s`` seconds; a refusal of the API is
    written into ``error`` and the page keeps what it showed. The guarded refresh is
    returned, for a page that also refreshes after a write."""

    async def safe() -> None:
        try:
            await refresh()
        except ConsoleApiError as exc:
            error.text = f"error: {exc.message}"

    await safe()
    shown_timer(every_s, safe)
    return safe


async def gathered(calls: dict[str, Awaitable[Any]]) -> dict[str, Any]:
    """The answers of ``calls``, asked at once, by name."""
    answers = await asyncio.gather(*calls.values())
    return dict(zip(calls, answers, strict=True))


def error_line() -> ui.label:
    """Where a page says what the API refused (announced to screen readers)."""
    return ui.label("").classes("text-red-800").props('role="alert" data-testid="filter-error"')


def act(
    ctx: PageContext,
    permission: str,
    text: str,
    on_click: Callable[[], Awaitable[None]],
    name: str,
) -> ui.button | None:
    """A write button (:func:`~millrace.api.console.layout.write_button`: only for a
    caller holding ``permission``) named ``name`` for keyboard users' and tests' sake."""
    button = write_button(ctx, permission, text, on_click)
    if button is not None:
        button.props(f"name={name}")
    return button


def us_text(us: Any) -> str:
    """Microseconds since the epoch as ``YYYY-MM-DD HH:MM:SS`` (UTC), '' for none."""
    if not isinstance(us, int):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(us / 1_000_000))


def time_text(value: Any) -> str:
    """An ISO-8601 time of the API as ``YYYY-MM-DD HH:MM:SS`` (UTC), '' for none."""
    if not value:
        return ""
    text = str(value).replace("T", " ")
    return text[:19]


class LiveReload:
    """Reload a page's data when the live stream says something changed (see the module
    docstring); ``status`` tells the user which of stream or polling is used."""

    def __init__(
        self,
        ctx: PageContext,
        reload: Reload,
        subscriptions: Callable[[], list[dict[str, Any]]] | None,
        every_s: float = 1.0,
        poll_s: float = 5.0,
        poll_always: bool = False,
    ) -> None:
        """``subscriptions=None``: nothing on the stream says this data changed: poll.
        ``poll_always``: part of the data is not on the stream: poll besides."""
        self.ctx = ctx
        self.reload = reload
        self.subscriptions = subscriptions or (lambda: [])
        self.stale = False
        self.polling = subscriptions is None or not ctx.can("stream:read")
        self.poll_s = poll_s
        self.poll_always = poll_always
        self._since_poll = 0.0
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None
        self.status = ui.label("").classes("text-sm text-slate-700")
        self.status.props('data-testid="live-status" aria-live="off"')
        # made at the first (re)start, after the page's first load: a timer awaits the
        # browser's connection at once, which makes NiceGUI send the page before its data
        self.timer: ui.timer | None = None
        ui.context.client.on_delete(self.stop)

    def restart(self) -> None:
        """Follow the stream with the current subscriptions (after a filter change)."""
        self.stop()
        if self.timer is None:
            self.timer = shown_timer(self._every_s, self._tick)
        if self.polling:
            self.status.text = "updating every few seconds"
            return
        self.status.text = "live"
        self._task = background_tasks.create(self._follow(), name="console-live-reload")

    async def reapply(self, error: ui.label) -> None:
        """Reload after a filter change and follow the stream with the new filters; a
        refusal of the filters goes into ``error`` (see :func:`load_into`)."""
        if await load_into(error, self.reload):
            self.restart()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _follow(self) -> None:
        while True:
            try:
                async for _event, _data in self.ctx.api.events(self.subscriptions()):
                    self.stale = True
            except ConsoleApiError as exc:
                self.polling = True
                self.status.text = f"live stream refused ({exc.message}): polling instead"
                return
            await asyncio.sleep(1.0)  # the API ended the stream: open another

    async def _tick(self) -> None:
        if self.polling or self.poll_always:
            self._since_poll += self._every_s
            if self._since_poll >= self.poll_s:
                self._since_poll, self.stale = 0.0, True
        if not self.stale:
            return
        self.stale = False
        try:
            await self.reload()
        except SignedOutError:
            self.stop()  # signed out (maybe in another tab): stop asking
            if self.timer is not None:
                self.timer.deactivate()
            self.status.text = "signed out: reload the page to sign in"
        except ConsoleApiError as exc:
            self.status.text = f"reload refused: {exc.message}"


def table(
    columns: Sequence[tuple[str, str]],
    testid: str,
    label: str,
    row_key: str = "id",
    selection: str | None = None,
) -> ui.table:
    """A table with ``(field, header)`` columns, sortable in the browser, labelled for
    screen readers and tests."""
    cols = [
        {"name": f, "field": f, "label": h, "align": "left", "sortable": True} for f, h in columns
    ]
    t = ui.table(columns=cols, rows=[], row_key=row_key, selection=selection)  # type: ignore[arg-type]
    t.props(f'data-testid="{testid}" aria-label="{label}" flat bordered wrap-cells')
    t.props(":rows-per-page-options=[25,50,100,0]").classes("w-full")
    return t


def link_column(t: ui.table, field: str, href: str) -> None:
    """Draw ``field`` as a link to ``href`` + the value (URL-encoded)."""
    t.add_slot(
        f"body-cell-{field}",
        f'<q-td :props="props"><a class="text-blue-800 underline" '
        f":href=\"'{href}' + encodeURIComponent(props.value)\">{{{{ props.value }}}}</a></q-td>",
    )


class Pager:
    """Previous/next page of a list endpoint's ``page`` parameter, with the total."""

    def __init__(self, reload: Reload, limit: int = 100) -> None:
        self.page = 1
        self.limit = limit
        self.reload = reload
        with ui.row().classes("items-center gap-2"):
            self.back = ui.button("Previous page", on_click=self._previous).props(
                "flat no-caps name=previous-page"
            )
            self.label = ui.label("").props('data-testid="pager"')
            self.forward = ui.button("Next page", on_click=self._next).props(
                "flat no-caps name=next-page"
            )

    def show(self, meta: dict[str, Any]) -> None:
        p = meta.get("pagination", {})
        total = p.get("total_rows")
        pages = p.get("total_pages") or 1
        self.label.text = f"page {self.page} of {pages}" + (
            f" ({total:,} in all)" if total is not None else ""
        )
        self.back.set_enabled(self.page > 1)
        self.forward.set_enabled(p.get("next_page") is not None)

    async def _previous(self) -> None:
        self.page = max(1, self.page - 1)
        await guarded(self.reload)

    async def _next(self) -> None:
        self.page += 1
        await guarded(self.reload)


def batch_results(box: ui.column, results: list[dict[str, Any]], what: str) -> None:
    """One line per item of a batch answer (``id``, ``status``, ``error``)."""
    box.clear()
    ok = sum(1 for r in results if r.get("status") == 200)
    with box:
        ui.label(f"{what}: {ok} of {len(results)} done").classes("font-semibold")
        for r in results:
            good = r.get("status") == 200
            text = f"{r['id']}: " + ("done" if good else f"{r.get('status')} {r.get('error')}")
            ui.label(text).classes("mr-chip " + ("mr-ok" if good else "mr-bad")).props(
                f'data-testid="batch-result" data-status="{r.get("status")}"'
            )


def choice(label: str, options: dict[str, str], value: str = "") -> ui.select:
    """A labelled select of ``value -> text`` options; a ``value`` it does not offer (a
    hand-edited link) selects the first option."""
    chosen = value if value in options else next(iter(options))
    return ui.select(options, label=label, value=chosen).classes("min-w-[10rem]")
