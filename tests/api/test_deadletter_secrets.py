"""Dead letters never hand out a secret: a rejected identity event's payload holds its
credential hash, and viewers may list dead letters (issue 12: "secrets are not
reachable")."""

from __future__ import annotations

import random

import pyarrow as pa

from millrace.projections.store.chdb import ChdbStore
from tests.api.conftest import Api

HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


def _dead_letter(store: ChdbStore, topic: str, ts_us: int, offset: int, payload: str) -> None:
    row = pa.table(
        {
            "ts": pa.array([ts_us], pa.int64()),
            "source_topic": [topic],
            "source_partition": pa.array([0], pa.int32()),
            "source_offset": pa.array([offset], pa.int64()),
            "dedup_key": [""],
            "stage": ["apply"],
            "error_type": ["IdentityRefused"],
            "reason": ["refused"],
            "key": ["dev-1"],
            "payload": [payload],
            "dl_partition": pa.array([0], pa.int32()),
            "dl_offset": pa.array([offset], pa.int64()),
        }
    )
    store.insert_arrow(
        "INSERT INTO millrace.deadletter SELECT fromUnixTimestamp64Micro(ts, 'UTC'), "
        "source_topic, source_partition, source_offset, dedup_key, stage, error_type, "
        "reason, key, payload, dl_partition, dl_offset FROM {input}",
        row,
    )


async def test_dead_letters_of_identity_events_hide_the_credential_hash(
    api: Api, writer_store: ChdbStore
) -> None:
    # a minute of its own in 2001, so other tests' dead letters do not show up
    start_us = 978_307_200_000_000 + random.randrange(500_000) * 60_000_000
    offset = random.randrange(1, 2**40)
    payload = repr({"identity": "dev-1", "credential_hash": HASH, "status": "provisioned"})
    _dead_letter(writer_store, "identity", start_us + 1, offset, payload)
    _dead_letter(writer_store, "telemetry", start_us + 2, offset, "not a batch")
    for role in ("viewer", "operator", "admin"):
        res = await api.get(
            "/deadletters",
            key=role,
            start_time=start_us,
            end_time=start_us + 60_000_000,
            epoch="us",
        )
        assert res.status_code == 200, res.text
        assert HASH not in res.text and "argon2" not in res.text
        by_topic = {d["source_topic"]: d for d in res.json()["data"]}
        assert set(by_topic) == {"identity", "telemetry"}
        assert by_topic["identity"]["payload"] == ""
        assert by_topic["identity"]["reason"] == "refused"
        # other topics keep their payload: it is what an operator debugs with
        assert by_topic["telemetry"]["payload"] == "not a batch"
