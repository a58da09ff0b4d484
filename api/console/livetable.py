"""The live-data page's state without the page (pure): its filters and the rows it
shows, keyed by identity and signal, with what changed since the grid last heard."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

MAX_ROWS = 2000  # the grid holds at most this many signals; the filters narrow further


def quality_text(code: Any) -> str:
    """0 is good (the projections' convention); anything else is named with its code."""
    try:
        value = int(code)
    except (TypeError, ValueError):
        return "unknown"
    return "good" if value == 0 else f"bad ({value})"


def is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


@dataclass
class Filters:
    """The page's filters: identity and signal are comma-separated exact names or glob
    patterns; ``identities`` is the tag filter's resolved set (None: no tag filter)."""

    identity: str = ""
    signal: str = ""
    tag: str = ""
    identities: set[str] | None = None

    def names(self, text: str) -> list[str]:
        return [n.strip() for n in text.split(",") if n.strip()]

    def server_side(self) -> dict[str, list[str]]:
        """The subscription's filters: exact names only (patterns are matched here)."""
        out: dict[str, list[str]] = {}
        ids = self.names(self.identity)
        if ids and not any(is_pattern(i) for i in ids):
            out["identity"] = ids
        sigs = self.names(self.signal)
        if sigs and not any(is_pattern(s) for s in sigs):
            out["signal"] = sigs
        return out

    def match(self, identity: str, signal: str) -> bool:
        ids, sigs = self.names(self.identity), self.names(self.signal)
        if ids and not any(fnmatch.fnmatchcase(identity, p) for p in ids):
            return False
        if sigs and not any(fnmatch.fnmatchcase(signal, p) for p in sigs):
            return False
        return self.identities is None or identity in self.identities


def row_of(item: dict[str, Any]) -> dict[str, Any]:
    """A grid row of a latest-value item: values as text (numbers, words and flags share
    a column), times without the ISO ``T`` and to the millisecond."""
    value = item.get("value")
    shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
    stamp = str(item.get("timestamp") or "")
    return {
        "key": f"{item['identity']}\x1f{item['signal']}",
        "identity": item["identity"],
        "signal": item["signal"],
        "value": shown,
        "quality": quality_text(item.get("quality")),
        "timestamp": stamp.replace("T", " ")[:23],
    }


@dataclass
class LiveTable:
    """The rows the grid shows and those changed since the last flush."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    added: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: int = 0

    def take(self, item: dict[str, Any]) -> None:
        row = row_of(item)
        key = row["key"]
        if key in self.added:  # not sent yet: send the newest as the addition
            self.rows[key] = self.added[key] = row
        elif key in self.rows:
            self.rows[key] = self.changed[key] = row
        elif len(self.rows) < MAX_ROWS:
            self.rows[key] = self.added[key] = row
        self.received += 1

    def drain(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        added, changed = list(self.added.values()), list(self.changed.values())
        self.added, self.changed = {}, {}
        return added, changed
