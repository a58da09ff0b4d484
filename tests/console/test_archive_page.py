"""The archive page in a real browser against a real ``millrace run`` (simulator) with
an archive configured: archive everything now and see the windows the API lists; a
restore started by time range completes, its progress shown; a restore of a file
that is not in the archive fails, is shown failed with its reason, and is retried
from the page; a replay started in the page shows its progress."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.console.harness import Console, console_on_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MISSING = "telemetry/p0/never-archived.avro"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """``millrace run`` (the harness's) with an archive directory."""
    data = tmp_path_factory.mktemp("console-archive")
    with console_on_engine(data, {"MILLRACE_ARCHIVE_URL": str(data / "archive")}) as c:
        yield c


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rows_of(console: Console, testid: str) -> list[list[str]]:
    """The cells of each row of a table, read in one step in the page."""
    got = console.js(
        f"return [...document.querySelectorAll('[data-testid={testid}] tbody tr')]"
        ".map(r => [...r.querySelectorAll('td')].map(td => td.innerText));"
    )
    return [list(map(str, r)) for r in got if len(r) > 1]


def task(console: Console, kind: str, task_id: str) -> dict[str, Any]:
    r = console.api.get(f"/{kind}/{task_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def row_of(console: Console, testid: str, task_id: str) -> list[str] | None:
    return next((r for r in rows_of(console, testid) if r[0] == task_id), None)


def completed(console: Console, kind: str, task_id: str) -> tuple[dict[str, Any], list[str]]:
    """The ``kind`` task once it completed in the API, and its row once the page shows
    it completed."""
    done = console.wait(
        lambda: (t := task(console, kind, task_id))["status"] in ("completed", "failed") and t,
        f"the {kind} to finish",
        timeout=120,
    )
    assert done["status"] == "completed", done
    line = console.wait(
        lambda: (r := row_of(console, f"{kind}-table", task_id)) and r[1] == "completed" and r,
        f"the completed {kind} shown",
    )
    return done, line


def test_flush_restore_retry_and_replay(console: Console) -> None:
    console.wait(
        lambda: console.api.get("/status").json()["data"]["runtime"]["records"] > 20, "data"
    )
    console.sign_in()
    console.open("/archive")
    console.find("[data-testid=archive-summary]")

    # archive everything now: the windows the API lists are shown
    console.click("button[name=archive-flush]")

    def archived() -> dict[str, Any]:
        return dict(console.api.get("/archive", params={"limit": 1000}).json())

    # the count the API answers now, shown: a flush still under way under load closes
    # more windows after the first ones are listed, and the page (polled) follows it
    listed = console.wait(
        lambda: (
            (a := archived())["total"]
            and f"{a['total']:,} window(s)" in console.text("[data-testid=archive-summary]")
            and a
        ),
        "the window count shown",
    )
    shown = {r[-1] for r in rows_of(console, "archive-table")}
    assert {w["path"] for w in listed["data"]} <= shown
    assert "telemetry" in {r[0] for r in rows_of(console, "archive-table")}

    # a restore by time range: completed, with its progress
    now = time.time()
    console.type_into("input[name=restore-start]", iso(now - 3600))
    console.type_into("input[name=restore-end]", iso(now + 60))
    console.click("button[name=restore-time]")
    made = console.wait(lambda: console.api.get("/restore").json()["data"], "a restore task")
    first = made[0]["task_id"]
    done, line = completed(console, "restore", first)
    assert done["files"], done
    assert f"{len(done['files'])} file(s) done, 0 failed" in line[5]

    # a file not in the archive: the restore fails, is shown failed, retried in the page
    console.type_into("textarea[name=restore-urls]", MISSING)
    console.click("button[name=restore-url]")
    failed = console.wait(
        lambda: next(
            (
                t
                for t in console.api.get("/restore").json()["data"]
                if t["task_id"] != first and t["status"] == "failed"
            ),
            None,
        ),
        "the restore of the missing file to fail",
        timeout=120,
    )
    bad = failed["task_id"]
    line = console.wait(
        lambda: (r := row_of(console, "restore-table", bad)) and r[1] == "failed" and r,
        "the failed restore shown",
    )
    assert MISSING in line[6], line  # the reason names the file
    console.click(f"button[name=retry-{bad}]")
    console.wait(
        lambda: (t := task(console, "restore", bad))["attempts"] >= 2 and t["status"] == "failed",
        "the retry run (and fail again)",
        timeout=120,
    )
    console.wait(
        lambda: (r := row_of(console, "restore-table", bad)) and int(r[4]) >= 2,
        "the second attempt shown",
    )

    # a replay started in the page: its progress shown as it completes
    console.click("button[name=replay]")
    console.click("button[name=confirm-replay]")
    replays = console.wait(lambda: console.api.get("/replay").json()["data"], "a replay task")
    _, line = completed(console, "replay", replays[0]["task_id"])
    assert line[5], f"no progress shown: {line}"
