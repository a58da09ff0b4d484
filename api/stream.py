"""The live stream: a hub that fans stream items out to Server-Sent-Events clients.

A :class:`~millrace.api.stream_tail.LogTail` follows the end of the log and publishes items
(``alarm``, ``activity``, ``deviation``, ``latest``) to the :class:`StreamHub`. A
client opens a *stream* (``GET /api/v1/stream``) and adds *subscriptions* to it (a kind
and the filters of its list endpoint, see :mod:`millrace.api.stream_filters`).

The pipeline must never wait for a client: :meth:`StreamHub.publish` is synchronous, and
each stream has a bounded queue; a stream whose queue is full is *dropped* (its
connection gets a final ``dropped`` event and ends). Publishing keeps an item only when
some subscription matches it, numbered with a sequence number, in a ring buffer that
holds at least ``retain_s`` seconds (up to ``max_items``). A stream outlives its
connection by ``grace_s``: a reconnect with ``Last-Event-ID: <stream_id>:<seq>``
resumes it, subscriptions and all, and first receives exactly the buffered items after
``seq`` that match its subscriptions, which is what it would have received had it stayed
connected (subscriptions only match items published after their creation). When some
items of a subscribed kind were evicted meanwhile, a ``notice`` says so. A garbage or
unknown id starts a fresh stream with a ``notice``, never an error.

Events: ``hello`` (``{"stream_id", "resumed"}``; its id is the resume point), then
``notice``s, then items as ``event: <kind>``, ``id: <stream_id>:<seq>``, ``data:
{"subscriptions": [ids], "data": {...}}``, and a ``heartbeat`` when idle (its id moves
the resume point on when everything published so far was delivered).

The connection, the filters and the tail are modules of their own; this one is the hub
alone (streams, ring buffer, resume, limits: one state read together), a few lines over
400.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from millrace.api.stream_connection import Connection, notice, sse
from millrace.api.stream_filters import KINDS, FilterError, compile_filters
from millrace.api.stream_tail import LogTail
from millrace.pipeline.errors import MillraceError

__all__ = [
    "KINDS",
    "Connection",
    "FilterError",
    "LogTail",
    "OwnerStreamLimitError",
    "StreamHub",
    "StreamLimitError",
    "StreamNotFoundError",
    "Subscription",
    "sse",
]

_EVENT_ID = re.compile(r"([A-Za-z0-9_-]{8,64}):([0-9]{1,18})")


class StreamNotFoundError(MillraceError, LookupError):
    """No such stream (never opened, expired, or opened with another key)."""


class StreamLimitError(MillraceError):
    """Too many streams or subscriptions on one stream, or the hub is closed."""


class OwnerStreamLimitError(StreamLimitError):
    """The caller has as many connected streams as one principal may have."""


@dataclass(frozen=True, slots=True)
class StreamItem:
    seq: int
    kind: str
    data: dict[str, Any]
    at: float  # hub clock when published (retention)


@dataclass(frozen=True)
class Subscription:
    """One kind with filters; matches items published after it was created."""

    id: str
    kind: str
    filters: dict[str, Any]
    since: int
    match: Callable[[Mapping[str, Any]], bool] = field(repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "filters": self.filters}


Delivery = tuple[StreamItem, tuple[str, ...]]
Item = Mapping[str, Any]


def _both(
    match: Callable[[Item], bool], kind: str, visible: Callable[[str, Item], bool]
) -> Callable[[Item], bool]:
    """A subscription's filters and what its subscriber may see, both."""
    return lambda d: match(d) and visible(kind, d)


@dataclass(eq=False)
class _Stream:
    id: str
    owner: str | None
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    queue: deque[Delivery] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    generation: int = 0
    attached: bool = False
    detached_at: float = 0.0
    dropped: bool = False
    #: why the stream was ended for good (its owner lost access); None while usable
    revoked: str | None = None

    def matching(self, item: StreamItem) -> tuple[str, ...]:
        return tuple(
            s.id
            for s in self.subscriptions.values()
            if s.kind == item.kind and item.seq > s.since and s.match(item.data)
        )


class StreamHub:
    """Streams, their subscriptions, and the ring buffer they resume from."""

    def __init__(
        self,
        retain_s: float = 60.0,
        max_items: int = 100_000,
        queue_size: int = 1000,
        grace_s: float = 120.0,
        heartbeat_s: float = 30.0,
        max_streams: int = 1000,
        max_streams_per_owner: int = 20,
        max_subscriptions: int = 100,
        retry_ms: int = 3000,
        recheck_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retain_s = retain_s
        self.max_items = max_items
        self.queue_size = queue_size
        self.grace_s = grace_s
        self.heartbeat_s = heartbeat_s
        self.max_streams = max_streams
        self.max_streams_per_owner = max_streams_per_owner
        self.max_subscriptions = max_subscriptions
        self.retry_ms = retry_ms
        #: how often a connection asks whether its owner may still read it
        self.recheck_s = recheck_s
        self.clock = clock
        self.seq = 0  # the last sequence number given out
        self.dropped = 0  # streams dropped for being too slow, since start
        self.closed = False
        self._buffer: deque[StreamItem] = deque()
        self._evicted: dict[str, int] = {}  # kind -> highest evicted seq
        self._streams: dict[str, _Stream] = {}
        self._by_kind: dict[str, list[_Stream]] = {}
        self._next_sweep = 0.0

    # -- publishing (the pipeline side; never awaits) ---------------------------------

    def wants(self, kind: str) -> bool:
        """Whether any stream subscribes to ``kind`` (else publishing it is a no-op)."""
        return bool(self._by_kind.get(kind))

    def publish(self, kind: str, data: dict[str, Any]) -> int | None:
        """Hand one item to the matching streams; its seq, or None if none wanted it.

        An item no subscription matches is not kept: a subscription created later only
        matches later items, so nobody could ever receive it."""
        now = self.clock()
        if now >= self._next_sweep:
            self._sweep(now)
        candidate = StreamItem(self.seq + 1, kind, data, now)
        hits = [(s, ids) for s in self._by_kind.get(kind, ()) if (ids := s.matching(candidate))]
        if not hits:
            return None
        self.seq += 1
        self._buffer.append(candidate)
        self._evict(now)
        for stream, ids in hits:
            if stream.attached and not stream.dropped:
                self._enqueue(stream, (candidate, ids))
        return self.seq

    def _enqueue(self, stream: _Stream, delivery: Delivery) -> None:
        if len(stream.queue) >= self.queue_size:
            stream.dropped = True
            stream.queue.clear()
            self.dropped += 1
        else:
            stream.queue.append(delivery)
        stream.ready.set()

    def _evict(self, now: float) -> None:
        buffer, horizon = self._buffer, now - self.retain_s
        while buffer and (len(buffer) > self.max_items or buffer[0].at < horizon):
            old = buffer.popleft()
            self._evicted[old.kind] = old.seq

    def _sweep(self, now: float) -> None:
        """Forget streams disconnected for longer than ``grace_s``; evict old items."""
        self._next_sweep = now + 1.0
        expired = [
            s
            for s in self._streams.values()
            if not s.attached and now - s.detached_at > self.grace_s
        ]
        for s in expired:
            del self._streams[s.id]
        if expired:
            self._reindex()
        self._evict(now)

    def _reindex(self) -> None:
        by_kind: dict[str, list[_Stream]] = {}
        for s in self._streams.values():
            for kind in {sub.kind for sub in s.subscriptions.values()}:
                by_kind.setdefault(kind, []).append(s)
        self._by_kind = by_kind

    # -- connections (the client side) ------------------------------------------------

    def open(
        self,
        last_event_id: str | None = None,
        owner: str | None = None,
        authorized: Callable[[], bool] | None = None,
    ) -> Connection:
        """A connection to a new stream, or to the stream ``last_event_id`` names
        (resumed from there). ``owner`` (the principal's id, e.g. the API key id) must
        match to resume; an owner has at most ``max_streams_per_owner`` streams
        (:class:`OwnerStreamLimitError`). ``authorized`` is asked every ``recheck_s``
        while the connection is open: once it answers False the stream ends for good,
        as :meth:`close_owner` ends it."""
        if self.closed:
            raise StreamLimitError("the server is shutting down")
        self._sweep(self.clock())
        notices: list[dict[str, Any]] = []
        stream, resume_from = self._resumable(last_event_id, owner, notices)
        resumed = stream is not None
        backlog: list[Delivery] = []
        if stream is None:
            stream, resume_from = self._new_stream(owner), self.seq
        else:
            backlog = self._backlog(stream, resume_from, notices)
        stream.generation += 1
        stream.attached, stream.dropped = True, False
        stream.queue.clear()
        stream.ready.set()  # wakes a connection this one supersedes
        stream.ready = asyncio.Event()
        conn = Connection(self, stream, stream.generation, resume_from, resumed, backlog, notices)
        conn.authorized = authorized
        return conn

    def _resumable(
        self, last_event_id: str | None, owner: str | None, notices: list[dict[str, Any]]
    ) -> tuple[_Stream | None, int]:
        if last_event_id is None or not last_event_id.strip():
            return None, 0
        shown = last_event_id.strip()[:80]
        found = _EVENT_ID.fullmatch(last_event_id.strip())
        if found is None or int(found.group(2)) > self.seq:
            notices.append(
                notice(
                    "invalid_last_event_id",
                    f"Last-Event-ID {shown!r} is not an event id of this server; "
                    "this is a new stream: create its subscriptions",
                )
            )
            return None, 0
        stream = self._streams.get(found.group(1))
        if stream is None or stream.owner != owner:
            notices.append(
                notice(
                    "unknown_stream",
                    f"stream {found.group(1)!r} is unknown or expired; "
                    "this is a new stream: create its subscriptions",
                )
            )
            return None, 0
        return stream, int(found.group(2))

    def _new_stream(self, owner: str | None) -> _Stream:
        if owner is not None:
            self._make_room_for(owner)
        if len(self._streams) >= self.max_streams:
            idle = [s for s in self._streams.values() if not s.attached]
            if not idle:
                raise StreamLimitError(f"too many open streams (at most {self.max_streams})")
            oldest = min(idle, key=lambda s: s.detached_at)
            del self._streams[oldest.id]
            self._reindex()
        stream = _Stream(secrets.token_urlsafe(16), owner)
        self._streams[stream.id] = stream
        return stream

    def _make_room_for(self, owner: str) -> None:
        """Below ``max_streams_per_owner`` streams for ``owner``: its oldest
        disconnected stream is forgotten if need be; if all are connected, refused."""
        own = [s for s in self._streams.values() if s.owner == owner]
        if len(own) < self.max_streams_per_owner:
            return
        idle = [s for s in own if not s.attached]
        if not idle:
            raise OwnerStreamLimitError(
                f"too many open streams for this API key (at most "
                f"{self.max_streams_per_owner} per key): close one or resume it with "
                "Last-Event-ID"
            )
        del self._streams[min(idle, key=lambda s: s.detached_at).id]
        self._reindex()

    def close_owner(self, owner: str, message: str = "the API key was revoked") -> int:
        """End every stream of ``owner`` for good: each connected one gets a final
        ``notice`` ``revoked`` and ends, and none can be resumed. The number ended."""
        ended = [s for s in self._streams.values() if s.owner == owner]
        for stream in ended:
            self._revoke(stream, message)
        return len(ended)

    def _revoke(self, stream: _Stream, message: str) -> None:
        stream.revoked = message
        stream.queue.clear()
        stream.ready.set()
        if self._streams.pop(stream.id, None) is not None:
            self._reindex()

    def _backlog(
        self, stream: _Stream, after: int, notices: list[dict[str, Any]]
    ) -> list[Delivery]:
        lost = sorted(
            {
                s.kind
                for s in stream.subscriptions.values()
                if self._evicted.get(s.kind, 0) > max(after, s.since)
            }
        )
        if lost:
            notices.append(
                notice(
                    "events_evicted",
                    f"some {', '.join(lost)} events after {after} are no longer kept "
                    f"(the server keeps {self.retain_s:g} s); they may be missing",
                    kinds=lost,
                )
            )
        first = self._buffer[0].seq if self._buffer else self.seq + 1
        out: list[Delivery] = []
        for item in islice(self._buffer, max(0, after + 1 - first), None):
            if ids := stream.matching(item):
                out.append((item, ids))
        return out

    def detach(self, conn: Connection) -> None:
        """The connection ended; its stream waits ``grace_s`` for a resume."""
        stream = conn.stream
        if stream.generation == conn.generation and stream.attached:
            stream.attached, stream.dropped = False, False
            stream.detached_at = self.clock()
            stream.queue.clear()

    # -- subscriptions ----------------------------------------------------------------

    def _stream(self, stream_id: str, owner: str | None) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None or stream.owner != owner:
            raise StreamNotFoundError(f"stream {stream_id!r} is unknown or expired")
        return stream

    def subscribe(
        self,
        stream_id: str,
        kind: Any,
        filters: Mapping[str, Any] | None,
        owner: str | None = None,
        visible: Callable[[str, Mapping[str, Any]], bool] | None = None,
    ) -> Subscription:
        """Add a subscription; :class:`FilterError` names a bad kind or filter.
        ``visible(kind, data)``: what the subscriber may see at all (a scoped caller's
        identities), tested besides the filters."""
        stream = self._stream(stream_id, owner)
        parsed = compile_filters(kind, filters)
        if len(stream.subscriptions) >= self.max_subscriptions:
            raise StreamLimitError(f"at most {self.max_subscriptions} subscriptions per stream")
        match = parsed.match
        if visible is not None:
            match = _both(parsed.match, str(kind), visible)
        sub = Subscription(secrets.token_urlsafe(8), kind, parsed.shown, self.seq, match)
        stream.subscriptions[sub.id] = sub
        self._reindex()
        return sub

    def subscriptions(self, stream_id: str, owner: str | None = None) -> list[Subscription]:
        return list(self._stream(stream_id, owner).subscriptions.values())

    def unsubscribe(self, stream_id: str, subscription_id: str, owner: str | None = None) -> bool:
        stream = self._stream(stream_id, owner)
        if stream.subscriptions.pop(subscription_id, None) is None:
            return False
        self._reindex()
        return True

    def close(self) -> None:
        """End every connection (server shutdown: an open event stream would otherwise
        keep the HTTP server waiting for its response to finish)."""
        self.closed = True
        for stream in self._streams.values():
            stream.ready.set()

    def stats(self) -> dict[str, int]:
        return {
            "streams": len(self._streams),
            "connected": sum(s.attached for s in self._streams.values()),
            "buffered": len(self._buffer),
            "seq": self.seq,
            "dropped": self.dropped,
        }
