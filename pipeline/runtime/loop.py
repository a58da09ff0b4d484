"""The loop every stepping component shares: step until stopped, at once while there
is more, else wait for a wake-up or the idle interval; a failing step is retried with
exponential backoff after the component resets itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


async def run_steps(
    step: Callable[[], Awaitable[int]],
    stop: asyncio.Event,
    wake: asyncio.Event,
    *,
    idle_s: float,
    on_error: Callable[[Exception, float], None],
    first_backoff_s: float,
    max_backoff_s: float = 10.0,
) -> None:
    """Run ``step`` (returns how much it did; 0 = idle) until ``stop``. ``on_error``
    gets the exception and the delay before the retry (log it, reset state)."""
    backoff = first_backoff_s
    while not stop.is_set():
        try:
            n = await step()
            backoff = first_backoff_s
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the component alive; the step is retried
            on_error(exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
            continue
        if n == 0:
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), idle_s)
