"""Shadow tables: a projection rebuilt beside the live one and exchanged with it.

A replay (``projections.replay``) folds the log into ``millrace.<table>__shadow``
(``CREATE TABLE … AS millrace.<table>``: the same columns, codecs, engine, ordering
and settings) and then swaps each shadow with its live table by ``EXCHANGE TABLES``,
which the ``Atomic`` database engine (chDB's and a ClickHouse server's default) does
atomically per pair: a query resolves a table name once, so it reads either the old
table or the new one, never a half-built one. Views over a table (``identities_public``,
``deadletter_public``) name it, so they follow the swap by themselves.

All pairs of one replay go in one ``EXCHANGE TABLES a AND a__shadow, b AND b__shadow``
statement. ClickHouse runs the pairs one after the other, so a crash could in principle
fall between two of them; table comments make that recoverable without a journal:

- a shadow being built carries ``build:<tag>`` (the tag names the replay and the
  progress consumer of its fold);
- just before the exchange the live tables' comments are cleared and every shadow is
  re-marked ``swap:<tag>`` (a comment moves with its table, so after the exchange the
  new live tables carry ``swap:<tag>`` and the old ones, now the shadows, none);
- :func:`recover` (run at start, before the runtime folds anything) finds shadows
  marked ``swap:<tag>``: if any live table already carries ``swap:<tag>``, the exchange
  had begun and the remaining pairs are exchanged (roll forward: the live fold was held
  at the very position the shadows reached, so old and new are at the same position and
  the live progress fits both); if none does, nothing was exchanged and the shadows stay
  for the replay task to resume.

So after any crash the projections are all old or all new, never a mix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from millrace.projections.store.base import ProjectionStore

log = logging.getLogger("millrace.replay")

SUFFIX = "__shadow"
BUILD = "build:"
SWAP = "swap:"


def shadow_name(table: str) -> str:
    return f"{table}{SUFFIX}"


def comments(store: ProjectionStore) -> dict[str, str]:
    """Every table of the millrace database -> its comment."""
    res = store.execute(
        "SELECT name, comment FROM system.tables WHERE database = 'millrace' AND NOT is_temporary"
    )
    return {str(name): str(comment) for name, comment in res.rows}


def _set_comment(store: ProjectionStore, table: str, comment: str) -> None:
    quoted = comment.replace("\\", "\\\\").replace("'", "\\'")
    store.execute(f"ALTER TABLE millrace.{table} MODIFY COMMENT '{quoted}'")


def create(store: ProjectionStore, tables: Iterable[str], tag: str) -> None:
    """Fresh, empty shadows of ``tables`` marked ``build:<tag>`` (old ones dropped)."""
    for table in tables:
        shadow = shadow_name(table)
        store.execute(f"DROP TABLE IF EXISTS millrace.{shadow} SYNC")
        store.execute(f"CREATE TABLE millrace.{shadow} AS millrace.{table}")
        _set_comment(store, shadow, f"{BUILD}{tag}")


def building(store: ProjectionStore, tables: Iterable[str]) -> str | None:
    """The tag every shadow of ``tables`` carries (built or about to swap), if they all
    exist and carry the same one; else None (start afresh)."""
    found = comments(store)
    tags = set()
    for table in tables:
        comment = found.get(shadow_name(table))
        if comment is None:
            return None
        for prefix in (BUILD, SWAP):
            if comment.startswith(prefix):
                tags.add(comment[len(prefix) :])
                break
        else:
            return None
    return tags.pop() if len(tags) == 1 else None


def swapped(store: ProjectionStore, tables: Iterable[str], prefix: str) -> str | None:
    """The tag starting with ``prefix`` whose exchange took place (a live table of
    ``tables`` carries ``swap:<tag>``), if any."""
    found = comments(store)
    for table in tables:
        comment = found.get(table, "")
        if comment.startswith(f"{SWAP}{prefix}"):
            return comment[len(SWAP) :]
    return None


def mark(store: ProjectionStore, tables: Iterable[str], tag: str) -> None:
    """Clear the live tables' comments and mark the shadows ``swap:<tag>`` (done before
    the live fold is held: until the exchange begins, :func:`recover` leaves them)."""
    names = list(tables)
    for table in names:
        _set_comment(store, table, "")
    for table in names:
        _set_comment(store, shadow_name(table), f"{SWAP}{tag}")


def exchange(store: ProjectionStore, tables: Iterable[str]) -> None:
    """Exchange every live table with its shadow, in one statement (the caller holds
    the live fold; the shadows are marked)."""
    pairs = ", ".join(f"millrace.{t} AND millrace.{shadow_name(t)}" for t in tables)
    store.execute(f"EXCHANGE TABLES {pairs}")


def swap(store: ProjectionStore, tables: Iterable[str], tag: str) -> None:
    """:func:`mark`, then :func:`exchange`."""
    names = list(tables)
    mark(store, names, tag)
    exchange(store, names)


def drop(store: ProjectionStore, tables: Iterable[str]) -> None:
    """Drop the shadows of ``tables`` (after a swap they hold the old projections)."""
    for table in tables:
        store.execute(f"DROP TABLE IF EXISTS millrace.{shadow_name(table)} SYNC")


def drop_all(store: ProjectionStore) -> None:
    """Drop every shadow table (an offline replay rebuilds everything anyway)."""
    drop(store, [n[: -len(SUFFIX)] for n in comments(store) if n.endswith(SUFFIX)])


def recover(store: ProjectionStore) -> list[str]:
    """Finish an exchange a crash interrupted (see the module doc); return the tables
    exchanged now."""
    found = comments(store)
    done: list[str] = []
    pending: dict[str, list[str]] = {}
    for name, comment in found.items():
        if name.endswith(SUFFIX) and comment.startswith(SWAP):
            pending.setdefault(comment, []).append(name[: -len(SUFFIX)])
    for comment, tables in pending.items():
        if not _siblings(found, comment):
            continue  # nothing exchanged yet: the replay task resumes its build
        exchange(store, sorted(tables))
        log.warning("replay %s: finished an interrupted swap of %s", comment, sorted(tables))
        done.extend(sorted(tables))
    return done


def _siblings(found: dict[str, str], comment: str) -> list[str]:
    """Live tables (not shadows) whose comment is ``comment``."""
    return [n for n, c in found.items() if c == comment and not n.endswith(SUFFIX)]


def forget(store: ProjectionStore, consumer: str) -> None:
    """Delete a finished shadow fold's progress rows (a lightweight delete; rows left by
    a crash before it are harmless: no one reads that consumer again)."""
    store.execute(
        "DELETE FROM millrace.progress WHERE consumer = {c:String}", params={"c": consumer}
    )


class Shadows(Protocol):
    """Where a replay builds, swaps and drops its shadows: one server or chDB
    (:class:`ServerShadows`, this module) or every node of a ClickHouse cluster
    (``projections.replay_cluster.ClusterShadows``). The methods are this module's
    functions, bound to their store."""

    def create(self, tables: Sequence[str], tag: str) -> None: ...
    def building(self, tables: Sequence[str]) -> str | None: ...
    def swapped(self, tables: Sequence[str], prefix: str) -> str | None: ...
    def mark(self, tables: Sequence[str], tag: str) -> None: ...
    def exchange(self, tables: Sequence[str]) -> None: ...
    def drop(self, tables: Sequence[str]) -> None: ...
    def recover(self) -> list[str]: ...
    def forget(self, consumer: str) -> None: ...


class ServerShadows:
    """:class:`Shadows` on one server (chDB or a single ClickHouse server)."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store

    def create(self, tables: Sequence[str], tag: str) -> None:
        create(self.store, tables, tag)

    def building(self, tables: Sequence[str]) -> str | None:
        return building(self.store, tables)

    def swapped(self, tables: Sequence[str], prefix: str) -> str | None:
        return swapped(self.store, tables, prefix)

    def mark(self, tables: Sequence[str], tag: str) -> None:
        mark(self.store, tables, tag)

    def exchange(self, tables: Sequence[str]) -> None:
        exchange(self.store, tables)

    def drop(self, tables: Sequence[str]) -> None:
        drop(self.store, tables)

    def recover(self) -> list[str]:
        return recover(self.store)

    def forget(self, consumer: str) -> None:
        forget(self.store, consumer)
