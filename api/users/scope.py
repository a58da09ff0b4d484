"""Identity scopes of roles, the one place a caller's scope becomes a filter.

A scoped role names identities by shell-like patterns (``*`` any run of characters,
``?`` one character, everything else literal). :func:`within` turns a caller's scope
into one regular expression that ClickHouse's RE2 reads (every read model takes it as
its ``within`` and filters with ``projections.identity_filter.within_sql``), and
:func:`allows` is the same test in Python, for one identity (an alarm read by id, a
live-stream item). Both read the patterns the same way; None (no scope) lets everything
through.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache

from millrace.api.auth import Principal
from millrace.projections.identity_filter import IdentityFilter


def scope_regex(patterns: tuple[str, ...] | list[str]) -> str:
    """``^(?:p1|p2)$`` for the patterns; no pattern: matches nothing."""
    if not patterns:
        return "^$.^"  # nothing follows the end: matches no identity
    alts = []
    for pattern in patterns:
        alts.append(
            "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        )
    return "^(?:" + "|".join(alts) + ")$"


@lru_cache(maxsize=256)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str]:
    # compiled once per scope: the live stream tests every item of a scoped subscriber
    return re.compile(scope_regex(patterns), flags=re.S)


def in_scope(identity: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return _compiled(tuple(patterns)).fullmatch(identity) is not None


def within(principal: Principal) -> str | None:
    """The RE2 expression an identity must match for ``principal`` to see it; None when
    its role is not scoped."""
    return None if principal.scope is None else scope_regex(principal.scope)


def allows(principal: Principal, identity: object) -> bool:
    """Whether ``principal`` may see ``identity`` (an unscoped one: anything; a scoped
    one: a non-empty identity inside its scope — what ``within`` selects in SQL)."""
    if principal.scope is None:
        return True
    return isinstance(identity, str) and bool(identity) and in_scope(identity, principal.scope)


def scoped(f: IdentityFilter, principal: Principal) -> IdentityFilter:
    """``f`` narrowed to ``principal``'s scope (unchanged when it has none)."""
    if principal.scope is None:
        return f
    return replace(f, within=within(principal))
