"""The identity watch's reads and its retention DDL over a projection store.

:class:`StoreWatchQueries` implements ``pipeline.identities.watch_stage.WatchQueries``:
one query per rule (FINAL, present identities only) and the readings TTL.
:class:`IdentityWatch` is the stage wired to a store, as the composition root builds it.

On a cluster (``cluster`` given), the TTL is a property of each shard's replicated
table: the ALTER names ``millrace.readings_local ON CLUSTER '<c>'`` (the Distributed
``readings`` holds no rows and takes no TTL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from millrace.pipeline.clock import now_us
from millrace.pipeline.connector import EventPublisher
from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.pipeline.identities.watch import (
    ConnectivityRow,
    ExpiryRow,
    PendingRow,
    StaleRow,
    WatchSettings,
)
from millrace.pipeline.identities.watch_stage import IdentityWatchStage, WatchQueries
from millrace.projections.cluster import on_cluster
from millrace.projections.definitions import definition_map
from millrace.projections.store.base import ProjectionStore

READINGS = "millrace.readings"


def quote_literal(text: str) -> str:
    """``text`` as a single-quoted ClickHouse string literal, for DDL where query
    parameters are not allowed: backslash and quote escaped (and NUL, which would end
    the query text early for some clients), everything else literal."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0")
    return f"'{escaped}'"


def _readings_table(cluster: str | None) -> str:
    return READINGS if cluster is None else f"{READINGS}_local {on_cluster(cluster)}"


def retention_sql(rules: Iterable[tuple[str, int]], cluster: str | None = None) -> str:
    """The ALTER that keeps each resource's raw readings ``months`` months: one TTL rule
    per resource (sorted, so the same set gives the same statement)."""
    parts = []
    for name, months in sorted(rules):
        if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 1200:
            raise ValueError(f"retention of {name!r}: months must be 1..1200, got {months!r}")
        parts.append(
            f"toDateTime(ts) + INTERVAL {months} MONTH DELETE WHERE signal = {quote_literal(name)}"
        )
    if not parts:
        raise ValueError("retention_sql needs at least one rule")
    return f"ALTER TABLE {_readings_table(cluster)} MODIFY TTL " + ", ".join(parts)


def remove_ttl_sql(cluster: str | None = None) -> str:
    return f"ALTER TABLE {_readings_table(cluster)} REMOVE TTL"


REMOVE_TTL_SQL = remove_ttl_sql()

# a locked identity expires underneath its lock: judged by the status it returns to
_EXPIRY_SQL = """SELECT identity, if(status = 'locked', locked_from, status) AS base,
       provision_until_us, credential_expires_us
FROM millrace.identities FINAL
WHERE present = 1 AND (
    (base = 'whitelisted' AND provision_until_us > 0 AND provision_until_us < {now:Int64})
 OR (base = 'provisioned' AND credential_expires_us > 0 AND credential_expires_us < {now:Int64}))
ORDER BY identity"""

# pending = a set value with neither an ack nor a timeout (STATE_SET clears both); only
# the latest rows of identities with something pending are read (ORDER BY prefix)
_PENDING_SQL = """WITH pending AS (
    SELECT identity, resource, set_values[resource] AS set_text, set_ts[resource] AS set_us
    FROM millrace.identities FINAL
    ARRAY JOIN mapKeys(set_values) AS resource
    WHERE present = 1 AND NOT mapContains(acked_ts, resource)
      AND NOT mapContains(timed_out_ts, resource)
)
SELECT p.identity, p.resource, p.set_text, p.set_us, l.found, l.ts_us, l.kind, l.value, l.text
FROM pending AS p
LEFT JOIN (
    SELECT identity, signal, toUnixTimestamp64Micro(ts) AS ts_us, kind, value, text,
           toUInt8(1) AS found
    FROM millrace.latest FINAL
    WHERE identity IN (SELECT identity FROM pending)
) AS l ON l.identity = p.identity AND l.signal = p.resource
ORDER BY p.identity, p.resource"""

_STALE_SQL = """SELECT l.identity, l.signal, l.ts_us, l.kind, l.value, l.text
FROM (
    SELECT identity, signal, toUnixTimestamp64Micro(ts) AS ts_us, kind, value, text
    FROM millrace.latest FINAL
    WHERE signal IN {signals:Array(String)}
) AS l
INNER JOIN (
    SELECT identity, stale_ts FROM millrace.identities FINAL WHERE present = 1
) AS i ON i.identity = l.identity
WHERE l.ts_us < {now:Int64} - transform(toString(l.signal), {signals:Array(String)},
                                        {timeouts_us:Array(Int64)}, toInt64(0))
  AND i.stale_ts[toString(l.signal)] < l.ts_us
ORDER BY l.identity, l.signal"""

_CONNECTIVITY_SQL = """SELECT i.identity, i.connected, i.updated_us, s.lastseen, s.lastip,
       greatest(s.lastseen, i.connected_us) AS active_us
FROM (
    SELECT identity, connected, connected_us, disconnected_us, updated_us, status,
           if(inactivity_timeout_s > 0, toInt64(inactivity_timeout_s), {default_s:Int64})
               * 1000000 AS timeout_us
    FROM millrace.identities FINAL
    WHERE present = 1
) AS i
LEFT JOIN (
    SELECT identity, max(lastseen) AS lastseen, argMaxMerge(lastip) AS lastip
    FROM millrace.identity_seen
    GROUP BY identity
) AS s ON s.identity = i.identity
WHERE (i.connected = 1 AND greatest(s.lastseen, i.connected_us) < {now:Int64} - i.timeout_us)
   OR (i.connected = 0 AND i.status != 'locked'
       AND s.lastseen > greatest(i.connected_us, i.disconnected_us)
       AND {now:Int64} - s.lastseen < i.timeout_us)
ORDER BY i.identity"""


class StoreWatchQueries(WatchQueries):
    """The watch's queries on ``store``; ``cluster`` names the ClickHouse cluster the
    projections live on, if any (the retention DDL then runs ON CLUSTER)."""

    def __init__(self, store: ProjectionStore, cluster: str | None = None) -> None:
        self.store = store
        self.cluster = cluster

    def _rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return self.store.execute(sql, params).rows

    def definitions(self) -> dict[str, ResourceDefinition]:
        # unreadable definitions are skipped (logged) rather than stopping every rule
        return definition_map(self.store)

    def expiring(self, now: int) -> list[ExpiryRow]:
        return [
            ExpiryRow(str(i), str(s), int(u), int(e))
            for i, s, u, e in self._rows(_EXPIRY_SQL, {"now": now})
        ]

    def pending(self) -> list[PendingRow]:
        return [
            PendingRow(
                str(identity),
                str(resource),
                str(set_text),
                int(set_us),
                bool(found),
                int(ts_us or 0),
                int(kind or 0),
                value,
                str(text or ""),
            )
            for identity, resource, set_text, set_us, found, ts_us, kind, value, text in self._rows(
                _PENDING_SQL
            )
        ]

    def stale(self, now: int, timeouts_us: Mapping[str, int]) -> list[StaleRow]:
        names = sorted(timeouts_us)
        params = {"now": now, "signals": names, "timeouts_us": [timeouts_us[n] for n in names]}
        return [
            StaleRow(str(i), str(sig), int(ts), int(kind), value, str(text))
            for i, sig, ts, kind, value, text in self._rows(_STALE_SQL, params)
        ]

    def connectivity(self, now: int, default_timeout_s: int) -> list[ConnectivityRow]:
        params = {"now": now, "default_s": default_timeout_s}
        return [
            ConnectivityRow(str(i), bool(int(c)), int(u), int(seen or 0), str(ip or ""), int(a))
            for i, c, u, seen, ip, a in self._rows(_CONNECTIVITY_SQL, params)
        ]

    def has_retention(self) -> bool:
        table = READINGS if self.cluster is None else f"{READINGS}_local"
        rows = self._rows(f"SHOW CREATE TABLE {table}")
        return any("\nTTL " in str(r[0]) for r in rows)

    def set_retention(self, rules: frozenset[tuple[str, int]]) -> None:
        if rules:
            self._rows(retention_sql(rules, self.cluster))
        else:
            self._rows(remove_ttl_sql(self.cluster))


class IdentityWatch(IdentityWatchStage):
    """The identity watch stage reading ``store`` (see ``pipeline.identities.watch``)."""

    def __init__(
        self,
        store: ProjectionStore,
        publisher: EventPublisher,
        settings: WatchSettings | None = None,
        clock: Callable[[], int] = now_us,
        *,
        cluster: str | None = None,
    ) -> None:
        super().__init__(StoreWatchQueries(store, cluster), publisher, settings, clock)
        self.store = store
