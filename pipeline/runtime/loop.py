"""The loop every stepping component shares: step until stopped, at once while there
is more (no sooner than a minimum period after the last step began, when one is set),
else wait for a wake-up or the idle interval; a failing step is retried with
exponential backoff after the component resets itself."""

from __future__ import annotations

import asyncio
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
    period_s: float = 0.0,
    busy: int | None = None,
) -> None:
    """Run ``step`` (returns how much it did; 0 = idle) until ``stop``. ``on_error``
    gets the exception and the delay before the retry (log it, reset state).

    ``period_s`` (> 0): a step that did something is followed by the next one no
    sooner than ``period_s`` after it began, unless ``wake`` is set meanwhile (someone
    waits for the step: read-your-writes). A slow trickle of records is then folded a
    few times a second in larger steps instead of once per arrival; a step that takes
    longer than the period (a backlog) is followed at once, and so is a step that did
    ``busy`` or more (a steady load: no latency added where the steps are big anyway).
    A wake set while a step runs is kept: the wait after it returns at once."""
    backoff = first_backoff_s
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        wake.clear()  # before the step: a wake that comes while it runs is kept
        began = loop.time()
        try:
            n = await step()
            backoff = first_backoff_s
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the component alive; the step is retried
            on_error(exc, backoff)
            await _wait_any(backoff, stop)
            backoff = min(backoff * 2, max_backoff_s)
            continue
        if n == 0:
            wait_s = idle_s
        elif busy is None or n < busy:
            wait_s = period_s - (loop.time() - began)
        else:
            wait_s = 0.0
        if wait_s > 0:
            await _wait_any(wait_s, wake, stop)
        else:
            await asyncio.sleep(0)  # at once, but after what else is ready to run


async def _wait_any(timeout_s: float, *events: asyncio.Event) -> None:
    """Until one of ``events`` is set, or ``timeout_s`` passed: a stop ends the wait at
    once (an idle or lingering component stopped a second or more late, and every
    ``millrace run`` took that long to stop)."""
    if any(e.is_set() for e in events):
        return
    waits = {asyncio.ensure_future(e.wait()) for e in events}
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
