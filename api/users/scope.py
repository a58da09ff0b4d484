"""Identity scopes of roles, the one place a caller's scope becomes a filter.

A scoped role names identities by shell-like patterns (``*`` any run of characters,
``?`` one character, everything else literal). :func:`within` turns a caller's scope
into one regular expression that ClickHouse's RE2 reads (every read model takes it as
its ``within`` and filters with ``projections.identity_filter.within_sql``), and
:func:`allows` is the same test in Python, for one identity (an alarm read by id, a
live-stream item). Both read the patterns the same way; None (no scope) lets everything
through. A role scoped by tag criteria is resolved to the names of the identities
that meet them (:class:`TagScopes`), so every route filters it the same way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

from millrace.api.auth import Principal
from millrace.pipeline.errors import MillraceError
from millrace.projections.identity_filter import IdentityFilter, TagCriterion

if TYPE_CHECKING:
    from millrace.api.context import TtlCache
    from millrace.projections.registry import RegistryQueries

log = logging.getLogger("millrace.api.scope")


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


class TagScopes:
    """Which identities a role scoped by tags reaches: those whose tags meet every
    criterion (and whose names match the role's patterns, if it has some), read from
    the projections and kept in ``cache`` (a short-lived ``api.context.TtlCache``:
    every request of such a role asks). A tag change reaches the scope within the
    cache's time; the scope then differs, so the live streams opened under the old one
    end (``AccessControl.still_valid``). At most ``max_identities`` names (a warning
    beyond); a failed read confines to nothing."""

    def __init__(
        self,
        queries: RegistryQueries,
        clock: Callable[[], int],
        cache: TtlCache,
        max_identities: int = 10_000,
    ) -> None:
        self.queries = queries
        self.clock = clock
        self.cache = cache
        self.max_identities = max_identities

    def __call__(self, patterns: tuple[str, ...], criteria: tuple[str, ...]) -> list[str]:
        key = repr((patterns, criteria))
        hit, names = self.cache.get(key)
        if hit:
            return list(names)
        parsed = [TagCriterion.parse(c) for c in criteria]
        if any(c is None for c in parsed):  # refused when the role was saved
            return []
        f = IdentityFilter(
            tags=[c for c in parsed if c is not None],
            within=scope_regex(patterns) if patterns else None,
        )
        try:
            names = self.queries.names(f, self.clock(), self.max_identities + 1)
        except MillraceError:
            log.exception("cannot read the identities of a tag scope: confined to none")
            return []
        if len(names) > self.max_identities:
            log.warning(
                "a tag scope holds over %d identities: the rest are out of it", self.max_identities
            )
            names = names[: self.max_identities]
        self.cache.put(key, names)
        return names

    def invalidate(self) -> None:
        self.cache.invalidate()
