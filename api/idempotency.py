"""``Idempotency-Key`` on HTTP ingest: a retried request answers like the first one.

A client that did not get an answer (a timeout, a dropped connection) cannot know
whether its batch reached the log; it sends the request again with the same
``Idempotency-Key`` header (as Stripe's API takes it). Two layers make that safe:

* The batch id is derived from (identity, key) (:func:`millrace.pipeline.batches.
  http_batch_id`), so whatever any API process does, the telemetry fold applies the
  batch once: a retry that reaches another API process, or this one after a restart,
  is appended again and dropped by the fold.
* This process remembers, for the window, each (identity, key) it answered with a
  success: a retry with the same body gets the first answer (status and body) without
  touching the log; with another body it is refused (422 naming the header), since
  the key then names two different batches. A retry that arrives while the first
  request is still being handled waits for its answer. Only successes are kept: a
  request refused (400, 403, 503...) may be retried and is handled afresh.

The memory is bounded (``max_entries``, oldest forgotten first); what it forgets, the
fold still deduplicates, only the answer is then a fresh 202 rather than a replay.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from millrace.api.errors import ApiError

HEADER = "Idempotency-Key"
#: 1-255 visible ASCII characters (a UUID, a ULID, a hash, a client's own request id)
KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
DEFAULT_WINDOW_S = 86_400
#: the header as an OpenAPI parameter of the ingest operation
IDEMPOTENCY_PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "A key per batch (1-255 visible ASCII characters): a retry with the same "
    "key and body within the window answers like the first call and stores nothing twice; "
    "the same key with another body is 422.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": KEY_RE.pattern},
}


def parse_key(value: str | None) -> str | None:
    """The header's key, None when absent; 400 naming the header when malformed."""
    if value is None:
        return None
    if not KEY_RE.match(value):
        message = "must be 1-255 visible ASCII characters (no spaces)"
        raise ApiError(
            400, "invalid_header", f"{HEADER}: {message}", [{"field": HEADER, "message": message}]
        )
    return value


def fingerprint(document: Any) -> str:
    """The request's content, independent of JSON spelling (key order, spaces)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class _Answer:
    fingerprint: str
    expires_us: int
    done: asyncio.Future[tuple[int, dict[str, Any]]]


class IdempotentAnswers:
    """The answers this process gave to keyed ingest requests, for the window."""

    def __init__(
        self,
        clock: Callable[[], int],
        window_s: int = DEFAULT_WINDOW_S,
        max_entries: int = 100_000,
    ) -> None:
        self.clock = clock
        self.window_us = window_s * 1_000_000
        self.max_entries = max_entries
        self._answers: OrderedDict[tuple[str, str], _Answer] = OrderedDict()

    def _expire(self, now: int) -> None:
        answers = self._answers
        while answers:
            first = next(iter(answers.values()))
            if first.expires_us > now and len(answers) <= self.max_entries:
                return
            answers.popitem(last=False)

    async def answer(
        self,
        identity: str,
        key: str,
        print_: str,
        handle: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
    ) -> tuple[int, dict[str, Any]]:
        """The first answer for (identity, key) within the window, or ``handle()``'s."""
        now = self.clock()
        self._expire(now)
        slot = (identity, key)
        prior = self._answers.get(slot)
        if prior is not None:
            if prior.fingerprint != print_:
                message = "was used for a different request body (use a new key per batch)"
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    f"{HEADER}: {message}",
                    [{"field": HEADER, "message": message}],
                )
            return await asyncio.shield(prior.done)
        done: asyncio.Future[tuple[int, dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._answers[slot] = _Answer(print_, now + self.window_us, done)
        try:
            result = await handle()
        except BaseException as exc:
            # not kept: a retry is handled afresh; whoever waited gets the same error
            if self._answers.get(slot) is not None and self._answers[slot].done is done:
                del self._answers[slot]
            if isinstance(exc, Exception):
                done.set_exception(exc)
                done.exception()  # retrieved: no "never retrieved" warning when nobody waits
            else:
                done.cancel()
            raise
        done.set_result(result)
        return result
