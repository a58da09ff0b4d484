"""Device credentials without the app: password rules, tokens, argon2id hashing, the
verification cache, the failure limiter, the provisioning allow-list and the
Authorization header parsers.

argon2 runs with its cheapest parameters here (one pass over 8 KiB), so the suite stays
fast; the production profile is checked once, by reading the parameters it encodes.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from millrace.api.device_auth import (
    MAX_PASSWORD_BYTES,
    MIN_PASSWORD_BYTES,
    CredentialError,
    CredentialHasher,
    FailureLimiter,
    VerifiedCache,
    check_password,
    ip_allowed,
    new_token,
    parse_allowlist,
    parse_basic,
    parse_bearer,
)

SECRET = "correct horse battery staple"


def cheap() -> CredentialHasher:
    return CredentialHasher(time_cost=1, memory_cost=8, parallelism=1)


class CountingHasher(CredentialHasher):
    """A cheap hasher that counts the argon2 verifications it runs."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.calls = 0
        self._count_lock = threading.Lock()

    def verify(self, encoded: str, secret: str) -> bool:
        with self._count_lock:
            self.calls += 1
        return super().verify(encoded, secret)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# -- passwords and tokens -------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "a" * 20,
        "é" * 10,  # 10 characters, 20 bytes
        "€" * 7,  # 7 characters, 21 bytes
        "x" * 1024,
        "pass word with spaces and : colons",
    ],
)
def test_password_accepted(password: str) -> None:
    check_password(password)


@pytest.mark.parametrize(
    ("password", "needle"),
    [
        ("", "at least 20 bytes"),
        ("a" * 19, "got 19"),
        ("é" * 9, "got 18"),  # 9 characters, 18 bytes
        ("x" * 1025, "at most 1024 bytes"),
        ("\udc80" * 30, "valid Unicode"),
        (None, "string"),
        (b"a" * 30, "string"),
    ],
)
def test_password_refused(password: object, needle: str) -> None:
    with pytest.raises(CredentialError) as info:
        check_password(password)  # type: ignore[arg-type]
    assert info.value.field == "password"
    assert needle in info.value.message
    assert str(info.value).startswith("password: ")
    assert isinstance(info.value, ValueError)


def test_limits_are_the_promised_ones() -> None:
    assert (MIN_PASSWORD_BYTES, MAX_PASSWORD_BYTES) == (20, 1024)


def test_new_token_shape() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert re.fullmatch(r"dt_[A-Za-z0-9_-]{43}", token), token
        assert len(base64.urlsafe_b64decode(token[3:] + "=")) == 32
        check_password(token)  # a token also satisfies the password rules
        assert parse_bearer(f"Bearer {token}") == token


# -- hashing --------------------------------------------------------------------------


def test_hash_verify_round_trip() -> None:
    hasher = cheap()
    encoded = hasher.hash(SECRET)
    assert encoded.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert hasher.verify(encoded, SECRET)
    assert not hasher.verify(encoded, SECRET + "!")
    assert not hasher.verify(encoded, SECRET.upper())
    assert not hasher.verify(encoded, "")


def test_unicode_secret_round_trip() -> None:
    hasher = cheap()
    secret = "Gerätepasswort-äöü-€-中文"
    encoded = hasher.hash(secret)
    assert hasher.verify(encoded, secret)
    assert not hasher.verify(encoded, "Geratepasswort-aou-E-中文")


def test_hash_is_salted_and_never_holds_the_secret() -> None:
    hasher = cheap()
    first, second = hasher.hash(SECRET), hasher.hash(SECRET)
    assert first != second
    assert hasher.verify(first, SECRET) and hasher.verify(second, SECRET)
    for encoded in (first, second):
        assert SECRET not in encoded
        assert b64(SECRET).rstrip("=") not in encoded


def test_default_profile_is_owasp_argon2id() -> None:
    hasher = CredentialHasher()
    encoded = hasher.hash(SECRET)
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert hasher.verify(encoded, SECRET)
    assert not hasher.needs_rehash(encoded)
    assert hasher.needs_rehash(cheap().hash(SECRET))


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=8,t=1,p=1$$",
        "$argon2id$v=19$m=7,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
        "$argon2id$v=19$m=8,t=1,p=1$é$é",
        "$argon2id$v=19$m=8,t=1,p=1$\0$\0",
        None,
        42,
    ],
)
def test_malformed_hash_is_false_not_an_error(encoded: object) -> None:
    hasher = cheap()
    assert hasher.verify(encoded, SECRET) is False  # type: ignore[arg-type]
    assert hasher.needs_rehash(encoded) is True  # type: ignore[arg-type]


def test_truncated_hash_is_false() -> None:
    hasher = cheap()
    encoded = hasher.hash(SECRET)
    for cut in (1, 5, len(encoded) // 2):
        assert hasher.verify(encoded[:-cut], SECRET) is False


@pytest.mark.parametrize("secret", ["\udc80" * 25, None, b"x" * 25, "x" * 1025])
def test_unusable_secret_is_false(secret: object) -> None:
    hasher = cheap()
    encoded = hasher.hash(SECRET)
    assert hasher.verify(encoded, secret) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("secret", "needle"), [("\udc80" * 25, "valid Unicode"), ("x" * 1025, "at most 1024")]
)
def test_hash_refuses_what_verify_would_refuse(secret: str, needle: str) -> None:
    with pytest.raises(CredentialError) as info:
        cheap().hash(secret, field="token")
    assert info.value.field == "token"
    assert needle in info.value.message


def test_longest_secret_round_trips() -> None:
    hasher = cheap()
    secret = "ü" * (MAX_PASSWORD_BYTES // 2)  # exactly 1024 bytes
    assert hasher.verify(hasher.hash(secret), secret)


def test_verify_unknown_costs_a_check_and_fails() -> None:
    hasher = CountingHasher()
    assert hasher.verify_unknown(SECRET) is False
    assert hasher.verify_unknown("") is False
    assert hasher.calls == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"memory_cost": 7},
        {"memory_cost": 8, "parallelism": 2},
        {"time_cost": 0},
        {"parallelism": 0},
        {"max_concurrent": 0},
    ],
)
def test_hasher_refuses_impossible_parameters(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        CredentialHasher(**kwargs)


# -- verification cache ---------------------------------------------------------------


def test_cache_hit_skips_argon2_until_the_ttl() -> None:
    hasher, clock = CountingHasher(), FakeClock()
    cache = VerifiedCache(hasher, ttl_s=300, clock=clock)
    encoded = hasher.hash(SECRET)
    assert cache.verify("dev-1", encoded, SECRET)
    assert hasher.calls == 1
    clock.now += 299.9
    assert cache.verify("dev-1", encoded, SECRET)
    assert hasher.calls == 1
    clock.now += 0.1  # 300 s after the check: expired, a hit did not extend it
    assert cache.verify("dev-1", encoded, SECRET)
    assert hasher.calls == 2
    clock.now += 10
    assert cache.verify("dev-1", encoded, SECRET)
    assert hasher.calls == 2


def test_cache_misses_after_the_hash_changes() -> None:
    hasher = CountingHasher()
    cache = VerifiedCache(hasher, clock=FakeClock())
    old, new = hasher.hash(SECRET), hasher.hash("a different secret of 20+ bytes")
    assert cache.verify("dev-1", old, SECRET)
    assert not cache.verify("dev-1", new, SECRET)
    assert hasher.calls == 2
    assert cache.verify("dev-1", new, "a different secret of 20+ bytes")
    assert hasher.calls == 3
    rehashed = hasher.hash(SECRET)  # same secret, new salt: still a new credential
    assert cache.verify("dev-1", rehashed, SECRET)
    assert hasher.calls == 4


def test_cache_is_per_identity_and_per_secret() -> None:
    hasher = CountingHasher()
    cache = VerifiedCache(hasher, clock=FakeClock())
    encoded = hasher.hash(SECRET)
    assert cache.verify("dev-1", encoded, SECRET)
    assert cache.verify("dev-2", encoded, SECRET)
    assert hasher.calls == 2
    assert not cache.verify("dev-1", encoded, SECRET + "x")
    assert hasher.calls == 3


def test_failures_are_not_cached() -> None:
    hasher = CountingHasher()
    cache = VerifiedCache(hasher, clock=FakeClock())
    encoded = hasher.hash(SECRET)
    for expected_calls in (1, 2, 3):
        assert not cache.verify("dev-1", encoded, "wrong password, twenty+")
        assert hasher.calls == expected_calls
    assert len(cache) == 0
    assert not cache.verify("dev-1", "garbage", SECRET)
    assert len(cache) == 0


def test_cache_evicts_the_least_recently_used() -> None:
    hasher = CountingHasher()
    cache = VerifiedCache(hasher, max_entries=2, clock=FakeClock())
    encoded = hasher.hash(SECRET)
    assert cache.verify("a", encoded, SECRET)
    assert cache.verify("b", encoded, SECRET)
    assert cache.verify("a", encoded, SECRET)  # hit: a is now the most recent
    assert hasher.calls == 2
    assert cache.verify("c", encoded, SECRET)  # evicts b
    assert hasher.calls == 3 and len(cache) == 2
    assert cache.verify("a", encoded, SECRET)
    assert hasher.calls == 3
    assert cache.verify("b", encoded, SECRET)
    assert hasher.calls == 4


def test_cache_clear() -> None:
    hasher = CountingHasher()
    cache = VerifiedCache(hasher, clock=FakeClock())
    encoded = hasher.hash(SECRET)
    assert cache.verify("dev-1", encoded, SECRET)
    cache.clear()
    assert len(cache) == 0
    assert cache.verify("dev-1", encoded, SECRET)
    assert hasher.calls == 2


def test_cache_keys_cannot_be_shifted_across_parts() -> None:
    """'a' + hash + secret and 'a\\0<hash>' + ... must not share an entry; identities
    with a NUL are verified every time instead of cached."""
    hasher = CountingHasher()
    cache = VerifiedCache(hasher, clock=FakeClock())
    encoded = hasher.hash(SECRET)
    assert cache.verify("a\0b", encoded, SECRET)
    assert cache.verify("a\0b", encoded, SECRET)
    assert hasher.calls == 2 and len(cache) == 0


@pytest.mark.parametrize(
    ("identity", "encoded", "secret"),
    [(None, "x", SECRET), ("dev", None, SECRET), ("dev", "x", None), ("dev", "x", "\udc80")],
)
def test_cache_never_raises(identity: object, encoded: object, secret: object) -> None:
    cache = VerifiedCache(cheap(), clock=FakeClock())
    assert cache.verify(identity, encoded, secret) is False  # type: ignore[arg-type]


def test_cache_under_threads() -> None:
    hasher = CountingHasher()
    cache = VerifiedCache(hasher)
    encoded = hasher.hash(SECRET)
    identities = [f"dev-{i}" for i in range(4)]

    def work(n: int) -> bool:
        return cache.verify(identities[n % 4], encoded, SECRET)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(400)))
    assert len(cache) == 4
    # only lookups that started before an identity's first entry landed can miss:
    # at most one per worker thread and identity
    assert 4 <= hasher.calls <= 4 * 8


@pytest.mark.parametrize("kwargs", [{"ttl_s": 0}, {"max_entries": 0}])
def test_cache_refuses_impossible_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        VerifiedCache(cheap(), **kwargs)  # type: ignore[arg-type]


# -- failure limiter ------------------------------------------------------------------


def test_limiter_blocks_the_pair_after_max_failures() -> None:
    clock = FakeClock(0.0)
    limiter = FailureLimiter(max_failures=3, max_address_failures=5, window_s=10, clock=clock)
    for t in (0.0, 1.0):
        clock.now = t
        limiter.record_failure("dev-1", "10.0.0.1")
        assert not limiter.blocked("dev-1", "10.0.0.1")
    clock.now = 2.0
    limiter.record_failure("dev-1", "10.0.0.1")
    assert limiter.blocked("dev-1", "10.0.0.1")
    # the device at its own address is not locked out by someone else's guesses
    assert not limiter.blocked("dev-1", "10.9.9.9")
    assert not limiter.blocked("dev-1", None)
    # nor are other identities from the guessing address, below the address limit
    assert not limiter.blocked("dev-2", "10.0.0.1")
    assert not limiter.blocked("dev-2", "10.9.9.9")


def test_limiter_blocks_an_address_beyond_its_larger_limit() -> None:
    clock = FakeClock(0.0)
    limiter = FailureLimiter(max_failures=3, max_address_failures=5, window_s=10, clock=clock)
    for i in range(4):  # four identities, one failure each: no pair is full
        limiter.record_failure(f"dev-{i}", "10.0.0.1")
    assert not limiter.blocked("dev-9", "10.0.0.1")
    limiter.record_failure("dev-4", "10.0.0.1")
    assert limiter.blocked("dev-9", "10.0.0.1")  # anyone, from that address
    assert limiter.blocked("dev-0", "10.0.0.1")
    assert not limiter.blocked("dev-9", "10.0.0.2")
    assert not limiter.blocked("dev-0", None)
    clock.now = 10.0  # all five left the window
    assert not limiter.blocked("dev-9", "10.0.0.1")


def test_a_third_party_cannot_lock_a_device_out() -> None:
    """The issue's case: ten wrong passwords from anywhere locked the real device out
    for a minute. Now a flood from many addresses leaves its own address untouched."""
    clock = FakeClock(0.0)
    limiter = FailureLimiter(clock=clock)
    for i in range(2500):  # ten each from 250 addresses
        attacker = f"198.51.100.{i % 250}"
        if not limiter.blocked("press-4", attacker):
            limiter.record_failure("press-4", attacker)
    assert limiter.blocked("press-4", "198.51.100.7")
    assert not limiter.blocked("press-4", "10.0.0.5")


@given(
    failures=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["1", "2", "3", None])),
        max_size=60,
    ),
    probe=st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["1", "2", "3", None])),
)
def test_limiter_matches_a_model(
    failures: list[tuple[str, str | None]], probe: tuple[str, str | None]
) -> None:
    """Within one window: blocked exactly when the pair has ``max_failures`` failures
    or the address ``max_address_failures``."""
    limiter = FailureLimiter(max_failures=3, max_address_failures=7, clock=FakeClock())
    for identity, ip in failures:
        limiter.record_failure(identity, ip)
    identity, ip = probe
    pair = sum(1 for f in failures if f == (identity, ip))
    address = sum(1 for f in failures if ip is not None and f[1] == ip)
    assert limiter.blocked(identity, ip) == (pair >= 3 or address >= 7)


def test_limiter_window_slides() -> None:
    clock = FakeClock(0.0)
    limiter = FailureLimiter(max_failures=3, window_s=10, clock=clock)
    for t in (0.0, 1.0, 2.0):
        clock.now = t
        limiter.record_failure("dev-1", None)
    clock.now = 9.999
    assert limiter.blocked("dev-1", None)
    clock.now = 10.0  # the failure at 0 has left the window: 2 remain
    assert not limiter.blocked("dev-1", None)
    limiter.record_failure("dev-1", None)  # failures at 1, 2, 10
    assert limiter.blocked("dev-1", None)
    clock.now = 11.0
    assert not limiter.blocked("dev-1", None)
    clock.now = 100.0  # all gone; the key is dropped when looked at
    assert not limiter.blocked("dev-1", None)
    assert len(limiter) == 0


def test_limiter_spread_out_failures_never_block() -> None:
    clock = FakeClock(0.0)
    limiter = FailureLimiter(max_failures=3, window_s=10, clock=clock)
    for i in range(20):
        clock.now = i * 5.0  # at most 2 failures in any 10 s
        limiter.record_failure("dev-1", "10.0.0.1")
        assert not limiter.blocked("dev-1", "10.0.0.1")


def test_limiter_defaults_are_ten_per_pair_and_a_hundred_per_address_a_minute() -> None:
    clock = FakeClock(0.0)
    limiter = FailureLimiter(clock=clock)
    for _ in range(9):
        limiter.record_failure("dev-1", None)
    assert not limiter.blocked("dev-1", None)
    limiter.record_failure("dev-1", None)
    assert limiter.blocked("dev-1", None)
    clock.now = 59.9
    assert limiter.blocked("dev-1", None)
    clock.now = 60.0
    assert not limiter.blocked("dev-1", None)
    for i in range(99):
        limiter.record_failure(f"dev-{i}", "10.0.0.1")
    assert not limiter.blocked("dev-new", "10.0.0.1")
    limiter.record_failure("dev-new", "10.0.0.1")
    assert limiter.blocked("dev-other", "10.0.0.1")


def test_success_clears_the_pair_not_the_address_nor_other_pairs() -> None:
    limiter = FailureLimiter(max_failures=2, max_address_failures=3, clock=FakeClock())
    limiter.record_failure("dev-1", "10.0.0.1")
    limiter.record_failure("dev-1", "10.0.0.1")
    limiter.record_failure("dev-1", "10.0.0.2")
    limiter.record_failure("dev-1", "10.0.0.2")
    limiter.record_failure("dev-2", "10.0.0.1")
    assert limiter.blocked("dev-1", "10.0.0.1") and limiter.blocked("dev-1", "10.0.0.2")
    limiter.record_success("dev-1", "10.0.0.2")
    assert not limiter.blocked("dev-1", "10.0.0.2")
    assert limiter.blocked("dev-1", "10.0.0.1")  # a success elsewhere resets nothing here
    assert limiter.blocked("dev-3", "10.0.0.1")  # the address used up its three
    limiter.record_success("never-failed", None)  # no error


def test_limiter_memory_is_bounded() -> None:
    limiter = FailureLimiter(max_failures=2, window_s=60, max_keys=5, clock=FakeClock())
    for i in range(10):
        limiter.record_failure(f"dev-{i}", None)
        limiter.record_failure(f"dev-{i}", None)
    assert len(limiter) == 5
    assert not limiter.blocked("dev-0", None)  # evicted
    assert limiter.blocked("dev-9", None)
    for _ in range(1000):  # one key keeps at most max_failures stamps
        limiter.record_failure("dev-9", "10.0.0.1")
    assert len(limiter) == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_failures": 0},
        {"max_address_failures": 0},
        {"window_s": 0},
        {"max_keys": 0},
        {"window_s": -1},
    ],
)
def test_limiter_refuses_impossible_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FailureLimiter(**kwargs)  # type: ignore[arg-type]


# -- provisioning allow-list ----------------------------------------------------------


def test_parse_allowlist() -> None:
    networks = parse_allowlist(
        ["10.0.0.0/8", "192.168.1.5", " 172.16.0.0/12 ", "2001:db8::/32", "::1", "::ffff:0:0/96"]
    )
    assert networks == [
        ipaddress.IPv4Network("10.0.0.0/8"),
        ipaddress.IPv4Network("192.168.1.5/32"),
        ipaddress.IPv4Network("172.16.0.0/12"),
        ipaddress.IPv6Network("2001:db8::/32"),
        ipaddress.IPv6Network("::1/128"),
        ipaddress.IPv6Network("::ffff:0.0.0.0/96"),
    ]
    assert parse_allowlist([]) == []


@pytest.mark.parametrize(
    ("entries", "field", "needle"),
    [
        (["garbage"], "ip_allowlist[0]", "not an IP address or CIDR"),
        (["10.0.0.0/8", ""], "ip_allowlist[1]", "not an IP address"),
        (["10.0.0.0/8", "::1", "10.0.0.0/33"], "ip_allowlist[2]", "not an IP address"),
        (["300.1.1.1"], "ip_allowlist[0]", "not an IP address"),
        (["10.0.0.1-10.0.0.9"], "ip_allowlist[0]", "not an IP address"),
        (["10.0.0.5/24"], "ip_allowlist[0]", "did you mean 10.0.0.0/24"),
        (["2001:db8::1/32"], "ip_allowlist[0]", "did you mean 2001:db8::/32"),
        (["10.0.0.0/8", 10], "ip_allowlist[1]", "must be a string"),
        (["10.0.0.0/8", None], "ip_allowlist[1]", "must be a string"),
        ("10.0.0.0/8", "ip_allowlist", "must be a list"),
        (None, "ip_allowlist", "must be a list"),
    ],
)
def test_parse_allowlist_names_the_bad_entry(entries: object, field: str, needle: str) -> None:
    with pytest.raises(CredentialError) as info:
        parse_allowlist(entries)  # type: ignore[arg-type]
    assert info.value.field == field
    assert needle in info.value.message


LIST: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("192.168.1.5/32"),
    ipaddress.IPv6Network("2001:db8::/32"),
]


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("10.1.2.3", True),
        ("10.255.255.255", True),
        ("11.0.0.1", False),
        ("192.168.1.5", True),
        ("192.168.1.6", False),
        ("::ffff:10.0.0.1", True),  # IPv4 client seen by a dual-stack socket
        ("::ffff:192.168.1.5", True),
        ("::ffff:11.0.0.1", False),
        ("2001:db8::1", True),
        ("2001:db8:ffff::1", True),
        ("2001:db9::1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        (" 10.0.0.1 ", True),
        (None, False),
        ("", False),
        ("garbage", False),
        ("10.0.0.1:8080", False),
        ("10.0.0.0/8", False),
        ("testclient", False),  # what Starlette's test client reports
    ],
)
def test_ip_allowed(ip: str | None, allowed: bool) -> None:
    assert ip_allowed(ip, LIST) is allowed


@pytest.mark.parametrize("ip", ["10.0.0.1", "::1", "garbage", None, ""])
def test_empty_allowlist_lets_everyone_in(ip: str | None) -> None:
    nobody: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    assert ip_allowed(ip, nobody) is True


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [("10.0.0.1", True), ("::ffff:10.0.0.1", True), ("2001:db8::1", False), ("::1", False)],
)
def test_mapped_network_matches_ipv4_clients(ip: str, allowed: bool) -> None:
    assert ip_allowed(ip, [ipaddress.IPv6Network("::ffff:0:0/96")]) is allowed


def test_ipv6_link_local_with_zone() -> None:
    assert ip_allowed("fe80::1%eth0", [ipaddress.IPv6Network("fe80::/10")])


# -- Authorization headers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic " + b64("dev-1:secret"), ("dev-1", "secret")),
        ("basic " + b64("dev-1:secret"), ("dev-1", "secret")),
        ("BASIC " + b64("dev-1:secret"), ("dev-1", "secret")),
        ("  Basic   " + b64("dev-1:secret") + "  ", ("dev-1", "secret")),
        ("Basic " + b64("dev-1:a:b:c"), ("dev-1", "a:b:c")),
        ("Basic " + b64("dev-1:"), ("dev-1", "")),
        ("Basic " + b64("aa:bb:cc:dd:ee:ff"), ("aa", "bb:cc:dd:ee:ff")),
        ("Basic " + b64("gerät:pässwörd €"), ("gerät", "pässwörd €")),
        ("Basic ZGV2OnB3", ("dev", "pw")),
    ],
)
def test_parse_basic(header: str, expected: tuple[str, str]) -> None:
    assert parse_basic(header) == expected


LATIN1 = base64.b64encode("gerät:pw".encode("latin-1")).decode()


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Basic",
        "Basic ",
        "Basic !!!!",
        "Basic " + b64("no-colon"),
        "Basic " + b64(":password-only"),
        "Basic " + LATIN1,  # not UTF-8
        "Basic " + b64("dev:pw").rstrip("=") + "x",
        "Basic ZGV2OnA",  # missing padding
        "Basic " + b64("dev:pw") + " extra",
        "Basic ZGV2Ölw=",
        "Bearer " + b64("dev:pw"),
        "Digest username=dev",
        b64("dev:pw"),
        None,
        42,
    ],
)
def test_parse_basic_refuses(header: object) -> None:
    assert parse_basic(header) is None  # type: ignore[arg-type]


@given(st.text())
@example("Basic \x00")
@example("Basic ====")
@example("Basic ////")
def test_parse_basic_never_raises(header: str) -> None:
    assert parse_basic(header) is None or isinstance(parse_basic(header), tuple)
    parse_basic("Basic " + header)


@given(st.text(min_size=1).filter(lambda s: ":" not in s), st.text())
@example("dev-1", "")
@example("\x00", ":")
def test_parse_basic_round_trip(identity: str, password: str) -> None:
    header = "Basic " + base64.b64encode(f"{identity}:{password}".encode()).decode()
    assert parse_basic(header) == (identity, password)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer dt_abc-DEF_123", "dt_abc-DEF_123"),
        ("bearer mr_0123456789ab_secret", "mr_0123456789ab_secret"),
        ("BEARER a.b~c+d/e==", "a.b~c+d/e=="),
        ("  Bearer   tok  ", "tok"),
        ("Bearer eyJhbGciOi.eyJzdWIi.c2ln", "eyJhbGciOi.eyJzdWIi.c2ln"),
    ],
)
def test_parse_bearer(header: str, expected: str) -> None:
    assert parse_bearer(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer tok€n",
        "Bearer =abc",
        "Bearer a=b",
        "Bearer tok,en",
        "Basic " + b64("dev:pw") + "x",
        "Token abc",
        "dt_abc",
        None,
        42,
    ],
)
def test_parse_bearer_refuses(header: object) -> None:
    assert parse_bearer(header) is None  # type: ignore[arg-type]


@given(st.text())
def test_parse_bearer_never_raises(header: str) -> None:
    result = parse_bearer(header)
    assert result is None or (result and result in header)
    parse_bearer("Bearer " + header)


@given(st.from_regex(r"[A-Za-z0-9\-._~+/]+=*", fullmatch=True))
def test_parse_bearer_round_trip(token: str) -> None:
    assert parse_bearer(f"Bearer {token}") == token
