"""A console page that the browser leaves ends its session on the server at once, in a
real browser against a real ``millrace run`` (api/console/layout.py: ``LEAVE_JS``).

Over Socket.IO's long polling the server otherwise learns that a page is gone only when
its ping goes unanswered (up to 12 s), and keeps it its reconnect timeout longer, its
timers polling the API: an operator moving from page to page had every earlier page
polling behind them, and each next page loaded slower (the overview 0.5 → 1.2 s over
eight reloads in bench/console.py; flat with this)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.console.harness import Console

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: records every beacon the page sends (kept in the tab's sessionStorage, which the next
#: page of the tab reads), then sends it
RECORD_BEACONS = """
const send = navigator.sendBeacon.bind(navigator);
navigator.sendBeacon = (url, body) => {
  const sent = JSON.parse(sessionStorage.getItem('beacons') || '[]');
  sent.push([String(url), String(body)]);
  sessionStorage.setItem('beacons', JSON.stringify(sent));
  return send(url, body);
};
"""


def session_of(console: Console) -> tuple[str, str]:
    """The page's Engine.IO session id and the Socket.IO path, once connected."""
    got = console.wait(
        lambda: console.js(
            "const io = window.socket && window.socket.io;"
            " return io && io.engine && io.engine.id && window.socket.connected"
            " ? [io.engine.id, io.opts.path] : null;"
        ),
        "the page's socket session",
    )
    return str(got[0]), str(got[1])


def test_a_page_left_ends_its_session_on_the_server_at_once(console: Console) -> None:
    console.sign_in()
    console.open("/")
    sid, path = session_of(console)
    console.js("sessionStorage.removeItem('beacons');" + RECORD_BEACONS)

    console.open("/alarms")
    beacons = console.js("return JSON.parse(sessionStorage.getItem('beacons') || '[]')")
    # the page going away posted an Engine.IO close packet to its own session
    assert len(beacons) == 1, beacons
    url, body = beacons[0]
    assert f"sid={sid}" in url and url.startswith(path.rstrip("/") + "/?EIO=4")
    assert body == "1"

    # and the server took it: the session is gone (a poll on it is refused), long before
    # a ping could have timed out (8 s interval + 4 s timeout)
    poll = f"{console.base}{path.rstrip('/')}/?EIO=4&transport=polling&sid={sid}"
    deadline = time.monotonic() + 5.0
    status = None
    while time.monotonic() < deadline:
        status = httpx.get(poll, timeout=10.0).status_code
        if status == 400:
            break
        time.sleep(0.2)
    assert status == 400, f"the left page's session still answers {status}"

    # the page in front keeps its own session
    new_sid, _ = session_of(console)
    assert new_sid != sid
    assert console.js("return window.socket.connected") is True
