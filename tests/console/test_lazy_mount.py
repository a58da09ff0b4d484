"""The console is not loaded at start (api/console/mount.py): without preload an engine
that serves only the API never imports NiceGUI and the first console page starts it
inside the server's event loop; with preload (the default) it starts in the background
a second after the server, with no request, while the API keeps answering; the
server's shutdown stops it either way.

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


async def main(data_dir, mode):
    api = Starlette(routes=[Route("/api/v1/x", answer)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(
        console_app(api, data_dir, preload=mode != "lazy"), host="127.0.0.1", port=port,
        lifespan="on",
        log_level="warning",
    ))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    out = {}
    if mode == "stop-early":
        server.should_exit = True
        await serving
        out["nicegui"] = "nicegui" in sys.modules
        print(json.dumps(out))
        return
    if mode == "preload":
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            answers = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while loop.time() < deadline:
                answers.append((await c.get("/api/v1/x")).status_code)
                # (the module is in sys.modules while the thread still imports it)
                app = getattr(sys.modules.get("nicegui"), "app", None)
                if getattr(app, "is_started", False):
                    break
                await asyncio.sleep(0.02)
            out["api_while_loading"] = sorted(set(answers))
            out["answers"] = len(answers)
            out["started"] = "nicegui" in sys.modules and sys.modules["nicegui"].app.is_started
            out["login"] = (await c.get("/login")).status_code
            from nicegui.storage import Storage
            out["storage_in_data_dir"] = str(Storage.path).startswith(str(data_dir))
        server.should_exit = True
        await serving
        out["stopped"] = sys.modules["nicegui"].app.is_stopped
        print(json.dumps(out))
        return
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


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _run(tmp_path: Path, mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), mode],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_the_console_loads_on_its_first_request_and_stops_with_the_server(
    tmp_path: Path,
) -> None:
    out = _run(tmp_path, "lazy")
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


def test_the_console_preloads_in_the_background_while_the_api_answers(tmp_path: Path) -> None:
    out = _run(tmp_path, "preload")
    # started with no console request; the API answered all the while
    assert out["started"] is True
    assert out["api_while_loading"] == [200]
    assert isinstance(out["answers"], int) and out["answers"] > 1
    assert out["login"] == 200
    assert out["storage_in_data_dir"] is True
    assert out["stopped"] is True


def test_a_server_stopped_before_the_preload_never_loads_the_console(tmp_path: Path) -> None:
    assert _run(tmp_path, "stop-early") == {"nicegui": False}


def test_the_navigation_paths_are_the_pages_paths() -> None:
    """The paths the dispatcher knows before NiceGUI loads are the pages' own."""
    from millrace.api.console.pages import NAVIGATION, SIGN_IN, pages, paths

    assert [p.path for p in pages()] == list(NAVIGATION.values())
    assert paths() == {SIGN_IN, *NAVIGATION.values()}
