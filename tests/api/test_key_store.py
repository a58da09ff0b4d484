"""The key store shared by several processes through one file: a key created or revoked
through one store is accepted or refused by the others within ``reload_s``, and
concurrent changes lose nothing."""

from __future__ import annotations

import threading
from pathlib import Path

from millrace.api.auth import ENV_KEY_ID, KeyStore, Principal


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_changes_reach_other_stores_after_the_reload_interval(tmp_path: Path) -> None:
    path = tmp_path / "api_keys.json"
    clock_a, clock_b = Clock(), Clock()
    a = KeyStore(path, reload_s=1.0, clock=clock_a)
    b = KeyStore(path, reload_s=1.0, clock=clock_b)
    key, plaintext = a.create("sensor dashboard", "viewer")
    assert a.authenticate(plaintext) is not None
    assert b.authenticate(plaintext) is None  # b read the file less than reload_s ago
    clock_b.now = 1.0
    principal = b.authenticate(plaintext)
    assert principal == Principal(key.id, "sensor dashboard", "viewer")

    assert b.delete(key.id)
    assert b.authenticate(plaintext) is None and not b.still_valid(principal)
    assert a.still_valid(principal)  # until a looks again
    clock_a.now = 1.0
    assert not a.still_valid(principal)
    assert a.authenticate(plaintext) is None
    assert [k.id for k in a.list()] == []


def test_a_change_starts_from_the_file_not_from_memory(tmp_path: Path) -> None:
    """b has not looked at the file since a created a key: b's own change keeps it."""
    path = tmp_path / "api_keys.json"
    a, b = KeyStore(path, clock=Clock()), KeyStore(path, clock=Clock())
    ka, _ = a.create("a", "viewer")
    kb, _ = b.create("b", "admin")
    assert {k.id for k in KeyStore(path).list()} == {ka.id, kb.id}
    assert not b.delete("nope")
    assert b.delete(ka.id)
    assert {k.id for k in KeyStore(path).list()} == {kb.id}


def test_concurrent_changes_through_two_stores_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "api_keys.json"
    stores = [KeyStore(path), KeyStore(path)]
    created: list[str] = []
    lock = threading.Lock()

    def work(store: KeyStore) -> None:
        for i in range(25):
            key, _ = store.create(f"k{i}", "viewer")
            with lock:
                created.append(key.id)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(created) == 100
    assert {k.id for k in KeyStore(path).list()} == set(created)


def test_an_unreadable_file_keeps_the_keys_last_read(tmp_path: Path) -> None:
    path = tmp_path / "api_keys.json"
    clock = Clock()
    store = KeyStore(path, clock=clock)
    _, plaintext = store.create("x", "operator")
    path.write_text("{ not json")
    clock.now = 5.0
    assert store.authenticate(plaintext) is not None
    assert len(store) == 1


def test_the_environment_key_stays_valid() -> None:
    store = KeyStore(None, env_key="from-the-environment")
    principal = store.authenticate("from-the-environment")
    assert principal is not None and principal.key_id == ENV_KEY_ID
    assert store.still_valid(principal)
    assert not KeyStore(None).still_valid(principal)
