"""The identity lifecycle fold (pipeline/identities/state.py) against a model written
here, and the identity processor's exactly-once under random batching and crashes.

The state machine keeps its own idea of every identity — a :class:`Device` built from
the lifecycle (whitelisted -> provisioned, reprovision when credentials expire, expired
when the window passes, locked refuses connect and unlock restores, delete then create
starts fresh, events of absent identities are refused) — and after every event compares
it with what ``apply`` folded, column by column. Each rule decides on its own whether
the event must be rejected; the fold is only ever asked, never consulted.

The exactly-once test then takes the fold as known-good: however a log of identity
events is cut into batches, and whichever batches are redone after a crash, the rows
that reach the sink must equal one pass of ``apply`` over the whole log.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from millrace.pipeline.events import identity_event
from millrace.pipeline.identities.state import IdentityRejectedError, State, apply
from millrace.pipeline.log.base import TopicPartition
from millrace.pipeline.processors.base import Event
from millrace.pipeline.processors.identity import IdentityProcessor
from millrace.pipeline.sink import MemoryProjectionSink, Range, SinkBatch

T0 = 1_750_000_000_000_000
SECOND = 1_000_000
IDS = ("dev-a", "dev-b", "dev-c")
RESOURCES = ("valve", "setpoint", "mode")
TAG_NAMES = ("room", "floor", "line")
TAG_VALUES = ("1", "2", "3", "north")
FREE_KEYS = ("name", "model", "firmware", "site")
IPS = ("10.0.0.1", "10.0.0.2", "2001:db8::7")
HASHES = ("argon2$aa", "argon2$bb", "bcrypt$cc")

ids = st.sampled_from(IDS)
# seconds between events; negative steps give out-of-order timestamps
dts = st.integers(-3, 30)
# integer control attributes the fold must refuse: not integers, or outside their column
bad_ints = st.sampled_from(
    [
        ("credential_expires_us", "12x"),
        ("inactivity_timeout_s", "-1"),
        ("inactivity_timeout_s", str(2**32)),
        ("provision_until_us", str(2**63)),
        ("credential_expires_us", "-5"),
    ]
)
# JSON the fold must refuse (NaN and the infinities are Python's, not JSON)
bad_json = st.sampled_from(['{"on": tru', "NaN", "-Infinity", "[Infinity]", "", "01"])
ips = st.none() | st.sampled_from(IPS)
hashes = st.sampled_from(HASHES)
free_attrs = st.dictionaries(
    st.sampled_from(FREE_KEYS), st.sampled_from(["x", "y", "", "ü"]), max_size=3
)
# values may repeat inside a list: the fold must keep each value once, first place wins
tag_maps = st.dictionaries(
    st.sampled_from(TAG_NAMES), st.lists(st.sampled_from(TAG_VALUES), max_size=4), max_size=3
)

# JSON values of every kind, with numbers and booleans that Python thinks equal (1, 1.0,
# True) at every depth
_leaf = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, 2, -3, 0.5, 2.0, 1e10])
    | st.sampled_from(["on", ""])
)
json_values = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, 2, -3, 0.5, 2.0, 1e10, -0.25])
    | st.sampled_from(["on", "off", "", "1", "ä"])
    | st.lists(_leaf, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "b", "c"]), _leaf, max_size=3)
)
encodings = st.sampled_from(["compact", "spaced", "sorted"])
# values whose reports are easy to get wrong: booleans next to 0 and 1, at depth
tricky_values = st.sampled_from([[1], [True], [0, "on"], {"a": 0, "b": 1}, {"a": False}, 1, 0.0])


def encode(value: Any, how: str) -> str:
    if how == "compact":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if how == "sorted":
        return json.dumps(value, sort_keys=True)
    return json.dumps(value, indent=1)


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: numbers by value (1 == 1.0), booleans never equal to
    numbers, at any depth; objects regardless of key order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def renumbered(value: Any) -> Any:
    """The same JSON value spelled differently: integral numbers flip between int and
    float, object keys reversed."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, list):
        return [renumbered(v) for v in value]
    return {k: renumbered(value[k]) for k in reversed(list(value))}


def bool_swapped(value: Any) -> Any:
    """A value equal to ``value`` in Python but not as JSON (True vs 1, at any depth),
    when there is one."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, list):
        return [bool_swapped(v) for v in value]
    if isinstance(value, dict):
        return {k: bool_swapped(v) for k, v in value.items()}
    return value


def unique(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def event(
    identity: str,
    kind: str,
    ts: int,
    *,
    actor: str | None = None,
    ip: str | None = None,
    tags: dict[str, list[str]] | None = None,
    state: dict[str, str] | None = None,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    return identity_event(
        identity,
        kind,
        ts,
        actor=actor,
        ip=ip,
        tags=tags,
        state=state,
        attributes=attributes,
        event_id=f"{identity}-{kind}-{ts}",
    )


@dataclass
class Device:
    """What the test expects of one identity: the lifecycle, written out on its own."""

    present: bool = False
    version: int = 0
    created_us: int = 0
    updated_us: int = 0
    status: str = ""
    locked_from: str = ""
    auth_type: str = ""
    credential_hash: str = ""
    credential_expires_us: int = 0
    provision_until_us: int = 0
    provisioned_us: int = 0
    inactivity_timeout_s: int = 0
    lastip: str = ""
    connected: bool = False
    connected_us: int = 0
    disconnected_us: int = 0
    attributes: dict[str, str] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)
    desired: dict[str, tuple[str, Any]] = field(default_factory=dict)  # text, value
    set_ts: dict[str, int] = field(default_factory=dict)
    set_by: dict[str, str] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)
    timed_out: dict[str, int] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)

    def row(self, identity: str) -> dict[str, Any]:
        """The millrace.identities row this device should have."""
        return {
            "identity": identity,
            "version": self.version,
            "present": int(self.present),
            "created_us": self.created_us,
            "updated_us": self.updated_us,
            "status": self.status,
            "locked_from": self.locked_from,
            "auth_type": self.auth_type,
            "credential_hash": self.credential_hash,
            "credential_expires_us": self.credential_expires_us,
            "provision_until_us": self.provision_until_us,
            "provisioned_us": self.provisioned_us,
            "lastip": self.lastip,
            "connected": int(self.connected),
            "connected_us": self.connected_us,
            "disconnected_us": self.disconnected_us,
            "inactivity_timeout_s": self.inactivity_timeout_s,
            "attributes": dict(self.attributes),
            "tags": {k: list(v) for k, v in self.tags.items()},
            "set_values": {r: text for r, (text, _) in self.desired.items()},
            "set_ts": dict(self.set_ts),
            "set_by": dict(self.set_by),
            "acked_ts": dict(self.acked),
            "timed_out_ts": dict(self.timed_out),
            "stale_ts": dict(self.stale),
        }


def report_rule() -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The arguments of a device report (acknowledgement or timeout of a set value)."""
    return rule(
        identity=ids,
        dt=dts,
        resource=st.sampled_from(RESOURCES),
        choice=st.sampled_from(["current", "current", "renumbered", "older", "other", "swap"]),
        other=json_values,
        how=encodings,
        broken=st.none() | st.none() | st.none() | bad_json,
        data=st.data(),
    )


class IdentityLifecycle(RuleBasedStateMachine):
    """Random identity events through ``apply``; the model says what must happen."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0
        self.now = T0
        self.devices: dict[str, Device] = {i: Device() for i in IDS}
        self.folded: dict[str, State | None] = dict.fromkeys(IDS)
        self.seen_versions: dict[str, int] = dict.fromkeys(IDS, 0)
        # every value ever set per (identity, resource): the "older" reports
        self.history: dict[tuple[str, str], list[Any]] = {}

    # -- plumbing ---------------------------------------------------------------------

    def _ts(self, dt: int) -> int:
        self.now += dt * SECOND
        return self.now

    def _live(self, identity: str) -> Device | None:
        """A copy of the identity's device to change, or None when it is absent."""
        d = self.devices[identity]
        return copy.deepcopy(d) if d.present else None

    def _send(self, ev: dict[str, Any], expect: Device | None) -> None:
        """Fold ``ev``; ``expect`` is the device afterwards, or None for a rejection."""
        identity = ev["identity"]
        version = self.offset + 1
        self.offset += 1
        prev = self.folded[identity]
        before = copy.deepcopy(prev)
        try:
            got: State | None = apply(prev, ev, version)
        except IdentityRejectedError as exc:
            assert str(exc), "a rejection names its reason"
            got = None
        assert prev == before, "apply changed the state it was given"
        if expect is None:
            assert got is None, f"accepted, but should be rejected: {ev}"
            return
        assert got is not None, f"rejected, but should apply: {ev}"
        expect.version = version
        if ev["type"] != "DELETED":
            expect.updated_us = max(expect.updated_us, ev["ts_us"])
        self.devices[identity] = expect
        self.folded[identity] = got

    # -- rules ------------------------------------------------------------------------

    @initialize(
        starts=st.lists(
            st.sampled_from(["plain", "provisioned", "reprovision"]), min_size=3, max_size=3
        ),
        tags=tag_maps,
        attrs=free_attrs,
    )
    def devices_exist(
        self, starts: list[str], tags: dict[str, list[str]], attrs: dict[str, str]
    ) -> None:
        for identity, start in zip(IDS, starts, strict=True):
            self.create(identity, 1, tags, attrs, start, None)

    @rule(
        identity=ids,
        dt=dts,
        tags=tag_maps,
        attrs=free_attrs,
        start=st.sampled_from(
            [
                "plain",
                "plain",
                "provisioned",
                "provisioned_without_credential",
                "reprovision",
                "expired",
                "locked",
                "not_an_int",
            ]
        ),
        window=st.none() | st.integers(0, 10**12),
    )
    def create(
        self,
        identity: str,
        dt: int,
        tags: dict[str, list[str]],
        attrs: dict[str, str],
        start: str,
        window: int | None,
    ) -> None:
        ts = self._ts(dt)
        sent = dict(attrs)
        d = Device(present=True, created_us=ts, status="whitelisted", attributes=dict(attrs))
        # a tag holds at least one value: an empty list adds no tag
        d.tags = {tag: unique(values) for tag, values in tags.items() if values}
        ok = not self.devices[identity].present
        if window is not None:
            sent["provision_until_us"] = str(window)
            d.provision_until_us = window
        if start == "provisioned":
            sent.update(status="provisioned", credential_hash=HASHES[0], auth_type="token")
            d.status, d.credential_hash, d.auth_type = "provisioned", HASHES[0], "token"
            d.provisioned_us = ts  # created with a credential: provisioned now
        elif start == "provisioned_without_credential":
            sent["status"] = "provisioned"
            ok = False
        elif start == "reprovision":
            sent["status"] = d.status = "reprovision"
        elif start in ("expired", "locked"):
            sent["status"] = start  # only reached through events, never set directly
            ok = False
        elif start == "not_an_int":
            sent["inactivity_timeout_s"] = "soon"
            ok = False
        ev = event(identity, "CREATED", ts, tags=tags or None, attributes=sent, actor="op")
        self._send(ev, d if ok else None)

    @rule(
        identity=ids,
        dt=dts,
        attrs=free_attrs,
        unset=st.lists(st.sampled_from(FREE_KEYS), max_size=2),
        timeout=st.none() | st.integers(0, 86_400) | st.just(2**32 - 1),
        bad_int=st.none() | st.none() | st.none() | bad_ints,
    )
    def update_attributes(
        self,
        identity: str,
        dt: int,
        attrs: dict[str, str],
        unset: list[str],
        timeout: int | None,
        bad_int: tuple[str, str] | None,
    ) -> None:
        sent = dict(attrs)
        d = self._live(identity)
        if unset:
            sent["unset"] = ",".join(unset)
        if timeout is not None:
            sent["inactivity_timeout_s"] = str(timeout)
        if bad_int is not None:
            sent[bad_int[0]] = bad_int[1]
        if d is not None:
            d.attributes.update(attrs)
            for key in unset:  # the unset list is applied after the values set
                d.attributes.pop(key, None)
            if timeout is not None:
                d.inactivity_timeout_s = timeout
        ev = event(identity, "UPDATED", self._ts(dt), attributes=sent, actor="op")
        self._send(ev, None if bad_int is not None else d)

    @rule(
        identity=ids,
        dt=dts,
        status=st.sampled_from(
            ["whitelisted", "reprovision", "provisioned", "provisioned", "expired", "locked", "on"]
        ),
        credential=st.sampled_from([None, None, "", *HASHES]),
    )
    def operator_status(self, identity: str, dt: int, status: str, credential: str | None) -> None:
        """An operator resets the status through UPDATED attributes."""
        sent = {"status": status}
        d = self._live(identity)
        if credential is not None:
            sent["credential_hash"] = credential
        if d is not None:
            settable = status in ("whitelisted", "reprovision", "provisioned")
            # the credential the identity has after the event
            has_credential = bool(d.credential_hash if credential is None else credential)
            if not settable or (status == "provisioned" and not has_credential):
                d = None
        if d is not None:
            if credential is not None:
                d.credential_hash = credential
            if d.status == "locked":
                d.locked_from = status  # stays locked; unlocking lands on the new status
            else:
                d.status = status
        self._send(event(identity, "UPDATED", self._ts(dt), attributes=sent, actor="op"), d)

    @rule(identity=ids, dt=dts, again=st.sampled_from([True, True, True, False]), tags=tag_maps)
    def delete(self, identity: str, dt: int, again: bool, tags: dict[str, list[str]]) -> None:
        """Delete; mostly created again right away, which must start from scratch."""
        d = Device() if self.devices[identity].present else None
        self._send(event(identity, "DELETED", self._ts(dt), actor="op"), d)
        if again:
            self.create(identity, 1, tags, {}, "plain", None)

    @rule(identity=ids, dt=dts, ip=ips)
    def connect(self, identity: str, dt: int, ip: str | None) -> None:
        ts = self._ts(dt)
        d = self._live(identity)
        if d is not None and d.status == "locked":
            d = None
        if d is not None:
            d.connected, d.connected_us = True, ts
            d.lastip = ip or d.lastip
        self._send(event(identity, "CONNECTED", ts, ip=ip), d)

    @rule(identity=ids, dt=dts)
    def disconnect(self, identity: str, dt: int) -> None:
        ts = self._ts(dt)
        d = self._live(identity)
        if d is not None:
            d.connected, d.disconnected_us = False, ts
        self._send(event(identity, "DISCONNECTED", ts), d)

    @rule(
        identity=ids,
        dt=dts,
        kind=st.sampled_from(["PROVISIONED", "REPROVISIONED"]),
        credential=st.none() | st.just("") | hashes,
        auth=st.none() | st.sampled_from(["token", "password"]),
        ip=ips,
        expires=st.none() | st.integers(0, 10**13),
        stray_status=st.booleans(),
    )
    def provision(
        self,
        identity: str,
        dt: int,
        kind: str,
        credential: str | None,
        auth: str | None,
        ip: str | None,
        expires: int | None,
        stray_status: bool,
    ) -> None:
        ts = self._ts(dt)
        sent: dict[str, str] = {}
        if credential is not None:
            sent["credential_hash"] = credential
        if auth is not None:
            sent["auth_type"] = auth
        if expires is not None:
            sent["credential_expires_us"] = str(expires)
        if stray_status:
            sent["status"] = "whitelisted"  # ignored: provisioning decides the status
        d = self._live(identity)
        if d is not None and (d.status not in ("whitelisted", "reprovision") or not credential):
            d = None
        if d is not None:
            assert credential
            d.credential_hash = credential
            d.auth_type = auth or d.auth_type
            if expires is not None:
                d.credential_expires_us = expires
            d.status, d.provisioned_us = "provisioned", ts
            d.lastip = ip or d.lastip
        self._send(event(identity, kind, ts, ip=ip, attributes=sent), d)

    @rule(
        identity=ids,
        dt=dts,
        what=st.sampled_from([None, "window", "credentials", "battery"]),
    )
    def expire(self, identity: str, dt: int, what: str | None) -> None:
        d = self._live(identity)
        if d is not None:
            # time does not stop for a lock: the status it returns to expires
            locked = d.status == "locked"
            base = d.locked_from if locked else d.status
            if (what or "window") == "window" and base == "whitelisted":
                after = "expired"
            elif what == "credentials" and base == "provisioned":
                after = "reprovision"
            else:
                after = None
            if after is None:
                d = None
            elif locked:
                d.locked_from = after
            else:
                d.status = after
        sent = {} if what is None else {"what": what}
        self._send(event(identity, "EXPIRED", self._ts(dt), attributes=sent), d)

    @rule(identity=ids, dt=dts)
    def lock(self, identity: str, dt: int) -> None:
        d = self._live(identity)
        if d is not None and d.status != "locked":
            d.locked_from, d.status = d.status, "locked"
        self._send(event(identity, "LOCKED", self._ts(dt), actor="op"), d)

    @rule(identity=ids, dt=dts)
    def unlock(self, identity: str, dt: int) -> None:
        d = self._live(identity)
        if d is not None and d.status == "locked":
            d.status, d.locked_from = d.locked_from, ""
        self._send(event(identity, "UNLOCKED", self._ts(dt), actor="op"), d)

    @rule(
        identity=ids,
        dt=dts,
        tags=tag_maps,
        replace=st.sampled_from([None, "true", "false", "yes"]),
    )
    def tags_set(
        self, identity: str, dt: int, tags: dict[str, list[str]], replace: str | None
    ) -> None:
        d = self._live(identity)
        if d is not None:
            for tag, values in tags.items():
                # replace concerns the tags named; the others are left as they are
                base = [] if replace == "true" else d.tags.get(tag, [])
                merged = unique([*base, *values])
                if merged:
                    d.tags[tag] = merged
                else:  # no values: no tag
                    d.tags.pop(tag, None)
        sent = {} if replace is None else {"replace": replace}
        ev = event(identity, "TAGS_SET", self._ts(dt), tags=tags, attributes=sent)
        self._send(ev, d)

    @rule(identity=ids, dt=dts, data=st.data())
    def tags_removed(self, identity: str, dt: int, data: st.DataObject) -> None:
        d = self._live(identity)
        removals = data.draw(tag_maps)
        known = sorted(self.devices[identity].tags)
        if known:  # mostly aim at tags that exist
            tag = data.draw(st.sampled_from(known))
            removals[tag] = data.draw(
                st.lists(st.sampled_from(TAG_VALUES), max_size=2)
                | st.just(list(self.devices[identity].tags[tag]))
            )
        if d is not None:
            for tag, values in removals.items():
                current = d.tags.get(tag)
                remaining = [] if current is None or not values else current
                remaining = [v for v in remaining if v not in values]
                if remaining:
                    d.tags[tag] = remaining
                else:
                    d.tags.pop(tag, None)  # no values left, or the whole tag asked for
        self._send(event(identity, "TAGS_REMOVED", self._ts(dt), tags=removals), d)

    @rule(
        identity=ids,
        dt=dts,
        values=st.dictionaries(st.sampled_from(RESOURCES), json_values, min_size=1, max_size=2),
        how=encodings,
        actor=st.none() | st.sampled_from(["op", "key:ci"]),
        broken=st.none() | st.none() | st.none() | bad_json,
    )
    def state_set(
        self,
        identity: str,
        dt: int,
        values: dict[str, Any],
        how: str,
        actor: str | None,
        broken: str | None,
    ) -> None:
        ts = self._ts(dt)
        texts = {r: encode(v, how) for r, v in values.items()}
        if broken is not None:
            texts[RESOURCES[-1]] = broken
        d = None if broken is not None else self._live(identity)
        if d is not None:
            for r, v in values.items():
                self.history.setdefault((identity, r), []).append(v)
                d.desired[r] = (texts[r], v)
                d.set_ts[r] = ts
                d.set_by[r] = actor or ""
                d.acked.pop(r, None)  # a new command is pending until reported back
                d.timed_out.pop(r, None)
        self._send(event(identity, "STATE_SET", ts, state=texts, actor=actor), d)

    @rule(
        identity=ids,
        resource=st.sampled_from(RESOURCES),
        previous=st.none() | json_values | tricky_values,
        value=json_values | tricky_values,
        how=encodings,
        kind=st.sampled_from(["STATE_ACKNOWLEDGED", "STATE_TIMED_OUT"]),
        choice=st.sampled_from(["current", "renumbered", "older", "swap"]),
        data=st.data(),
    )
    def command_round_trip(
        self,
        identity: str,
        resource: str,
        previous: Any,
        value: Any,
        how: str,
        kind: str,
        choice: str,
        data: st.DataObject,
    ) -> None:
        """A set value (perhaps after another one), then the device's report on it: the
        control loop in one go, so that reports meet a standing command."""
        if previous is not None:
            self.state_set(identity, 1, {resource: previous}, how, "op", None)
        self.state_set(identity, 1, {resource: value}, how, "op", None)
        self._report(kind, identity, 1, resource, choice, None, how, None, data)

    @report_rule()
    def state_acknowledged(self, **kw: Any) -> None:
        self._report("STATE_ACKNOWLEDGED", **kw)

    @report_rule()
    def state_timed_out(self, **kw: Any) -> None:
        self._report("STATE_TIMED_OUT", **kw)

    def _report(
        self,
        kind: str,
        identity: str,
        dt: int,
        resource: str,
        choice: str,
        other: Any,
        how: str,
        broken: str | None,
        data: st.DataObject,
    ) -> None:
        """A report of a value (acknowledgement), or the timeout of a set value."""
        ts = self._ts(dt)
        desired = sorted(self.devices[identity].desired)
        if desired and data.draw(st.integers(0, 4)) > 0:  # mostly about a set value
            resource = data.draw(st.sampled_from(desired))
        standing = self.devices[identity].desired.get(resource)
        older = self.history.get((identity, resource), [])
        value: Any = other
        if choice == "current" and standing is not None:
            value = standing[1]
        elif choice == "renumbered" and standing is not None:
            value = renumbered(standing[1])
        elif choice == "swap" and standing is not None:
            value = bool_swapped(standing[1])
        elif choice == "older" and older:
            # an older command: another value where there is one
            differing = [v for v in older if standing is None or not json_equal(v, standing[1])]
            value = data.draw(st.sampled_from(differing or older))
        text = encode(value, how) if broken is None else broken
        d = self._live(identity) if broken is None else None
        if d is not None and standing is not None and json_equal(standing[1], value):
            column = d.acked if kind == "STATE_ACKNOWLEDGED" else d.timed_out
            column[resource] = ts
        self._send(event(identity, kind, ts, state={resource: text}), d)

    @rule(
        identity=ids,
        dt=dts,
        resources=st.lists(st.sampled_from(RESOURCES), min_size=1, max_size=3, unique=True),
    )
    def resource_stale(self, identity: str, dt: int, resources: list[str]) -> None:
        ts = self._ts(dt)
        d = self._live(identity)
        if d is not None:
            for r in resources:
                d.stale[r] = ts
        ev = event(identity, "RESOURCE_STALE", ts, state=dict.fromkeys(resources, "null"))
        self._send(ev, d)

    @rule(
        identity=ids,
        dt=dts,
        kind=st.sampled_from(["UNKNOWN", "RESOURCE_DEFINED", "RESOURCE_REMOVED", "REBOOTED"]),
    )
    def foreign_type(self, identity: str, dt: int, kind: str) -> None:
        """Types that are not identity lifecycle events: refused, present or not."""
        self._send(event(identity, kind, self._ts(dt), attributes={"name": "valve"}), None)

    @precondition(lambda self: any(d.present for d in self.devices.values()))
    @rule(data=st.data(), dt=dts)
    def lock_connect_unlock(self, data: st.DataObject, dt: int) -> None:
        """The lock story in one go: locked refuses connect, unlock restores."""
        identity = data.draw(st.sampled_from([i for i in IDS if self.devices[i].present]))
        self.lock(identity, dt)
        self.connect(identity, 1, IPS[0])
        self.unlock(identity, 1)

    @rule(
        identity=ids,
        kind=st.sampled_from(["PROVISIONED", "REPROVISIONED"]),
        credential=hashes,
        ip=ips,
    )
    def window_passes_then_provision(
        self, identity: str, kind: str, credential: str, ip: str | None
    ) -> None:
        """A device that comes too late: once expired it may not provision."""
        self.expire(identity, 1, "window")
        self.provision(identity, 1, kind, credential, None, ip, None, False)

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def fold_matches_model(self) -> None:
        for identity in IDS:
            got = self.folded[identity]
            expected = self.devices[identity]
            if got is None:
                assert expected.version == 0, identity
                continue
            assert got == expected.row(identity), identity

    @invariant()
    def versions_only_grow(self) -> None:
        for identity in IDS:
            got = self.folded[identity]
            version = 0 if got is None else got["version"]
            assert version >= self.seen_versions[identity]
            assert version <= self.offset
            self.seen_versions[identity] = version

    @invariant()
    def statuses_are_consistent(self) -> None:
        for identity, d in self.devices.items():
            if not d.present:
                continue
            assert d.status in ("whitelisted", "provisioned", "reprovision", "expired", "locked")
            assert (d.status == "locked") == bool(d.locked_from), identity
            assert d.locked_from != "locked"


IdentityLifecycle.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestIdentityLifecycle = IdentityLifecycle.TestCase


# -- bugs the state machine found in the fold (fixed), pinned ----------------------------


def _fold(*events: dict[str, Any]) -> State:
    s: State | None = None
    for i, ev in enumerate(events):
        s = apply(s, ev, i + 1)
    assert s is not None
    return s


def test_provisioned_never_without_credential() -> None:
    s = _fold(
        event("d", "CREATED", T0, attributes={"status": "provisioned", "credential_hash": "h"})
    )
    with pytest.raises(IdentityRejectedError):
        apply(
            s,
            event(
                "d", "UPDATED", T0 + 1, attributes={"status": "provisioned", "credential_hash": ""}
            ),
            2,
        )


def test_nested_boolean_is_not_a_number() -> None:
    s = _fold(
        event("d", "CREATED", T0),
        event("d", "STATE_SET", T0 + 1, state={"valve": "[1]"}),
        event("d", "STATE_ACKNOWLEDGED", T0 + 2, state={"valve": "[true]"}),
    )
    assert s["acked_ts"] == {}


@pytest.mark.parametrize("locked", [False, True])
def test_clearing_the_credential_of_a_provisioned_identity(locked: bool) -> None:
    events = [
        event("d", "CREATED", T0),
        event("d", "PROVISIONED", T0 + 1, attributes={"credential_hash": "h"}),
        *([event("d", "LOCKED", T0 + 2)] if locked else []),
    ]
    s = _fold(*events)
    try:
        s = apply(s, event("d", "UPDATED", T0 + 3, attributes={"credential_hash": ""}), 9)
    except IdentityRejectedError:
        return  # refusing the event is one way out
    s = apply(s, event("d", "UNLOCKED", T0 + 4), 10)
    # the other: no longer provisioned (e.g. reprovision)
    assert not (s["status"] == "provisioned" and s["credential_hash"] == "")


def test_created_with_a_credential_is_provisioned_then() -> None:
    ev = event("d", "CREATED", T0, attributes={"status": "provisioned", "credential_hash": "h"})
    assert _fold(ev)["provisioned_us"] == T0
    assert _fold(event("d", "CREATED", T0))["provisioned_us"] == 0
    out = IdentityProcessor().process_with_state([Event("identity", 0, 0, T0, b"d", ev)], {})
    assert out.tables["device_metrics"].to_pylist() == [
        {"metric": "provisioning", "ts": T0, "value": 1.0}
    ]


def test_refused_events_count_in_no_metric() -> None:
    created = event("d", "CREATED", T0)
    lock = event("d", "LOCKED", T0 + 1)
    refused = [
        event("d", "CONNECTED", T0 + 2),  # locked
        event("d", "PROVISIONED", T0 + 3, attributes={"credential_hash": "h"}),  # locked
        event("nobody", "DISCONNECTED", T0 + 4),  # unknown identity
    ]
    evs = [Event("identity", 0, o, T0, b"d", e) for o, e in enumerate([created, lock, *refused])]
    out = IdentityProcessor().process_with_state(evs, {})
    assert [dl["source_offset"] for dl in out.deadletters] == [2, 3, 4]
    assert out.tables["device_metrics"].num_rows == 0
    # the state table comes last: metrics depend on the state before the event
    assert list(out.tables)[-1] == "identities"


def test_auth_type_changes_only_with_a_credential() -> None:
    s = _fold(
        event("d", "CREATED", T0, attributes={"status": "provisioned", "credential_hash": "h"})
    )
    with pytest.raises(IdentityRejectedError, match="auth_type"):
        apply(s, event("d", "UPDATED", T0 + 1, attributes={"auth_type": "password"}), 2)
    with pytest.raises(IdentityRejectedError, match="auth_type"):
        apply(None, event("e", "CREATED", T0, attributes={"auth_type": "password"}), 1)
    s = apply(
        s,
        event("d", "UPDATED", T0 + 1, attributes={"auth_type": "password", "credential_hash": "p"}),
        2,
    )
    assert (s["auth_type"], s["credential_hash"]) == ("password", "p")


@pytest.mark.parametrize(
    ("created", "what", "after"),
    [
        ({}, "window", "expired"),
        ({"status": "provisioned", "credential_hash": "h"}, "credentials", "reprovision"),
    ],
)
def test_a_locked_identity_expires_underneath_its_lock(
    created: dict[str, str], what: str, after: str
) -> None:
    s = _fold(
        event("d", "CREATED", T0, attributes=created),
        event("d", "LOCKED", T0 + 1),
        event("d", "EXPIRED", T0 + 2, attributes={"what": what}),
    )
    assert (s["status"], s["locked_from"]) == ("locked", after)
    s = apply(s, event("d", "UNLOCKED", T0 + 3), 4)
    assert (s["status"], s["locked_from"]) == (after, "")
    with pytest.raises(IdentityRejectedError):  # once is enough
        apply(s, event("d", "EXPIRED", T0 + 4, attributes={"what": what}), 5)


@pytest.mark.parametrize("replace", [{}, {"replace": "true"}])
def test_a_tag_holds_at_least_one_value(replace: dict[str, str]) -> None:
    s = _fold(
        event("d", "CREATED", T0, tags={"room": ["1"], "empty": []}),
        event("d", "TAGS_SET", T0 + 1, tags={"room": [], "new": []}, attributes=replace),
    )
    assert s["tags"] == ({"room": ["1"]} if not replace else {})


def test_nan_is_not_json() -> None:
    s = _fold(event("d", "CREATED", T0))
    with pytest.raises(IdentityRejectedError):
        apply(s, event("d", "STATE_SET", T0 + 1, state={"setpoint": "NaN"}), 2)


@pytest.mark.parametrize(
    "attrs",
    [
        {"inactivity_timeout_s": "-1"},
        {"inactivity_timeout_s": str(2**32)},
        {"provision_until_us": str(2**63)},
    ],
)
def test_out_of_range_control_integer_is_a_dead_letter(attrs: dict[str, str]) -> None:
    ev = event("d", "CREATED", T0, attributes=attrs)
    out = IdentityProcessor().process_with_state([Event("identity", 0, 0, T0, b"d", ev)], {})
    assert [dl["source_offset"] for dl in out.deadletters] == [0]
    assert "identities" not in out.tables


# -- exactly-once of the processor ------------------------------------------------------

TP = TopicPartition("identity", 0)
CONSUMER = "identity-test"
GOOD_DEFINITION = '{"format": "number", "unit": "degC"}'
BAD_DEFINITIONS = ('{"format": "colour"}', "not json")


@st.composite
def identity_events(draw: st.DrawFn) -> dict[str, Any]:
    """One event of the identity topic, often one the fold refuses."""
    identity = draw(st.sampled_from([*IDS, *IDS, "*", ""]))
    ts = T0 + draw(st.integers(0, 3600)) * SECOND
    if identity == "*":
        kind = draw(st.sampled_from(["RESOURCE_DEFINED", "RESOURCE_REMOVED", "LOCKED"]))
        text = draw(st.sampled_from([GOOD_DEFINITION, *BAD_DEFINITIONS]))
        named = {"name": draw(st.sampled_from(["valve", ""])), "definition": text}
        return event(identity, kind, ts, attributes=named, actor="op")
    kind = draw(
        st.sampled_from(
            [
                "CREATED",
                "CREATED",
                "UPDATED",
                "DELETED",
                "CONNECTED",
                "DISCONNECTED",
                "PROVISIONED",
                "REPROVISIONED",
                "EXPIRED",
                "LOCKED",
                "UNLOCKED",
                "TAGS_SET",
                "TAGS_REMOVED",
                "STATE_SET",
                "STATE_ACKNOWLEDGED",
                "STATE_TIMED_OUT",
                "RESOURCE_STALE",
                "UNKNOWN",
            ]
        )
    )
    attrs: dict[str, str] = {}
    tags: dict[str, list[str]] | None = None
    state: dict[str, str] | None = None
    if kind == "CREATED":
        attrs = draw(
            st.sampled_from(
                [
                    {},
                    {"name": "x"},
                    {"status": "provisioned", "credential_hash": "h"},
                    {"status": "provisioned"},
                ]
            )
        )
        tags = draw(st.none() | tag_maps)
    elif kind == "UPDATED":
        attrs = draw(
            st.sampled_from(
                [
                    {"name": "y"},
                    {"unset": "name"},
                    {"status": "reprovision"},
                    {"status": "whitelisted"},
                    {"status": "provisioned"},
                    {"inactivity_timeout_s": "60"},
                    {"inactivity_timeout_s": "soon"},
                    {"inactivity_timeout_s": "-1"},
                    {"provision_until_us": str(2**64)},
                ]
            )
        )
    elif kind in ("PROVISIONED", "REPROVISIONED"):
        attrs = draw(st.sampled_from([{"credential_hash": "h2", "auth_type": "token"}, {}]))
    elif kind == "EXPIRED":
        attrs = {"what": draw(st.sampled_from(["window", "credentials"]))}
    elif kind in ("TAGS_SET", "TAGS_REMOVED"):
        tags = draw(tag_maps)
        attrs = draw(st.sampled_from([{}, {"replace": "true"}]))
    elif kind in ("STATE_SET", "STATE_ACKNOWLEDGED", "STATE_TIMED_OUT", "RESOURCE_STALE"):
        texts = st.sampled_from(["1", "1.0", "true", '"on"', "[1, true]", "{nope", "NaN"])
        state = draw(st.dictionaries(st.sampled_from(RESOURCES), texts, min_size=1, max_size=2))
    ip = draw(ips) if kind in ("CONNECTED", "PROVISIONED", "REPROVISIONED") else None
    return event(identity, kind, ts, ip=ip, tags=tags, state=state, attributes=attrs)


def _one_pass(events: Sequence[Mapping[str, Any]]) -> tuple[dict[str, State], set[int]]:
    """The final state per identity and the rejected offsets, folding the log once."""
    states: dict[str, State] = {}
    rejected: set[int] = set()
    for offset, ev in enumerate(events):
        identity = ev["identity"]
        if identity == "*":
            ok = (
                ev["type"] == "RESOURCE_REMOVED"
                or (
                    ev["type"] == "RESOURCE_DEFINED"
                    and ev["attributes"]["definition"] == GOOD_DEFINITION
                )
            ) and ev["attributes"]["name"] != ""
            if not ok:
                rejected.add(offset)
            continue
        if identity == "":
            rejected.add(offset)
            continue
        try:
            states[identity] = apply(states.get(identity), ev, offset + 1)
        except IdentityRejectedError:
            rejected.add(offset)
    return states, rejected


def _as_event(offset: int, value: Mapping[str, Any]) -> Event:
    return Event("identity", 0, offset, value["ts_us"], str(value["identity"]).encode(), value)


modes = st.sampled_from(["plain", "plain", "redo", "crash"])


@settings(max_examples=60, deadline=None)
@given(
    body=st.lists(identity_events(), max_size=30),
    cuts=st.lists(st.tuples(st.integers(1, 8), modes, st.integers(1, 4)), min_size=1),
)
def test_processor_exactly_once_over_batches_and_redos(
    body: list[dict[str, Any]], cuts: list[tuple[int, str, int]]
) -> None:
    """Batches of random sizes carry the state through the sink; some are written twice
    (a redo after the commit: the version skip and the tokens make it a no-op), some
    crash after the intent or part of the tables and are redone from whatever landed.
    The sink ends where one pass of the fold ends, each refused event is a dead letter,
    and definitions and metrics are counted once."""
    log = [
        event("dev-a", "CREATED", T0, attributes={"name": "a"}),
        event("dev-b", "CREATED", T0, tags={"room": ["1"]}),
        *body,
    ]
    expected_states, expected_rejected = _one_pass(log)

    proc = IdentityProcessor()
    sink = MemoryProjectionSink()
    dead: list[int] = []
    start, seq, i = 0, 0, 0
    while start < len(log):
        size, mode, crash_after = cuts[i % len(cuts)]
        i += 1
        end = min(len(log), start + size)
        seq += 1
        events = [_as_event(o, log[o]) for o in range(start, end)]

        def run(
            events: list[Event] = events, start: int = start, end: int = end, seq: int = seq
        ) -> SinkBatch:
            out = proc.process_with_state(
                events, sink.load_state("identities", "identity", proc.state_keys(events))
            )
            offsets = [dl["source_offset"] for dl in out.deadletters]
            assert len(offsets) == len(set(offsets))
            assert all(start <= o < end for o in offsets)
            dead.extend(offsets)
            return SinkBatch(seq, {TP: Range(start, end)}, out.tables)

        batch = run()
        if mode == "crash":
            sink.fail_after = crash_after  # dies after the intent or some of the tables
            try:
                sink.write(CONSUMER, batch)
            except RuntimeError as exc:
                assert "injected" in str(exc)
                assert sink.progress(CONSUMER).pending == {TP: Range(start, end)}
            sink.fail_after = None
            # the restarted worker redoes the same range from whatever state landed
            sink.write(CONSUMER, run())
        else:
            sink.write(CONSUMER, batch)
            if mode == "redo":
                rows_before = {k: list(v) for k, v in sink.rows.items()}
                sink.write(CONSUMER, run())
                assert sink.rows == rows_before
        assert sink.progress(CONSUMER).positions == {TP: end}
        start = end

    got = sink.load_state("identities", "identity", list(IDS))
    assert got == expected_states
    assert set(dead) == expected_rejected

    # definitions: one row per applied registry event, whatever was redone
    defs = [cast(int, r["version"]) for r in sink.rows.get("resource_defs", [])]
    assert sorted(defs) == [
        o + 1 for o, ev in enumerate(log) if ev["identity"] == "*" and o not in expected_rejected
    ]
    # metrics: one count per connect/disconnect/provisioning event the fold applied
    # (a CREATED with a credential provisions), once each; refused events count nothing
    counted = {
        "CONNECTED": "connection",
        "DISCONNECTED": "disconnection",
        "PROVISIONED": "provisioning",
        "REPROVISIONED": "provisioning",
    }
    want = Counter(
        (
            counted.get(ev["type"])
            or ("provisioning" if ev["attributes"].get("status") == "provisioned" else ""),
            ev["ts_us"],
        )
        for o, ev in enumerate(log)
        if o not in expected_rejected
        and (
            ev["type"] in counted
            or (ev["type"] == "CREATED" and ev["attributes"].get("status") == "provisioned")
        )
    )
    have = Counter((r["metric"], r["ts"]) for r in sink.rows.get("device_metrics", []))
    assert have == want


def test_memory_sink_state_round_trip() -> None:
    proc = IdentityProcessor()
    sink = MemoryProjectionSink()
    created = _as_event(0, event("dev-a", "CREATED", T0))
    out = proc.process_with_state([created], {})
    sink.write(CONSUMER, SinkBatch(1, {TP: Range(0, 1)}, out.tables))
    updated = _as_event(1, event("dev-a", "UPDATED", T0 + 1, attributes={"name": "a"}))
    out = proc.process_with_state([updated], sink.load_state("identities", "identity", ["dev-a"]))
    assert out.deadletters == []
