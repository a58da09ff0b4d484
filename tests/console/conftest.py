"""Fixtures of the console's browser tests: one engine and one browser per pytest
worker that the modules share (``console``), and screenshots of the pages a failing
test opened (``screens/`` under its temporary directory).

A module gets the browser as a fresh one would be (no cookies, no storage, blank page,
default size) but the engine as the modules before it left it: a module's test makes
the objects it asserts on (its own names, or ``seed``'s idempotent alarm rule) and
asserts nothing about what other modules may add. Starting and stopping ``millrace
run`` and Chromium once per module cost seven starts on a worker; now one for each run
of console modules that follow one another on the worker. When the next test on the
worker is not one of theirs, both are stopped (``pytest_runtest_teardown``): an engine
left running for the rest of the session ingests its simulator beside every later test
(a third of a core per worker, which made the whole suite a third slower)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.harness import Console, console_on_engine


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


class _Shared:
    """The worker's ``millrace run`` (simulator) and Chromium, while console modules
    that use them follow one another."""

    def __init__(self) -> None:
        self._running: contextlib.ExitStack | None = None
        self.console: Console | None = None

    def get(self, tmp_path_factory: pytest.TempPathFactory) -> Console:
        if self.console is None:
            with contextlib.ExitStack() as stack:
                self.console = stack.enter_context(
                    console_on_engine(tmp_path_factory.mktemp("console"))
                )
                self._running = stack.pop_all()
        return self.console

    def stop(self) -> None:
        running, self._running, self.console = self._running, None, None
        if running is not None:
            running.close()


_SHARED = _Shared()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the last test of a run of console modules on this worker (the modules'
    own teardown has run: ``trylast``), stop the shared engine and browser."""
    # at a module's end its fixtures are torn down by now; a next module may take over
    if nextitem is None or (
        getattr(nextitem, "module", None) is not getattr(item, "module", None)
        and "console" not in getattr(nextitem, "fixturenames", ())
    ):
        _SHARED.stop()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The shared engine and browser; the browser forgets the module when it ends (a
    live page left open would keep the engine and Chromium busy beside other tests)."""
    shared = _SHARED.get(tmp_path_factory)
    yield shared
    shared.forget()


@pytest.fixture(autouse=True)
def screens_on_failure(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    if "console" not in request.fixturenames:
        yield
        return
    c: Console = request.getfixturevalue("console")
    c.opened.clear()
    yield
    if not request.node.stash.get(FAILED, False):
        return
    saved = c.screenshots(tmp_path / "screens")
    print("screenshots of the failed test's pages:", *saved, sep="\n  ")
