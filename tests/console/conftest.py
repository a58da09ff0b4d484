"""Fixtures of the console's browser tests: one engine and one browser per module
(``console``), and screenshots of the pages a failing test opened (``screens/`` under
its temporary directory)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.harness import Console, browser_missing, chrome, engine


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    data = tmp_path_factory.mktemp("console")
    with engine(data) as base:
        driver = chrome()
        c = Console(base, driver)
        try:
            yield c
        finally:
            c.close()
            driver.quit()


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
