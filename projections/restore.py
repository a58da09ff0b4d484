"""What a restore asks the projections (``pipeline.restore.admit``)."""

from __future__ import annotations

from collections.abc import Sequence

from millrace.pipeline.restore.admit import HeldReadings
from millrace.projections.store.base import ProjectionStore


def held_readings(store: ProjectionStore) -> HeldReadings:
    """The (identity, signal, ts µs) readings held for ``identities`` in
    ``[first_us, last_us]``: one query per chunk of a restore."""

    def held(identities: Sequence[str], first_us: int, last_us: int) -> set[tuple[str, str, int]]:
        res = store.execute(
            "SELECT identity, signal, toUnixTimestamp64Micro(ts) FROM millrace.readings "
            "WHERE identity IN {ids:Array(String)} "
            "AND ts BETWEEN fromUnixTimestamp64Micro({lo:Int64}, 'UTC') "
            "AND fromUnixTimestamp64Micro({hi:Int64}, 'UTC')",
            params={"ids": list(identities), "lo": first_us, "hi": last_us},
        )
        return {(str(i), str(s), int(t)) for i, s, t in res.rows}

    return held
