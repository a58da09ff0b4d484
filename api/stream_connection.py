"""One client's connection to a live stream, and the text/event-stream encoding.

A :class:`Connection` is what :meth:`millrace.api.stream.StreamHub.open` hands the route: its
:meth:`Connection.events` is the SSE response body (hello, notices, backlog, then live
items and heartbeats), and closing it detaches it from its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

import orjson

from millrace.api.timeparams import format_time
from millrace.pipeline.clock import now_us

if TYPE_CHECKING:
    from millrace.api.stream import Delivery, StreamHub, _Stream


def sse(event: str, data: Any, event_id: str | None = None, retry_ms: int | None = None) -> bytes:
    """One event in the text/event-stream format (JSON data on one line)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    head += f"event: {event}\n"
    if retry_ms is not None:
        head += f"retry: {retry_ms}\n"
    return head.encode() + b"data: " + orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS) + b"\n\n"


def notice(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


class Connection:
    """One client connection to a stream: :meth:`events` is the response body."""

    def __init__(
        self,
        hub: StreamHub,
        stream: _Stream,
        generation: int,
        resume_from: int,
        resumed: bool,
        backlog: list[Delivery],
        notices: list[dict[str, Any]],
    ) -> None:
        self.hub = hub
        self.stream = stream
        self.generation = generation
        #: the hello event's id: the client has everything its subscriptions matched
        #: up to this sequence number
        self.resume_from = resume_from
        self.resumed = resumed
        self.backlog = backlog
        self.notices = notices
        #: asked every ``hub.recheck_s``; False ends the stream (owner lost access)
        self.authorized: Callable[[], bool] | None = None

    @property
    def stream_id(self) -> str:
        return self.stream.id

    def _id(self, seq: int) -> str:
        return f"{self.stream.id}:{seq}"

    def _item(self, delivery: Delivery) -> bytes:
        item, ids = delivery
        body = {"subscriptions": list(ids), "data": item.data}
        return sse(item.kind, body, self._id(item.seq))

    async def events(self) -> AsyncGenerator[bytes, None]:
        """hello, notices, the backlog, then live items and heartbeats until the
        stream is dropped or another connection resumes it."""
        stream, hub = self.stream, self.hub
        try:
            yield sse(
                "hello",
                {"stream_id": stream.id, "resumed": self.resumed},
                self._id(self.resume_from),
                hub.retry_ms,
            )
            for note in self.notices:
                yield sse("notice", note)
            backlog, self.backlog = self.backlog, []
            for delivery in backlog:
                yield self._item(delivery)
            loop = asyncio.get_running_loop()
            next_check = loop.time() + hub.recheck_s
            next_beat = loop.time() + hub.heartbeat_s
            while stream.generation == self.generation:
                if hub.closed:
                    yield sse("notice", notice("shutdown", "the server is shutting down"))
                    return
                if loop.time() >= next_check:
                    next_check = loop.time() + hub.recheck_s
                    if self.authorized is not None and not self.authorized():
                        hub._revoke(stream, "the caller's access was revoked")
                if stream.revoked is not None:
                    yield sse("notice", notice("revoked", stream.revoked))
                    return
                if stream.dropped:
                    yield sse("dropped", self._dropped())
                    return
                if stream.queue:
                    yield self._item(stream.queue.popleft())
                    next_beat = loop.time() + hub.heartbeat_s  # heartbeats fill silence
                    continue
                if loop.time() >= next_beat:
                    next_beat = loop.time() + hub.heartbeat_s
                    # everything published so far was delivered: resume from here
                    now = format_time(now_us(), None)
                    yield sse("heartbeat", {"time": now}, self._id(hub.seq))
                    continue
                ready = stream.ready
                ready.clear()
                wake = min(next_beat, next_check) if self.authorized else next_beat
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ready.wait(), max(0.0, wake - loop.time()))
        finally:
            self.close()

    def _dropped(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream.id,
            "reason": f"the client fell more than {self.hub.queue_size} events behind",
            "message": "reconnect with Last-Event-ID to resume from the last event received",
        }

    def close(self) -> None:
        self.hub.detach(self)
