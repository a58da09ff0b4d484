"""Identity scopes of roles: shell-like name patterns (``*`` any run of characters,
``?`` one character, everything else literal), turned into one regular expression
that both Python (checks of one identity) and ClickHouse's RE2 (list filters) read the
same way."""

from __future__ import annotations

import re
from dataclasses import replace

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


def in_scope(identity: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return re.fullmatch(scope_regex(patterns), identity, flags=re.S) is not None


def scoped(f: IdentityFilter, principal: Principal) -> IdentityFilter:
    """``f`` narrowed to ``principal``'s scope (unchanged when it has none)."""
    if principal.scope is None:
        return f
    return replace(f, within=scope_regex(principal.scope))
