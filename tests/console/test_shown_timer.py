"""``shown_timer`` alone (no browser, no NiceGUI server): a page's timer calls its
callback only while the page's browser is connected, and awaits it when it is a
coroutine. tests/console/test_leaving.py covers it together with the page-leave beacon
in a real browser."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from millrace.api.console import layout


class FakeClient:
    """What ``shown_timer`` reads of NiceGUI's client: whether its socket is connected
    (NiceGUI's ``has_socket_connection`` is ``tab_id is not None``)."""

    def __init__(self) -> None:
        self.tab_id: str | None = None

    @property
    def has_socket_connection(self) -> bool:
        return self.tab_id is not None


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The page's client and what ``ui.timer`` was given."""
    got: dict[str, Any] = {"client": FakeClient()}

    def timer(every_s: float, tick: Any, immediate: bool = True) -> str:
        got.update(every_s=every_s, tick=tick, immediate=immediate)
        return "the timer"

    fake_ui = SimpleNamespace(context=SimpleNamespace(client=got["client"]), timer=timer)
    monkeypatch.setattr(layout, "ui", fake_ui)
    return got


async def test_ticks_run_only_while_the_browser_is_connected(made: dict[str, Any]) -> None:
    calls: list[str] = []

    async def refresh() -> None:
        calls.append("refresh")

    assert layout.shown_timer(2.5, refresh, immediate=False) == "the timer"
    assert (made["every_s"], made["immediate"]) == (2.5, False)
    tick, client = made["tick"], made["client"]
    await tick()  # the page is built, its socket not connected yet (or gone)
    assert calls == []
    client.tab_id = "tab-1"
    await tick()
    await tick()
    assert calls == ["refresh", "refresh"]
    client.tab_id = None  # the browser left: kept for the reconnect timeout, not polled
    await tick()
    assert calls == ["refresh", "refresh"]


async def test_a_plain_callback_is_called_and_not_awaited(made: dict[str, Any]) -> None:
    calls: list[int] = []
    layout.shown_timer(1, lambda: calls.append(1))
    assert made["immediate"] is True
    made["client"].tab_id = "tab-1"
    await made["tick"]()
    assert calls == [1]
