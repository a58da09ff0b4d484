"""The identity fold: one IdentityEvent applied to an identity's state.

Pure and deterministic: the same events in the same order give the same state, which
is what lets the identity projection be rebuilt by replay. The state is a plain dict
with the columns of ``millrace.identities`` (see projections/sql/0007_identities.sql).
An event that cannot apply (unknown identity, a lock in the way, a malformed field)
raises :class:`IdentityRejectedError`; the processor turns it into a dead letter and the state is
unchanged — concurrent API writes are resolved by log order, and the later one of two
conflicting writes is the one refused, visibly.

Statuses: ``whitelisted`` (created, may provision) -> ``provisioned`` (has a
credential); ``expired`` (the provisioning window passed before it provisioned);
``reprovision`` (its credential expired, or an operator asked for a new one);
``locked`` (refused at connect and ingest; unlocking restores the previous status).

Settled rules (each pinned by a test in tests/identities/test_state_machine.py):

- A CREATED that carries a credential (``status: provisioned`` with a
  ``credential_hash``) is a provisioning: ``provisioned_us`` is its time and the
  processor counts it in the ``provisioning`` metric, as it counts a PROVISIONED.
  The device has not shown up, though: ``provisioned_us == created_us`` with no
  ``lastip`` marks an operator's provisioning, which the registry's ``lastseen`` /
  ``online`` ignore (a device that creates and provisions itself in one request
  carries its address).
- A tag holds at least one value, whichever way it is written: TAGS_SET (or CREATED)
  with an empty list adds nothing to that tag, and with ``replace`` removes it (its
  values replaced by none), just as TAGS_REMOVED of its last values removes it. A tag
  with no values is never stored, so "has tag t" always means "has some value of t".
- ``auth_type`` names how a credential was made, so it only changes with one: an
  UPDATED or CREATED carrying ``auth_type`` without ``credential_hash`` is refused
  (it used to be dropped silently).
- Time does not stop for a lock: EXPIRED of a locked identity applies to the status it
  returns to (``locked_from``: a window expires a whitelisted one, credentials a
  provisioned one); it stays locked and unlocking lands on ``expired`` /
  ``reprovision``. (Refusing it left a window to provision between unlock and the
  watch's next tick.)
- Metrics count what happened: the processor counts a CONNECTED, DISCONNECTED or
  (RE)PROVISIONED only when the fold applied it; a refused one (say, CONNECTED of a
  locked identity) is a dead letter and no connection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from millrace.pipeline.errors import FoldError
from millrace.pipeline.identities.resources import same_value

STATUSES = ("whitelisted", "provisioned", "reprovision", "expired", "locked")
#: statuses from which a device may (re)provision
PROVISIONABLE = ("whitelisted", "reprovision")
#: attributes of CREATED/UPDATED events that set state columns rather than free attributes
CONTROL_INT = ("inactivity_timeout_s", "provision_until_us", "credential_expires_us")
CONTROL = (*CONTROL_INT, "status", "auth_type", "credential_hash", "unset", "replace", "what")

State = dict[str, Any]


class IdentityRejectedError(FoldError):
    """The event cannot apply to the identity's current state."""


def empty(identity: str) -> State:
    return {
        "identity": identity,
        "version": 0,
        "present": 0,
        "created_us": 0,
        "updated_us": 0,
        "status": "",
        "locked_from": "",
        "auth_type": "",
        "credential_hash": "",
        "credential_expires_us": 0,
        "provision_until_us": 0,
        "provisioned_us": 0,
        "lastip": "",
        "connected": 0,
        "connected_us": 0,
        "disconnected_us": 0,
        "inactivity_timeout_s": 0,
        "attributes": {},
        "tags": {},
        "set_values": {},
        "set_ts": {},
        "set_by": {},
        "acked_ts": {},
        "timed_out_ts": {},
        "stale_ts": {},
    }


#: the range of each integer control attribute (its column type in millrace.identities)
_INT_RANGE = {
    "inactivity_timeout_s": (0, 2**32 - 1),
    "provision_until_us": (0, 2**63 - 1),
    "credential_expires_us": (0, 2**63 - 1),
}


def _int(attrs: Mapping[str, str], key: str) -> int:
    try:
        value = int(attrs[key])
    except ValueError:
        raise IdentityRejectedError(f"attributes.{key}: not an integer: {attrs[key]!r}") from None
    low, high = _INT_RANGE[key]
    if not low <= value <= high:
        raise IdentityRejectedError(f"attributes.{key}: {value} outside {low}..{high}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _apply_control(s: State, attrs: Mapping[str, str]) -> None:
    for key in CONTROL_INT:
        if key in attrs:
            s[key] = _int(attrs, key)
    if "status" in attrs:
        status = attrs["status"]
        if status not in ("whitelisted", "reprovision", "provisioned"):
            raise IdentityRejectedError(f"attributes.status: cannot set {status!r} directly")
        if status == "provisioned" and not attrs.get("credential_hash", s["credential_hash"]):
            raise IdentityRejectedError("attributes.status: provisioned needs a credential")
        if s["status"] == "locked":
            s["locked_from"] = status
        else:
            s["status"] = status
    if "auth_type" in attrs and "credential_hash" not in attrs:
        raise IdentityRejectedError("attributes.auth_type: only with a credential_hash")
    if "credential_hash" in attrs:
        after = s["locked_from"] if s["status"] == "locked" else s["status"]
        if not attrs["credential_hash"] and after == "provisioned":
            raise IdentityRejectedError(
                "attributes.credential_hash: a provisioned identity needs one"
            )
        s["auth_type"] = attrs.get("auth_type", s["auth_type"])
        s["credential_hash"] = attrs["credential_hash"]
    free = {k: v for k, v in attrs.items() if k not in CONTROL}
    s["attributes"] = {**s["attributes"], **free}
    for key in filter(None, attrs.get("unset", "").split(",")):
        s["attributes"].pop(key, None)


def _values(ev: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for resource, text in (ev.get("state") or {}).items():
        try:
            out[resource] = json.loads(text, parse_constant=_reject_constant)
        except ValueError:
            raise IdentityRejectedError(f"state.{resource}: not JSON: {text[:60]!r}") from None
    return out


def apply(prev: State | None, ev: Mapping[str, Any], version: int) -> State:
    """The state after ``ev`` (an IdentityEvent dict) at log offset ``version - 1``."""
    identity = ev["identity"]
    kind = ev["type"]
    ts = int(ev["ts_us"])
    attrs: Mapping[str, str] = ev.get("attributes") or {}
    s = empty(identity) if prev is None else _copy(prev)
    if kind == "CREATED":
        if s["present"]:
            raise IdentityRejectedError(f"identity {identity!r} already exists")
        s = empty(identity)
        s.update(present=1, created_us=ts, status="whitelisted")
        _apply_control(s, attrs)
        if s["status"] == "provisioned":
            s["provisioned_us"] = ts  # created with a credential: provisioned now
        _tags_set(s, ev.get("tags") or {}, replace=True)
    elif not s["present"]:
        raise IdentityRejectedError(f"identity {identity!r} does not exist")
    elif kind == "UPDATED":
        _apply_control(s, attrs)
    elif kind == "DELETED":
        s = empty(identity)
    elif kind == "CONNECTED":
        if s["status"] == "locked":
            raise IdentityRejectedError(f"identity {identity!r} is locked")
        s.update(connected=1, connected_us=ts)
        if ev.get("ip"):
            s["lastip"] = ev["ip"]
    elif kind == "DISCONNECTED":
        s.update(connected=0, disconnected_us=ts)
    elif kind in ("PROVISIONED", "REPROVISIONED"):
        if s["status"] not in PROVISIONABLE:
            raise IdentityRejectedError(f"identity {identity!r} is {s['status']}; cannot provision")
        if not attrs.get("credential_hash"):
            raise IdentityRejectedError("attributes.credential_hash: missing")
        _apply_control(s, {k: v for k, v in attrs.items() if k != "status"})
        s.update(status="provisioned", provisioned_us=ts)
        if ev.get("ip"):
            s["lastip"] = ev["ip"]
    elif kind == "EXPIRED":
        what = attrs.get("what", "window")
        # a locked identity expires underneath its lock (see the module doc)
        column = "locked_from" if s["status"] == "locked" else "status"
        if what == "window" and s[column] == "whitelisted":
            s[column] = "expired"
        elif what == "credentials" and s[column] == "provisioned":
            s[column] = "reprovision"
        else:
            raise IdentityRejectedError(
                f"identity {identity!r} is {s['status']}; {what} cannot expire"
            )
    elif kind == "LOCKED":
        if s["status"] != "locked":
            s.update(locked_from=s["status"], status="locked")
    elif kind == "UNLOCKED":
        if s["status"] == "locked":
            s.update(status=s["locked_from"] or "whitelisted", locked_from="")
    elif kind == "TAGS_SET":
        _tags_set(s, ev.get("tags") or {}, replace=attrs.get("replace") == "true")
    elif kind == "TAGS_REMOVED":
        for tag, values in (ev.get("tags") or {}).items():
            if not values:
                s["tags"].pop(tag, None)
            elif tag in s["tags"]:
                kept = [v for v in s["tags"][tag] if v not in values]
                if kept:
                    s["tags"][tag] = kept
                else:
                    del s["tags"][tag]
    elif kind == "STATE_SET":
        for resource, text in (ev.get("state") or {}).items():
            _values({"state": {resource: text}})
            s["set_values"][resource] = text
            s["set_ts"][resource] = ts
            s["set_by"][resource] = ev.get("actor") or ""
            s["acked_ts"].pop(resource, None)
            s["timed_out_ts"].pop(resource, None)
    elif kind in ("STATE_ACKNOWLEDGED", "STATE_TIMED_OUT"):
        column = "acked_ts" if kind == "STATE_ACKNOWLEDGED" else "timed_out_ts"
        for resource, value in _values(ev).items():
            desired = s["set_values"].get(resource)
            # only the command still standing: a newer set value is not acknowledged
            # (or timed out) by a report of the older one
            if desired is not None and same_value(json.loads(desired), value):
                s[column][resource] = ts
    elif kind == "RESOURCE_STALE":
        for resource in ev.get("state") or {}:
            s["stale_ts"][resource] = ts
    else:
        raise IdentityRejectedError(f"type {kind!r} does not apply to an identity")
    s["version"] = version
    if kind != "DELETED":
        s["updated_us"] = max(s["updated_us"], ts)
    return s


def _tags_set(s: State, tags: Mapping[str, list[str]], replace: bool) -> None:
    for tag, values in tags.items():
        old = [] if replace else s["tags"].get(tag, [])
        merged = list(dict.fromkeys([*old, *values]))
        if merged:
            s["tags"][tag] = merged
        else:  # a tag holds at least one value
            s["tags"].pop(tag, None)


def _copy(s: State) -> State:
    out = dict(s)
    for k, v in s.items():
        if isinstance(v, dict):
            out[k] = {kk: list(vv) if isinstance(vv, list) else vv for kk, vv in v.items()}
    return out
