"""A real ``millrace run`` (simulator) and one headless Chromium driven by Selenium: the
console's browser tests and its bench share this.

Chromium and its WebDriver are Debian's ``chromium`` and ``chromium-driver`` (``make
peers`` installs them). :class:`Console` opens pages, signs in, waits for conditions in
the page and keeps the paths a test opened, so a failing test can leave a screenshot of
each under its temporary directory (:meth:`Console.screenshots`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.connectors.test_run_config_e2e import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "Console-admin-Pa55-word!"
KEY = "console-e2e-admin-key-0123456789abcdef"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: the simulator's shape: devices x signals readings every interval
SIMULATOR = {"devices": 3, "signals": 4, "interval_ms": 200, "identity_prefix": "c-"}


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, DRIVER):
        if not Path(path).exists():
            return f"{path} missing: `make peers` installs Debian's chromium and chromium-driver"
    return None


def wait(cond: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """``cond()``'s first truthy answer; fails naming ``what`` when none comes."""
    return wait_until(cond, what, timeout)


@contextmanager
def engine(data: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``millrace run`` with the simulator on a free port (``env``: more environment,
    e.g. ``MILLRACE_ARCHIVE_URL``); its base URL once ready."""
    port = free_port()
    cfg = data / "millrace.yaml"
    sim = ", ".join(
        f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}" for k, v in SIMULATOR.items()
    )
    cfg.write_text(
        f"service: console\nconnections:\n  sim: {{protocol: simulator, {sim}}}\n"
        f"api:\n  port: {port}\n"
    )
    env = {
        **os.environ,
        "MILLRACE_API_KEY": KEY,
        "MILLRACE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **(env or {}),
    }
    env.pop("PYTEST_CURRENT_TEST", None)
    log = (data / "engine.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "millrace.pipeline.cli.main",
            "run",
            "--config",
            str(cfg),
            "--data-dir",
            str(data / "data"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, (data / "engine.log").read_text()[-4000:]
            try:
                return httpx.get(base + "/health/ready", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait(ready, "millrace run to be ready", timeout=120)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        finally:
            log.close()
        if proc.returncode != 0:
            print((data / "engine.log").read_text()[-8000:])
        assert proc.returncode == 0, f"millrace run exited {proc.returncode}"


def chrome(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium at ``width`` x ``height``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


@contextmanager
def console_on_engine(data: Path, env: dict[str, str] | None = None) -> Iterator[Console]:
    """The browser on a ``millrace run`` (:func:`engine`) in ``data``; skips the test
    when Chromium is missing."""
    import pytest

    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    with engine(data, env) as base, browsing(base) as c:
        yield c


@contextmanager
def browsing(base: str) -> Iterator[Console]:
    """A headless Chromium on the console at ``base``, closed at the end."""
    driver = chrome()
    c = Console(base, driver)
    try:
        yield c
    finally:
        c.close()
        driver.quit()


class Console:
    """The browser on the console at ``base``; ``api`` is an admin client on /api/v1."""

    def __init__(self, base: str, driver: Any) -> None:
        self.base = base
        self.driver = driver
        self.api = httpx.Client(
            base_url=base + "/api/v1", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
        )
        self.opened: list[str] = []

    def close(self) -> None:
        self.api.close()

    def forget(self, width: int = 1280, height: int = 900) -> None:
        """Back to a fresh browser's state on this engine: signed out (no cookies, no
        storage), a blank page, ``width`` x ``height``; nothing opened."""
        self.driver.get(self.base + "/health/ready")  # the origin whose state goes
        self.driver.delete_all_cookies()
        self.js("window.localStorage.clear(); window.sessionStorage.clear();")
        self.driver.get("about:blank")
        self.driver.set_window_size(width, height)
        self.opened.clear()

    # -- the page ------------------------------------------------------------------------

    def open(self, path: str) -> None:
        """Load ``path`` and wait until NiceGUI has connected and drawn ``main``."""
        self.opened.append(path)
        self.driver.get(self.base + path)
        self.wait(lambda: self.js("return !!document.querySelector('main')"), f"{path} drawn")
        # the page's socket: what is typed or clicked before it connects waits for it
        self.wait(lambda: self.js("return !!(window.socket && window.socket.connected)"), "socket")

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.wait(lambda: self.driver.find_elements(By.CSS_SELECTOR, css), css)[0]

    def click(self, css: str, timeout: float = 60) -> None:
        """Click ``css``, brought to the middle of the window, once it can take the
        click: a dialog that is still opening, or an element NiceGUI replaced between
        finding and clicking, is tried again (under load a dialog's button was found
        before it was interactable)."""
        from selenium.common.exceptions import (
            ElementClickInterceptedException,
            ElementNotInteractableException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.common.by import By

        def clicked() -> bool:
            found = self.driver.find_elements(By.CSS_SELECTOR, css)
            if not found or not found[0].is_displayed() or not found[0].is_enabled():
                return False
            try:
                # to the middle of the window: not under the fixed header
                self.js("arguments[0].scrollIntoView({block: 'center'})", found[0])
                found[0].click()
            except (
                ElementClickInterceptedException,
                ElementNotInteractableException,
                StaleElementReferenceException,
            ):
                return False
            return True

        self.wait(clicked, f"{css} clickable", timeout)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str) -> str:
        """The visible text of ``css``, read in one step in the page (NiceGUI replaces
        elements as they update: a found element may be gone when it is read)."""
        script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;"
        found: list[str] = []

        def read() -> bool:
            text = self.js(script, css)
            if text is None:
                return False
            found.append(str(text))
            return True

        self.wait(read, css)
        return found[-1]

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, cond: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        return wait(cond, what, timeout)

    def type_into(self, css: str, text: str) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.find(css)
        # clear() bypasses the page's input events: select and delete like a person
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        box.send_keys(text)
        # the value reaches the server over the page's socket: wait until it echoes
        self.wait(lambda: box.get_attribute("value") == text, f"{css} holds the text")

    # -- signing in ----------------------------------------------------------------------

    def sign_in(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
        self.open("/login")
        self.type_into("input[name=username]", username)
        self.type_into("input[name=password]", password)
        self.find("button[name=sign-in]").click()
        self.wait(lambda: "/login" not in self.driver.current_url, f"{username} signed in")
        self.wait(lambda: self.all("header nav a"), "the navigation")

    def sign_out(self) -> None:
        self.find("button[name=sign-out]").click()
        self.wait(lambda: "/login" in self.driver.current_url, "signed out")

    def make_user(self, username: str, role: str) -> str:
        """Create ``username`` with ``role`` through the API; its password."""
        password = f"{username}-Pa55-{role}-x9!"
        r = self.api.post(
            "/users", json={"username": username, "password": password, "roles": [role]}
        )
        assert r.status_code in (200, 201), r.text
        # the user is an event on the log: wait until the API signs it in
        self.wait(
            lambda: (
                self.api.post(
                    "/login", json={"username": username, "password": password}
                ).status_code
                == 200
            ),
            f"{username} accepted by the API",
        )
        return password

    # -- evidence ------------------------------------------------------------------------

    def keep_screenshot(self, name: str) -> Path | None:
        """Save the current page as ``name``.png into ``$MILLRACE_CONSOLE_SCREENSHOTS``
        when it is set (the README's pictures are made this way), else nothing."""
        into = os.environ.get("MILLRACE_CONSOLE_SCREENSHOTS")
        if not into:
            return None
        Path(into).mkdir(parents=True, exist_ok=True)
        path = Path(into) / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def screenshots(self, into: Path) -> list[Path]:
        """A PNG of the current page and of every page opened so far, into ``into``."""
        into.mkdir(parents=True, exist_ok=True)
        saved = [into / "current.png"]
        self.driver.save_screenshot(str(saved[0]))
        for n, path in enumerate(dict.fromkeys(self.opened)):
            try:
                self.driver.get(self.base + path)
                time.sleep(1.0)  # let the page draw: this is evidence, not an assertion
                name = into / f"{n:02d}{path.replace('/', '_').split('?')[0] or '_'}.png"
                self.driver.save_screenshot(str(name))
                saved.append(name)
            except Exception as exc:  # the evidence must not hide the failure
                print(f"screenshot of {path} failed: {exc}")
        return saved
