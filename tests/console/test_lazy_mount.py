"""The console loads on its first request (api/console/mount.py): an engine that serves
only the API never imports NiceGUI, the first console page starts it inside the
server's event loop, and the server's shutdown stops it.

Runs in a fresh interpreter under a real uvicorn server (``sys.modules`` of the pytest
process holds NiceGUI already, and NiceGUI is one app per process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio, json, socket, sys
import httpx, uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from millrace.api.console.mount import console_app
from millrace.api.console.pages import paths


async def answer(request):
    return PlainTextResponse("the api")


async def main(data_dir):
    api = Starlette(routes=[Route("/api/v1/x", answer)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(
        console_app(api, data_dir), host="127.0.0.1", port=port, lifespan="on",
        log_level="warning",
    ))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    out = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
        r = await c.get("/api/v1/x")
        out["api"] = [r.status_code, r.text]
        r = await c.get("/nowhere")
        out["unknown"] = r.status_code
        out["nicegui_after_api"] = "nicegui" in sys.modules
        first = await asyncio.gather(*(c.get("/login") for _ in range(3)))
        out["login"] = [r.status_code for r in first]
        out["login_is_a_page"] = "<html" in first[0].text.lower()
        from nicegui import app as nicegui_app
        out["started"] = nicegui_app.is_started
        out["overview"] = (await c.get("/", follow_redirects=False)).status_code
        out["api_again"] = (await c.get("/api/v1/x")).text
    server.should_exit = True
    await serving
    out["stopped"] = nicegui_app.is_stopped
    out["paths"] = sorted(paths())
    print(json.dumps(out))


asyncio.run(main(sys.argv[1]))
"""


def test_the_console_loads_on_its_first_request_and_stops_with_the_server(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # the API answers and its 404 stays the API's, without NiceGUI loaded
    assert out["api"] == [200, "the api"]
    assert out["unknown"] == 404
    assert out["nicegui_after_api"] is False
    # three first requests at once: one start, three pages
    assert out["login"] == [200, 200, 200]
    assert out["login_is_a_page"]
    assert out["started"] is True
    # a page without a session redirects to the sign-in
    assert out["overview"] in (303, 307)
    assert out["api_again"] == "the api"
    assert out["stopped"] is True
    assert "/login" in out["paths"] and "/" in out["paths"]


def test_the_navigation_paths_are_the_pages_paths() -> None:
    """The paths the dispatcher knows before NiceGUI loads are the pages' own."""
    from millrace.api.console.pages import NAVIGATION, SIGN_IN, pages, paths

    assert [p.path for p in pages()] == list(NAVIGATION.values())
    assert paths() == {SIGN_IN, *NAVIGATION.values()}
