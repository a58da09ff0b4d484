"""Waiting for a condition in the end-to-end tests (engines, browsers, brokers).

No timed assertion: the timeout bounds a wait for something that will happen, and only
says what never came when it did not."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    cond: Callable[[], T | None], what: str, timeout: float = 60, interval: float = 0.2
) -> T:
    """``cond()``'s first truthy answer, asked every ``interval`` seconds; fails naming
    ``what`` when none comes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
