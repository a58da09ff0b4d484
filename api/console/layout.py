"""The frame every console page shares: a header with the system's status, the
navigation (only the pages the caller may see) and who is signed in; a skip link and a
``main`` landmark for keyboard and screen-reader users."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nicegui import ui
from nicegui.element import Element

from millrace.api.console.client import ConsoleApiError
from millrace.api.console.pages import Page, PageContext

#: colours with at least 4.5:1 contrast on white and on the header's slate
STYLE = """
:root { --q-primary: #1d4ed8; }
.mr-header { background: #0f172a; color: #f8fafc; }
.mr-nav a { color: #e2e8f0; text-decoration: none; padding: 6px 10px; border-radius: 6px; }
.mr-nav a:hover, .mr-nav a:focus-visible { background: #1e293b; outline: 2px solid #93c5fd; }
.mr-nav a[aria-current="page"] { background: #1e40af; color: #fff; }
.mr-ok { color: #166534; background: #dcfce7; }
.mr-bad { color: #991b1b; background: #fee2e2; }
.mr-chip { padding: 2px 10px; border-radius: 999px; font-weight: 600; }
.mr-figure a { color: #1d4ed8; }
:focus-visible { outline: 2px solid #1d4ed8; outline-offset: 2px; }
/* Quasar sets outline 0 on focusable boxes (a table's), and on buttons with an important
   rule in a cascade layer that no page rule can outrank; its focus helper shows nothing
   in some browsers. A keyboard user must see where focus is: boxes and links get the
   outline, buttons a ring of box shadow. Quasar's fields show focus with their own
   underline, and keep it. */
[tabindex]:not(input):focus-visible, a:focus-visible {
  outline: 2px solid #1d4ed8 !important; outline-offset: 2px;
}
.q-btn:focus-visible { box-shadow: 0 0 0 2px #fff, 0 0 0 4px #1d4ed8 !important; }
.mr-header a:focus-visible { outline-color: #93c5fd !important; }
.mr-header .q-btn:focus-visible { box-shadow: 0 0 0 2px #93c5fd !important; }
.mr-nav { padding: 3px; }
/* a tablet: the pages' links take a row of their own that scrolls sideways (a focused
   link scrolls into view), under the name, status and sign-out */
@media (max-width: 1023.98px) {
  .mr-header .mr-nav { order: 10; flex: 1 0 100%; flex-wrap: nowrap; overflow-x: auto;
                      scrollbar-width: thin; scrollbar-color: #64748b transparent; }
  .mr-header .mr-nav a { white-space: nowrap; }
}
"""


#: a page that goes away (a reload, the next page, a closed tab) tells the server at once.
#: Over long polling the server otherwise notices only when the ping times out (NiceGUI:
#: 8 + 4 s) and then keeps the page its reconnect timeout (10 s) longer, its timers
#: polling the API for a page nobody sees. An Engine.IO close packet ("1") posted to the
#: page's session by ``sendBeacon``, which the browser sends even while unloading.
LEAVE_JS = r"""
<script>
window.addEventListener("pagehide", () => {
  const io = window.socket && window.socket.io;
  const engine = io && io.engine;
  if (!engine || !engine.id || !navigator.sendBeacon) return;
  const path = io.opts.path.replace(/\/?$/, "/");
  navigator.sendBeacon(`${path}?EIO=4&transport=polling&sid=${encodeURIComponent(engine.id)}`, "1");
});
</script>
"""


def frame(
    ctx: PageContext, current: Page, pages: Sequence[Page]
) -> tuple[Element, Callable[[], None]]:
    """Draw the header; the page's ``main`` container, and what starts the header's
    status updates (call it once the page is built: a timer waits for the browser's
    connection, and that wait makes NiceGUI send the page as it is at that moment)."""
    ui.add_css(STYLE)
    ui.add_head_html(LEAVE_JS)
    main = ui.element("main").classes("w-full max-w-screen-xl mx-auto p-4 gap-4 flex flex-col")
    main.props('aria-label="page content"')
    with ui.header().classes("mr-header items-center gap-2 px-4 py-2 flex-wrap"):
        ui.link("millrace", "/").classes("text-lg font-bold text-white no-underline mr-4")
        nav = (
            ui.element("nav")
            .props('aria-label="console pages"')
            .classes("mr-nav flex gap-1 flex-wrap")
        )
        # on a narrow screen the links scroll sideways; Chrome does not scroll a partly
        # visible link into view when Tab focuses it, so the page does (in the browser)
        nav.on("focusin", js_handler="(e) => e.target.scrollIntoView({block: 'nearest'})")
        with nav:
            for page in pages:
                if ctx.can(*page.needs):
                    link = ui.link(page.title, page.path)
                    if page is current:
                        link.props('aria-current="page"')
        ui.space()
        status = ui.label("status …").classes("mr-chip").props('role="status" aria-live="polite"')
        ui.label(f"{ctx.session.name} ({ctx.session.role})").classes("text-sm")
        ui.button("Sign out", on_click=lambda: _sign_out(ctx)).props(
            "flat color=white no-caps name=sign-out"
        )

    ui.skip_link(target=main)  # after the header, which places itself first

    async def refresh_status() -> None:
        text, ok = await system_status(ctx)
        status.text = text
        status.classes(replace="mr-chip " + ("mr-ok" if ok else "mr-bad"))

    def follow_status() -> None:
        shown_timer(5.0, refresh_status, immediate=True)

    ui.page_title(f"{current.title} · millrace")
    return main, follow_status


def shown_timer(
    every_s: float, callback: Callable[[], Awaitable[None] | None], *, immediate: bool = True
) -> ui.timer:
    """``ui.timer`` whose ``callback`` runs only while the page's browser is connected.

    NiceGUI keeps a page whose tab went away (a reload, the next page) for its reconnect
    timeout (10 s here) and runs its timers all the while: an operator moving from page
    to page left every earlier page polling the API behind them, and on this 2-core
    machine each next page loaded slower (the overview's 7 calls every few seconds per
    page left). A tick of a page nobody sees is skipped; when the browser reconnects,
    the next tick refreshes it."""
    client = ui.context.client

    async def tick() -> None:
        if not client.has_socket_connection:
            return
        result: Any = callback()
        if result is not None:
            await result

    return ui.timer(every_s, tick, immediate=immediate)


def write_button(
    ctx: PageContext, permission: str, text: str, on_click: Callable[[], Awaitable[None]]
) -> ui.button | None:
    """A button that changes something, drawn only when the caller holds ``permission``
    (the API checks it again). It carries ``data-write`` so tests can tell that a role
    sees no write at all; a refusal is shown as the API worded it."""
    if not ctx.can(permission):
        return None

    async def run() -> None:
        try:
            await on_click()
        except ConsoleApiError as exc:
            ui.notify(f"The API refused: {exc.message}", type="negative")

    return ui.button(text, on_click=run).props(f'data-write="{permission}" no-caps')


async def system_status(ctx: PageContext) -> tuple[str, bool]:
    """One line for the header: readiness from ``/health/ready`` (no key needed)."""
    try:
        ready = await ctx.api.health("/health/ready")
    except ConsoleApiError as exc:
        return f"unreachable: {exc.message}", False
    ok = ready.get("status") == "ok"
    failing = [name for name, check in ready.get("checks", {}).items() if not check.get("ok")]
    return ("ready" if ok else "not ready: " + ", ".join(failing)), ok


async def _sign_out(ctx: PageContext) -> None:
    await ctx.api.sign_out()
    ui.navigate.to("/login")
