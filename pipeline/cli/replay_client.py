"""``millrace replay`` against a running engine: start the replay task through the API
and follow its progress until it ends (stdlib HTTP: the CLI needs no client library)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from millrace.pipeline.errors import MillraceError


class EngineUnreachableError(MillraceError):
    """No engine answers at the URL (``millrace replay`` then rebuilds offline)."""


class ReplayFailedError(MillraceError):
    """The engine refused the replay, or the task ended failed."""


class ApiClient:
    """JSON over HTTP with a bearer key; errors mapped into the project's tree."""

    def __init__(self, base_url: str, key: str | None, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.key:
            request.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return dict(json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            raise ReplayFailedError(f"{method} {path}: {exc.code} {_message(exc)}") from exc
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise EngineUnreachableError(f"no engine at {self.base_url}: {exc}") from exc


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return exc.reason if isinstance(exc.reason, str) else ""


def replay_through_api(
    client: ApiClient,
    projections: Sequence[str],
    start_time: str | None,
    *,
    poll_s: float = 0.5,
    show_progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Start the replay, show its progress, return the task when it completed."""
    body: dict[str, Any] = {"projections": list(projections)}
    if start_time is not None:
        body["start_time"] = start_time
    task_id = client.call("POST", "/replay", body)["data"]["task_id"]
    with Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show_progress,
    ) as bar:
        shown = bar.add_task("records", total=None)
        while True:
            task = client.call("GET", f"/replay/{task_id}")["data"]
            progress = task.get("progress") or {}
            bar.update(
                shown,
                completed=progress.get("records", 0),
                total=progress.get("records_total") or None,
            )
            if task["status"] == "completed":
                return dict(task)
            if task["status"] == "failed":
                raise ReplayFailedError(f"replay {task_id} failed: {task.get('error')}")
            sleep(poll_s)
