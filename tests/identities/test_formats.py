"""Identity formats (pipeline/identities/formats.py): validation tables, generation,
descriptions and the configuration model."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from millrace.pipeline.identities.formats import IdentityFormat, check, describe, generate

# the HTTP ingest path pattern (api/routers/ingest.py), written out independently
INGEST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")

F = IdentityFormat

# (format, identity, expected reason or None)
TABLE: list[tuple[IdentityFormat, str, str | None]] = [
    # --- mac:48
    (F(type="mac:48"), "aa:bb:cc:dd:ee:ff", None),
    (F(type="mac:48"), "AA:BB:CC:DD:EE:FF", None),
    (F(type="mac:48"), "Aa:bB:01:23:45:67", None),
    (F(type="mac:48"), "aa-bb-cc-dd-ee-ff", "expected a mac:48 address like aa:bb:cc:dd:ee:ff"),
    (F(type="mac:48"), "aa:bb:cc:dd:ee", "expected a mac:48 address like aa:bb:cc:dd:ee:ff"),
    (F(type="mac:48"), "aa:bb:cc:dd:ee:ff:00", "expected a mac:48 address like aa:bb:cc:dd:ee:ff"),
    (F(type="mac:48"), "aa:bb:cc:dd:ee:fg", "expected a mac:48 address like aa:bb:cc:dd:ee:ff"),
    (F(type="mac:48"), "aabbccddeeff", "expected a mac:48 address like aa:bb:cc:dd:ee:ff"),
    (F(type="mac:48"), "a:bb:cc:dd:ee:fff", "expected a mac:48 address like aa:bb:cc:dd:ee:ff"),
    (F(type="mac:48"), "aa:bb:cc:dd:ee:ff\n", "expected a mac:48 address like aa:bb:cc:dd:ee:ff"),
    (F(type="mac:48"), "", "expected an identity"),
    (F(type="mac:48", casing="lower"), "00:1a:2b:3c:4d:5e", None),
    (F(type="mac:48", casing="lower"), "00:1A:2b:3c:4d:5e", "expected lower case"),
    (F(type="mac:48", casing="upper"), "00:1A:2B:3C:4D:5E", None),
    (F(type="mac:48", casing="upper"), "00:11:22:33:44:55", None),
    (F(type="mac:48", casing="upper"), "00:1A:2B:3C:4D:5e", "expected upper case"),
    (
        F(type="mac:48", casing="upper"),
        "00-1A-2B-3C-4D-5E",
        "expected a mac:48 address like AA:BB:CC:DD:EE:FF",
    ),
    (F(type="mac:48", prefix="plant1-"), "plant1-aa:bb:cc:dd:ee:ff", None),
    (F(type="mac:48", prefix="plant1-"), "aa:bb:cc:dd:ee:ff", "expected prefix 'plant1-'"),
    (F(type="mac:48", prefix="plant1-"), "Plant1-aa:bb:cc:dd:ee:ff", "expected prefix 'plant1-'"),
    (F(type="mac:48", prefix="plant1-"), "plant1-", "expected characters after the prefix"),
    (
        F(type="mac:48", prefix="plant1-", casing="lower"),
        "plant1-aa:bb:cc:dd:ee:FF",
        "expected lower case",
    ),
    (F(type="mac:48", prefix="PLANT", casing="lower"), "PLANTaa:bb:cc:dd:ee:ff", None),
    # --- mac-48
    (F(type="mac-48"), "aa-bb-cc-dd-ee-ff", None),
    (F(type="mac-48"), "AA-bb-CC-dd-EE-ff", None),
    (F(type="mac-48"), "aa:bb:cc:dd:ee:ff", "expected a mac-48 address like aa-bb-cc-dd-ee-ff"),
    (F(type="mac-48"), "aa-bb-cc-dd-ee:ff", "expected a mac-48 address like aa-bb-cc-dd-ee-ff"),
    (F(type="mac-48"), "aa-bb-cc-dd-ee-f", "expected a mac-48 address like aa-bb-cc-dd-ee-ff"),
    (F(type="mac-48", casing="lower"), "aa-bb-cc-dd-ee-ff", None),
    (F(type="mac-48", casing="lower"), "aa-bb-cc-dd-ee-fF", "expected lower case"),
    (F(type="mac-48", casing="upper"), "AA-BB-CC-DD-EE-FF", None),
    (F(type="mac-48", casing="upper"), "aa-bb-cc-dd-ee-ff", "expected upper case"),
    (F(type="mac-48", prefix="hall.3_"), "hall.3_aa-bb-cc-dd-ee-ff", None),
    (F(type="mac-48", prefix="hall.3_"), "hall.3-aa-bb-cc-dd-ee-ff", "expected prefix 'hall.3_'"),
    # --- mac.48
    (F(type="mac.48"), "aabb.ccdd.eeff", None),
    (F(type="mac.48"), "0000.5E00.53aF", None),
    (F(type="mac.48"), "aa:bb:cc:dd:ee:ff", "expected a mac.48 address like aabb.ccdd.eeff"),
    (F(type="mac.48"), "aabb.ccdd-eeff", "expected a mac.48 address like aabb.ccdd.eeff"),
    (F(type="mac.48"), "aabbc.cdd.eeff", "expected a mac.48 address like aabb.ccdd.eeff"),
    (F(type="mac.48"), "aabb.ccdd.eeff.0011", "expected a mac.48 address like aabb.ccdd.eeff"),
    (F(type="mac.48"), "aabbccddeeff", "expected a mac.48 address like aabb.ccdd.eeff"),
    (F(type="mac.48", casing="lower"), "aabb.ccdd.eeff", None),
    (F(type="mac.48", casing="lower"), "aabb.ccdd.eefF", "expected lower case"),
    (F(type="mac.48", casing="upper"), "AABB.CCDD.EEFF", None),
    (F(type="mac.48", casing="upper"), "AABB.ccdd.EEFF", "expected upper case"),
    (
        F(type="mac.48", casing="upper"),
        "aabb:ccdd",
        "expected a mac.48 address like AABB.CCDD.EEFF",
    ),
    (F(type="mac.48", prefix="sw:"), "sw:aabb.ccdd.eeff", None),
    (F(type="mac.48", prefix="sw:"), "sw-aabb.ccdd.eeff", "expected prefix 'sw:'"),
    # --- uuidv4
    (F(type="uuidv4"), "0f8fad5b-d9cb-469f-a165-70867728950e", None),
    (F(type="uuidv4"), "0F8FAD5B-D9CB-469F-A165-70867728950E", None),
    (F(type="uuidv4"), "123e4567-e89b-42d3-8456-426614174000", None),
    (F(type="uuidv4"), "123e4567-e89b-42d3-9456-426614174000", None),
    (F(type="uuidv4"), "123e4567-e89b-42d3-b456-426614174000", None),
    (
        F(type="uuidv4"),
        "123e4567-e89b-12d3-a456-426614174000",
        "expected uuid version 4, got version 1",
    ),
    (
        F(type="uuidv4"),
        "123e4567-e89b-72d3-a456-426614174000",
        "expected uuid version 4, got version 7",
    ),
    (
        F(type="uuidv4"),
        "123e4567-e89b-42d3-c456-426614174000",
        "expected uuid variant 8, 9, a or b, got c",
    ),
    (
        F(type="uuidv4"),
        "123e4567-e89b-42d3-7456-426614174000",
        "expected uuid variant 8, 9, a or b, got 7",
    ),
    (
        F(type="uuidv4"),
        "123e4567e89b42d3a456426614174000",
        "expected a uuidv4 like 0f8fad5b-d9cb-469f-a165-70867728950e",
    ),
    (
        F(type="uuidv4"),
        "{123e4567-e89b-42d3-a456-426614174000}",
        "expected a uuidv4 like 0f8fad5b-d9cb-469f-a165-70867728950e",
    ),
    (
        F(type="uuidv4"),
        "123e4567-e89b-42d3-a456-42661417400",
        "expected a uuidv4 like 0f8fad5b-d9cb-469f-a165-70867728950e",
    ),
    (
        F(type="uuidv4"),
        "123e4567-e89b-42d3-a456-42661417400g",
        "expected a uuidv4 like 0f8fad5b-d9cb-469f-a165-70867728950e",
    ),
    (F(type="uuidv4", casing="lower"), "0f8fad5b-d9cb-469f-a165-70867728950e", None),
    (
        F(type="uuidv4", casing="lower"),
        "0f8fad5b-d9cb-469f-A165-70867728950e",
        "expected lower case",
    ),
    (F(type="uuidv4", casing="upper"), "0F8FAD5B-D9CB-469F-A165-70867728950E", None),
    (
        F(type="uuidv4", casing="upper"),
        "0F8FAD5B-D9CB-469F-a165-70867728950E",
        "expected upper case",
    ),
    (
        F(type="uuidv4", casing="upper"),
        "0F8FAD5B",
        "expected a uuidv4 like 0F8FAD5B-D9CB-469F-A165-70867728950E",
    ),
    (F(type="uuidv4", prefix="dev-"), "dev-0f8fad5b-d9cb-469f-a165-70867728950e", None),
    (
        F(type="uuidv4", prefix="dev-"),
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "expected prefix 'dev-'",
    ),
    # --- base10
    (F(type="base10"), "0", None),
    (F(type="base10"), "0012345", None),
    (F(type="base10"), "9" * 128, None),
    (F(type="base10"), "9" * 129, "expected at most 128 characters"),
    (F(type="base10"), "12a45", "expected digits 0-9 only"),
    (F(type="base10"), "-12", "expected digits 0-9 only"),
    (F(type="base10"), "1 2", "expected digits 0-9 only"),
    (F(type="base10"), "١٢٣", "expected digits 0-9 only"),  # Arabic-Indic digits
    (F(type="base10"), "", "expected an identity"),
    (F(type="base10", length=6), "123456", None),
    (F(type="base10", length=6), "12345", "expected 6 characters"),
    (F(type="base10", length=6), "1234567", "expected 6 characters"),
    (F(type="base10", casing="upper"), "123", None),
    (F(type="base10", casing="lower"), "123", None),
    (F(type="base10", prefix="m"), "m42", None),
    (F(type="base10", prefix="m"), "M42", "expected prefix 'm'"),
    (F(type="base10", prefix="m"), "m", "expected characters after the prefix"),
    (F(type="base10", prefix="meter-", length=4), "meter-0042", None),
    (
        F(type="base10", prefix="meter-", length=4),
        "meter-42",
        "expected 4 characters after the prefix",
    ),
    (F(type="base10", prefix="meter-"), "meter-" + "1" * 122, None),
    (
        F(type="base10", prefix="meter-"),
        "meter-" + "1" * 123,
        "expected at most 122 characters after the prefix",
    ),
    # --- base16
    (F(type="base16"), "deadBEEF01", None),
    (F(type="base16"), "0", None),
    (F(type="base16"), "0xdeadbeef", "expected hex digits without 0x"),
    (F(type="base16"), "0Xdeadbeef", "expected hex digits without 0x"),
    (F(type="base16"), "deadbeeg", "expected hex digits 0-9, a-f only"),
    (F(type="base16"), "dead:beef", "expected hex digits 0-9, a-f only"),
    (F(type="base16"), "f" * 129, "expected at most 128 characters"),
    (F(type="base16", casing="lower"), "deadbeef", None),
    (F(type="base16", casing="lower"), "deadBeef", "expected lower case"),
    (F(type="base16", casing="lower"), "0123456789", None),
    (F(type="base16", casing="upper"), "DEADBEEF", None),
    (F(type="base16", casing="upper"), "DEADbEEF", "expected upper case"),
    (F(type="base16", length=12), "0123456789ab", None),
    (F(type="base16", length=12), "0123456789a", "expected 12 characters"),
    (F(type="base16", length=12), "0123456789abc", "expected 12 characters"),
    (F(type="base16", prefix="plant1-", length=12), "plant1-0123456789ab", None),
    (
        F(type="base16", prefix="plant1-", length=12),
        "plant1-0123456789a",
        "expected 12 characters after the prefix",
    ),
    (
        F(type="base16", prefix="plant1-", length=12, casing="upper"),
        "plant1-0123456789AB",
        None,
    ),
    (
        F(type="base16", prefix="plant1-", length=12, casing="upper"),
        "plant1-0123456789ab",
        "expected upper case",
    ),
    # --- opaque
    (F(), "pump-7", None),
    (F(), "Pump_7.a:b@c-d", None),
    (F(), "a", None),
    (F(), "x" * 128, None),
    (F(), "x" * 129, "expected at most 128 characters"),
    (F(), "", "expected an identity"),
    (F(), "-pump", "expected a letter or digit first"),
    (F(), ".pump", "expected a letter or digit first"),
    (F(), ":pump", "expected a letter or digit first"),
    (F(), "@pump", "expected a letter or digit first"),
    (F(), "_pump", "expected a letter or digit first"),
    (F(), "pump 7", "expected only letters, digits and _.:@-"),
    (F(), "pump/7", "expected only letters, digits and _.:@-"),
    (F(), "pümp", "expected only letters, digits and _.:@-"),
    (F(), "pump\n", "expected only letters, digits and _.:@-"),
    (F(casing="lower"), "pump-7", None),
    (F(casing="lower"), "Pump-7", "expected lower case"),
    (F(casing="upper"), "PUMP-7", None),
    (F(casing="upper"), "PUMP-7x", "expected upper case"),
    (F(casing="upper"), "1234", None),
    (F(length=6), "pump-7", None),
    (F(length=6), "pump-77", "expected 6 characters"),
    (F(prefix="plant1-"), "plant1-pump", None),
    (F(prefix="plant1-"), "plant1-_pump", None),
    (F(prefix="plant1-"), "plant1--pump", "expected a letter or digit first after the prefix"),
    (F(prefix="plant1-"), "plant1-@pump", "expected a letter or digit first after the prefix"),
    (F(prefix="plant1-"), "plant2-pump", "expected prefix 'plant1-'"),
    (F(prefix="plant1-"), "plant1-" + "x" * 121, None),
    (
        F(prefix="plant1-"),
        "plant1-" + "x" * 122,
        "expected at most 121 characters after the prefix",
    ),
    (F(prefix="plant1-", casing="upper"), "plant1-PUMP", None),
    (F(prefix="plant1-", casing="upper"), "plant1-Pump", "expected upper case"),
    (F(prefix="plant1-", length=4, casing="lower"), "plant1-pump", None),
    (
        F(prefix="plant1-", length=4, casing="lower"),
        "plant1-pumps",
        "expected 4 characters after the prefix",
    ),
]


@pytest.mark.parametrize(("fmt", "identity", "reason"), TABLE)
def test_check_table(fmt: IdentityFormat, identity: str, reason: str | None) -> None:
    assert check(fmt, identity) == reason


@pytest.mark.parametrize("identity", [None, 42, b"aa:bb:cc:dd:ee:ff", ["x"]])
def test_check_non_string(identity: Any) -> None:
    assert check(F(type="mac:48"), identity) == "expected a string"


DESCRIBE: list[tuple[IdentityFormat, str]] = [
    (
        F(type="mac:48", prefix="plant1-", casing="lower"),
        "mac:48 (aa:bb:cc:dd:ee:ff) with prefix 'plant1-', lower case",
    ),
    (F(type="mac:48"), "mac:48 (aa:bb:cc:dd:ee:ff)"),
    (F(type="mac-48", casing="upper"), "mac-48 (AA-BB-CC-DD-EE-FF), upper case"),
    (F(type="mac.48"), "mac.48 (aabb.ccdd.eeff)"),
    (
        F(type="uuidv4", prefix="dev-"),
        "uuidv4 (0f8fad5b-d9cb-469f-a165-70867728950e) with prefix 'dev-'",
    ),
    (F(type="base10", length=6), "base10 (6 digits)"),
    (F(type="base10", casing="upper"), "base10 (1-128 digits)"),
    (F(type="base10", prefix="meter-"), "base10 (1-122 digits) with prefix 'meter-'"),
    (F(type="base16", length=12, casing="lower"), "base16 (12 hex digits), lower case"),
    (F(), "opaque (1-128 letters, digits and _.:@-)"),
    (
        F(prefix="p", length=8, casing="upper"),
        "opaque (8 letters, digits and _.:@-) with prefix 'p', upper case",
    ),
]


@pytest.mark.parametrize(("fmt", "text"), DESCRIBE)
def test_describe(fmt: IdentityFormat, text: str) -> None:
    assert describe(fmt) == text


# --- the configuration model


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "mac:48", "length": 17}, "length: not allowed for mac:48, whose length is fixed"),
        ({"type": "mac-48", "length": 12}, "length: not allowed for mac-48, whose length is fixed"),
        ({"type": "mac.48", "length": 14}, "length: not allowed for mac.48, whose length is fixed"),
        ({"type": "uuidv4", "length": 36}, "length: not allowed for uuidv4, whose length is fixed"),
        ({"type": "base16", "length": 0}, "greater than or equal to 1"),
        ({"type": "base10", "length": 129}, "less than or equal to 128"),
        ({"length": -3}, "greater than or equal to 1"),
        (
            {"prefix": "p" * 30, "length": 99},
            "length: 99 plus the 30-character prefix exceeds 128 characters",
        ),
        ({"prefix": "p" * 33}, "prefix: 33 characters, at most 32 allowed"),
        ({"prefix": "plant 1"}, "must start with a letter or digit"),
        ({"prefix": "-plant"}, "must start with a letter or digit"),
        ({"prefix": "_plant"}, "must start with a letter or digit"),
        ({"prefix": "plant@"}, "must start with a letter or digit"),
        ({"prefix": "plant/"}, "must start with a letter or digit"),
        ({"prefix": "plänt"}, "must start with a letter or digit"),
        ({"type": "mac48"}, "Input should be"),
        ({"casing": "title"}, "Input should be"),
        ({"kind": "opaque"}, "Extra inputs are not permitted"),
    ],
)
def test_model_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        IdentityFormat(**kwargs)


def test_model_accepts() -> None:
    fmt = IdentityFormat.model_validate(
        {"type": "base10", "prefix": "p" * 32, "length": 96, "casing": "upper"}
    )
    assert (fmt.type, fmt.prefix, fmt.length, fmt.casing) == ("base10", "p" * 32, 96, "upper")
    default = IdentityFormat()
    assert (default.type, default.prefix, default.length, default.casing) == (
        "opaque",
        "",
        None,
        "mixed",
    )
    assert IdentityFormat(type="mac:48", prefix="a.b:c_d-").prefix == "a.b:c_d-"


# --- generation


def test_generate_mac_is_locally_administered_unicast() -> None:
    rng = random.Random(5)
    for _ in range(200):
        mac = generate(F(type="mac:48"), rng)
        first = int(mac[:2], 16)
        assert first & 0b10 == 0b10  # locally administered
        assert first & 0b01 == 0  # unicast
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac)


def test_generate_shapes() -> None:
    rng = random.Random(1)
    assert re.fullmatch(r"([0-9a-f]{2}-){5}[0-9a-f]{2}", generate(F(type="mac-48"), rng))
    assert re.fullmatch(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}", generate(F(type="mac.48"), rng))
    assert re.fullmatch(
        r"([0-9A-F]{2}:){5}[0-9A-F]{2}", generate(F(type="mac:48", casing="upper"), rng)
    )
    u = generate(F(type="uuidv4", prefix="dev-"), rng)
    assert u.startswith("dev-")
    parsed = uuid.UUID(u[4:])
    assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
    assert str(parsed) == u[4:]
    assert re.fullmatch(r"[0-9]{16}", generate(F(type="base10"), rng))
    assert re.fullmatch(r"[0-9a-f]{5}", generate(F(type="base16", length=5), rng))
    assert re.fullmatch(r"[0-9A-F]{7}", generate(F(type="base16", length=7, casing="upper"), rng))
    assert re.fullmatch(r"[a-z0-9]{16}", generate(F(), rng))
    assert re.fullmatch(r"x-[A-Z0-9]{3}", generate(F(prefix="x-", length=3, casing="upper"), rng))


def test_generate_is_repeatable_with_a_seed_and_random_without() -> None:
    fmt = F(type="uuidv4")
    assert generate(fmt, random.Random(7)) == generate(fmt, random.Random(7))
    assert generate(fmt, random.Random(7)) != generate(fmt, random.Random(8))
    made = {generate(F(type="base16", length=32)) for _ in range(50)}
    assert len(made) == 50
    assert all(re.fullmatch(r"[0-9a-f]{32}", m) for m in made)


# --- properties

FIXED = ["mac:48", "mac-48", "mac.48", "uuidv4"]
VARIABLE = ["opaque", "base10", "base16"]
prefixes = st.from_regex(r"\A([A-Za-z0-9][A-Za-z0-9_.:-]{0,31})?\Z")
casings = st.sampled_from(["mixed", "lower", "upper"])


@st.composite
def formats(draw: st.DrawFn) -> IdentityFormat:
    prefix = draw(prefixes)
    fixed = st.builds(
        IdentityFormat, type=st.sampled_from(FIXED), prefix=st.just(prefix), casing=casings
    )
    variable = st.builds(
        IdentityFormat,
        type=st.sampled_from(VARIABLE),
        prefix=st.just(prefix),
        casing=casings,
        length=st.none() | st.integers(1, 128 - len(prefix)),
    )
    return draw(fixed | variable)


@given(formats(), st.randoms(use_true_random=False))
def test_generated_identities_are_valid(fmt: IdentityFormat, rng: random.Random) -> None:
    identity = generate(fmt, rng)
    assert check(fmt, identity) is None
    assert INGEST.match(identity)
    if fmt.length is not None:
        assert len(identity) == len(fmt.prefix) + fmt.length


@given(formats())
def test_generated_with_secrets_are_valid(fmt: IdentityFormat) -> None:
    assert check(fmt, generate(fmt)) is None


@given(formats(), st.text(max_size=300))
def test_check_never_raises_and_valid_means_ingestible(fmt: IdentityFormat, text: str) -> None:
    reason = check(fmt, text)
    assert reason is None or (isinstance(reason, str) and reason.startswith("expected"))
    if reason is None:
        assert INGEST.match(text)


@given(formats(), st.text(alphabet="0123456789abcdefABCDEF:-.xX_@g", max_size=40))
def test_check_prefixed_near_misses(fmt: IdentityFormat, text: str) -> None:
    """Texts close to valid identities reach the deeper branches of check."""
    reason = check(fmt, fmt.prefix + text)
    if reason is None:
        assert INGEST.match(fmt.prefix + text)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.text(max_size=8) | st.sampled_from(FIXED + VARIABLE),
            "prefix": st.text(max_size=40),
            "casing": st.text(max_size=6) | casings,
            "length": st.integers(-5, 200) | st.none(),
        },
    )
)
def test_model_only_raises_validation_error(kwargs: dict[str, Any]) -> None:
    try:
        fmt = IdentityFormat(**kwargs)
    except ValidationError:
        return
    assert check(fmt, generate(fmt, random.Random(0))) is None


SEPARATOR = {"mac:48": ":", "mac-48": "-", "mac.48": "."}
mac_formats = st.builds(
    IdentityFormat, type=st.sampled_from(list(SEPARATOR)), prefix=prefixes, casing=casings
)


@given(mac_formats, st.randoms(use_true_random=False), st.data())
def test_mac_mutations_are_invalid(
    fmt: IdentityFormat, rng: random.Random, data: st.DataObject
) -> None:
    identity = generate(fmt, rng)
    p = len(fmt.prefix)
    part = identity[p:]
    seps = [i for i, c in enumerate(part) if c == SEPARATOR[fmt.type]]
    assert len(seps) == (2 if fmt.type == "mac.48" else 5)
    # another separator in one place
    i = data.draw(st.sampled_from(seps))
    other = data.draw(st.sampled_from([s for s in ":-._ " if s != SEPARATOR[fmt.type]]))
    assert check(fmt, fmt.prefix + part[:i] + other + part[i + 1 :]) is not None
    # one character dropped
    j = data.draw(st.integers(0, len(part) - 1))
    assert check(fmt, fmt.prefix + part[:j] + part[j + 1 :]) is not None
    # one hex digit added
    k = data.draw(st.integers(0, len(part)))
    assert check(fmt, fmt.prefix + part[:k] + "0" + part[k:]) is not None
    # a hex digit replaced by a non-hex letter
    digits = [n for n in range(len(part)) if n not in seps]
    d = data.draw(st.sampled_from(digits))
    assert check(fmt, fmt.prefix + part[:d] + "g" + part[d + 1 :]) is not None
    # the prefix missing (or, without a prefix, a letter in front)
    # (the bare part may happen to start with the prefix, so only "invalid" is certain)
    assert check(fmt, part if fmt.prefix else "z" + part) is not None


@given(casings, st.randoms(use_true_random=False), st.data())
def test_uuid_mutations_are_invalid(casing: Any, rng: random.Random, data: st.DataObject) -> None:
    fmt = IdentityFormat(type="uuidv4", casing=casing)
    u = generate(fmt, rng)
    version = data.draw(st.sampled_from("012356789abcdef"))
    assert check(fmt, u[:14] + version + u[15:]) is not None
    variant = data.draw(st.sampled_from("01234567cdefCDEF"))
    assert check(fmt, u[:19] + variant + u[20:]) is not None
    dash = data.draw(st.sampled_from([8, 13, 18, 23]))
    assert check(fmt, u[:dash] + u[dash + 1 :]) is not None
    assert check(fmt, u.replace("-", "")) is not None


@given(
    st.builds(
        IdentityFormat,
        type=st.sampled_from(["mac:48", "mac.48", "uuidv4", "base16", "opaque"]),
        casing=st.sampled_from(["lower", "upper"]),
        prefix=prefixes,
    ),
    st.randoms(use_true_random=False),
)
def test_flipping_case_of_a_letter_is_invalid(fmt: IdentityFormat, rng: random.Random) -> None:
    identity = generate(fmt, rng)
    part = identity[len(fmt.prefix) :]
    letters = [i for i, c in enumerate(part) if c.isalpha()]
    if not letters:
        return
    i = letters[0]
    flipped = fmt.prefix + part[:i] + part[i].swapcase() + part[i + 1 :]
    assert check(fmt, flipped) == f"expected {fmt.casing} case"
    mixed = fmt.model_copy(update={"casing": "mixed"})
    assert check(mixed, flipped) is None


@given(
    st.builds(
        IdentityFormat,
        type=st.sampled_from(VARIABLE),
        prefix=prefixes,
        casing=casings,
        length=st.integers(1, 96),
    ),
    st.randoms(use_true_random=False),
)
def test_fixed_length_mutations_are_invalid(fmt: IdentityFormat, rng: random.Random) -> None:
    identity = generate(fmt, rng)
    assert check(fmt, identity + "1") is not None
    if fmt.length is not None and fmt.length > 1:
        assert check(fmt, identity[:-1]) is not None
