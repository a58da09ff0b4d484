"""Registers the console's pages with NiceGUI: the sign-in page and every page of
:func:`~millrace.api.console.pages.pages`, each behind the browser's session and inside the
shared :mod:`~millrace.api.console.layout`.

A browser's session (its token) lives in this process's memory only, keyed by the random
id NiceGUI keeps in the browser's signed session cookie (``app.storage.browser``, signed
with a secret made at start: a restart signs everyone out); the token never reaches
the browser or the disk. A page without a session redirects to sign-in and back; a page
the caller's permissions do not cover says so instead of drawing.

When the page goes out: NiceGUI answers the request when the build returns, or as soon
as anything awaits the browser's connection (every ``ui.timer`` does, at once). A page
whose data comes within :data:`SEND_BY_S` is sent with it (the first paint holds the
data; nothing waits for the socket); a slower one goes out as built by then and its
data follows over the socket, so an operator never stares at a blank tab while the API
thinks. Pages that make a timer before their first await are sent at that await.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from nicegui import Client, app, background_tasks, ui
from nicegui.client import ClientConnectionTimeout
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp

from millrace.api.console.client import ConsoleApi, ConsoleApiError, SignedOutError
from millrace.api.console.layout import STYLE, frame
from millrace.api.console.pages import SIGN_IN, Page, PageContext, pages, paths
from millrace.api.console.session import Session, keep_session
from millrace.api.console.values import REGISTERED

#: how long a page's build may hold the answer back to send its data with it (a page sent
#: without waits for its socket's long-polling handshake before its data arrives; on the
#: slow 2-core machine of 2026-12-07 the overview's build took 0.25-0.6 s: at 0.6 the
#: console bench's maxima were 590-900 ms, at 0.25 590-1,050 ms, medians alike)
SEND_BY_S = 0.6
#: how long a page's build may take before NiceGUI answers 500 instead (its default, 3 s,
#: was exceeded by the overview on a machine loaded far past its two cores: an operator
#: would rather wait for the page than get an error page)
BUILD_TIMEOUT_S = 30.0
#: the API app the pages call (set by :func:`~millrace.api.console.mount.console_app`)
API_APP: list[Any] = [None]
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#1d4ed8"/>'
    '<path d="M2 11 L6 6 L9 9 L14 3" stroke="#fff" stroke-width="2" fill="none"/></svg>'
)
#: browser id -> its session (in memory only; see the module docstring)
SESSIONS: dict[str, Session] = {}
MAX_SESSIONS = 10_000


def install() -> frozenset[str]:
    """Register every page; the paths the console serves."""
    registered = pages()
    REGISTERED.update(p.path for p in registered)
    for page in registered:
        ui.page(page.path, title=f"{page.title} · millrace", response_timeout=BUILD_TIMEOUT_S)(
            _builder(page, registered)
        )
    ui.page(SIGN_IN, title="Sign in · millrace", response_timeout=BUILD_TIMEOUT_S)(_sign_in)
    return paths()


def _client_address(client: Client) -> tuple[str, int]:
    peer = client.request.client
    return (peer.host, peer.port) if peer is not None else ("127.0.0.1", 0)


def _browser() -> str:
    return str(app.storage.browser["id"])


def _api(client: Client, browser: str) -> ConsoleApi:
    def keep(previous: Session | None, current: Session | None) -> None:
        keep_session(SESSIONS, browser, previous, current, MAX_SESSIONS)

    api_app: ASGIApp = API_APP[0]
    api = ConsoleApi(api_app, SESSIONS.get(browser), _client_address(client), on_session=keep)
    client.on_delete(lambda: background_tasks.create(api.close(), name="console-api-close"))
    return api


def _builder(page: Page, registered: list[Page]) -> Callable[[Client], Awaitable[Response | None]]:
    async def build(client: Client) -> Response | None:
        query = dict(client.request.query_params)
        browser = _browser()
        session = SESSIONS.get(browser)
        if session is None:
            return RedirectResponse(f"{SIGN_IN}?next={quote(page.path)}", status_code=303)
        ctx = PageContext(_api(client, browser), session, query)
        main, follow_status = frame(ctx, page, registered)
        built = asyncio.Event()
        background_tasks.create(_send_by(client, built), name="console-send-by")
        try:
            with main:
                ui.label(page.title).classes("text-2xl font-semibold").props(
                    'role="heading" aria-level="1"'
                )
                if not ctx.can(*page.needs):
                    ui.label(
                        "Your role may not see this page (it needs " + ", ".join(page.needs) + ")."
                    )
                    return None
                try:
                    await page.build(ctx)
                except SignedOutError:
                    ui.navigate.to(f"{SIGN_IN}?next={quote(page.path)}")
                except ConsoleApiError as exc:
                    ui.label(f"The API refused: {exc.message}").classes("mr-chip mr-bad")
        finally:
            built.set()
            follow_status()
        return None

    return build


async def _send_by(client: Client, built: asyncio.Event) -> None:
    """Send the page as built so far once :data:`SEND_BY_S` has passed (see the module
    docstring): awaiting the connection is NiceGUI's signal to answer the request."""
    try:
        await asyncio.wait_for(built.wait(), SEND_BY_S)
    except TimeoutError:
        with contextlib.suppress(ClientConnectionTimeout):
            await client.connected(timeout=60.0)


async def _sign_in(client: Client) -> None:
    wanted = client.request.query_params.get("next", "/")
    target = wanted if wanted in {p.path for p in pages()} else "/"
    api = _api(client, _browser())
    ui.add_css(STYLE)
    with (
        ui.element("main").classes("w-full flex justify-center p-8"),
        ui.card().classes("w-full max-w-sm gap-3"),
    ):
        ui.label("Sign in to millrace").classes("text-xl font-semibold").props(
            'role="heading" aria-level="1"'
        )
        with ui.tabs() as tabs:
            user_tab = ui.tab("User")
            key_tab = ui.tab("API key")
        message = ui.label("").classes("text-red-800").props('role="alert" aria-live="assertive"')
        with ui.tab_panels(tabs, value=user_tab).classes("w-full"):
            with ui.tab_panel(user_tab).classes("gap-2"):
                ui.input("Username").props("autocomplete=username name=username")
                password = ui.input("Password", password=True).props(
                    "autocomplete=current-password name=password"
                )
                user_button = ui.button("Sign in").props("name=sign-in")
            with ui.tab_panel(key_tab).classes("gap-2"):
                key = ui.input("API key", password=True).props("name=api-key")
                key_button = ui.button("Sign in with key").props("name=sign-in-key")

    async def done(coro: Awaitable[Session]) -> None:
        try:
            await coro
        except ConsoleApiError as exc:
            message.text = f"Sign-in refused: {exc.message}"
            return
        ui.navigate.to(target)

    async def typed(*names: str) -> list[str]:
        # what the browser shows now: the page is drawn before its socket connects, and
        # keystrokes made before it did never reached the server's copy of the values
        script = (
            "return ["
            + ",".join(f"document.querySelector('input[name={n}]')?.value ?? ''" for n in names)
            + "]"
        )
        return [str(v) for v in await ui.run_javascript(script, timeout=10.0)]

    async def with_password() -> None:
        user, secret = await typed("username", "password")
        await done(api.sign_in(user, secret))

    async def with_key() -> None:
        (value,) = await typed("api-key")
        await done(api.sign_in_key(value.strip()))

    user_button.on_click(with_password)
    password.on("keydown.enter", with_password)
    key_button.on_click(with_key)
    key.on("keydown.enter", with_key)
