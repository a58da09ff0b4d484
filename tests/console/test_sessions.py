"""A browser's sessions: a tab changes only the session it was using (no browser).

An old tab of a signed-out user that fails its token refresh must not sign out the next
user of the same browser, nor bring its own session back with a refresh."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from millrace.api.console.client import ConsoleApi, SignedOutError
from millrace.api.console.session import Session, keep_session


def test_a_new_sign_in_replaces_the_browsers_session() -> None:
    old, new = Session("a", "ra"), Session("b", "rb")
    sessions = {"browser": old}
    keep_session(sessions, "browser", old, new, 10)
    assert sessions == {"browser": new}


def test_an_old_tab_ending_leaves_the_newer_session_alone() -> None:
    old, new = Session("a", "ra"), Session("b", "rb")
    sessions = {"browser": new}
    keep_session(sessions, "browser", old, None, 10)  # the old tab's refresh failed
    assert sessions["browser"] is new
    keep_session(sessions, "browser", old, old, 10)  # or it succeeded: not brought back
    assert sessions["browser"] is new
    keep_session(sessions, "browser", None, None, 10)  # a tab that had none signs out
    assert sessions["browser"] is new
    keep_session(sessions, "browser", new, None, 10)  # the current one ends: removed
    assert sessions == {}
    keep_session(sessions, "browser", old, old, 10)  # a refresh after it: not brought back
    assert sessions == {}


def test_a_refresh_keeps_the_session_and_makes_it_the_newest() -> None:
    a, b, c = Session("a"), Session("b"), Session("c")
    sessions = {"1": a, "2": b}
    keep_session(sessions, "1", a, a, 10)
    assert list(sessions) == ["2", "1"] and sessions["1"] is a
    keep_session(sessions, "3", None, c, 2)  # over the limit: the oldest goes
    assert sessions == {"1": a, "3": c}


def _refusing_api() -> Starlette:
    """An API that accepts only token ``new`` and no refresh token."""

    async def me(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != "Bearer new":
            return JSONResponse({"error": {"code": "unauthorized", "message": "no"}}, 401)
        return JSONResponse({"data": {"username": "new", "role": "viewer"}})

    async def refresh(request: Request) -> JSONResponse:
        return JSONResponse({"error": {"code": "unauthorized", "message": "revoked"}}, 401)

    return Starlette(
        routes=[Route("/api/v1/me", me), Route("/api/v1/refresh", refresh, methods=["POST"])]
    )


@pytest.mark.asyncio
async def test_an_old_tabs_failed_refresh_keeps_the_next_users_session() -> None:
    sessions: dict[str, Session] = {}
    app = _refusing_api()

    def tab(session: Session | None) -> ConsoleApi:
        return ConsoleApi(
            app,
            session,
            on_session=lambda prev, cur: keep_session(sessions, "browser", prev, cur, 10),
        )

    old_tab = tab(Session("old", "old-refresh"))
    new_tab = tab(None)
    signed_in = await new_tab.sign_in_key("new")
    assert sessions["browser"] is signed_in
    with pytest.raises(SignedOutError):
        await old_tab.get("/me")  # 401, refresh refused: the old tab is signed out
    assert old_tab.session is None
    assert sessions["browser"] is signed_in and signed_in.token == "new"
    assert (await tab(sessions["browser"]).get("/me"))["data"]["username"] == "new"
    await new_tab.sign_out()
    assert sessions == {}
    for api in (old_tab, new_tab):
        await api.close()
