"""Identity formats: what a device's identity must look like in one deployment.

A deployment picks one format (``mac:48``, ``mac-48``, ``mac.48``, ``uuidv4``, ``base10``,
``base16`` or ``opaque``) with an optional literal prefix, a casing and, for the variable
length types, an exact length. The registry checks presented identities against it and
generates new ones from it when a device asks for an identity.

Whatever the format, a valid identity (prefix + formatted part) also matches the HTTP
ingest path pattern ``^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$`` of ``api/routers/ingest.py``,
so every identity the registry accepts can post telemetry. That is why the prefix must start
with a letter or digit, and why the prefix and the part together are at most 128 characters.

``check`` returns a reason instead of raising: the caller decides whether a bad identity
is a 400 at the HTTP edge, a refused provisioning or a dead letter.
"""

from __future__ import annotations

import random
import re
import secrets
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FormatType = Literal["opaque", "mac:48", "mac-48", "mac.48", "uuidv4", "base10", "base16"]
Casing = Literal["mixed", "lower", "upper"]

#: longest identity (prefix included) the ingest path accepts
MAX_IDENTITY = 128
MAX_PREFIX = 32
#: length of the formatted part generated when the format does not fix one
DEFAULT_LENGTH = 16

_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_HEX = "[0-9A-Fa-f]"
_SHAPES: dict[str, re.Pattern[str]] = {
    "mac:48": re.compile(f"{_HEX}{{2}}(?::{_HEX}{{2}}){{5}}"),
    "mac-48": re.compile(f"{_HEX}{{2}}(?:-{_HEX}{{2}}){{5}}"),
    "mac.48": re.compile(f"{_HEX}{{4}}(?:\\.{_HEX}{{4}}){{2}}"),
    "uuidv4": re.compile(f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"),
}
_EXAMPLES: dict[str, str] = {
    "mac:48": "aa:bb:cc:dd:ee:ff",
    "mac-48": "aa-bb-cc-dd-ee-ff",
    "mac.48": "aabb.ccdd.eeff",
    "uuidv4": "0f8fad5b-d9cb-469f-a165-70867728950e",
}
_BASE10_RE = re.compile(r"[0-9]+")
_BASE16_RE = re.compile(r"[0-9A-Fa-f]+")
_OPAQUE_RE = re.compile(r"[A-Za-z0-9_.:@-]+")
_HAS_UPPER = re.compile(r"[A-Z]")
_HAS_LOWER = re.compile(r"[a-z]")


class IdentityFormat(BaseModel):
    """The identity format of a deployment.

    ``casing`` applies to the formatted part only (the prefix is literal): the hex
    letters of mac, uuid and base16 identities, every letter of an opaque one; ``mixed``
    accepts either and generates lower case. ``length`` fixes the length of the formatted
    part of base10, base16 and opaque identities; mac and uuid lengths are fixed by the
    type, so setting one there is a configuration error rather than silently ignored.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: FormatType = "opaque"
    prefix: str = Field(default="", description="literal prefix every identity carries")
    casing: Casing = "mixed"
    length: int | None = Field(
        default=None,
        ge=1,
        le=MAX_IDENTITY,
        description="exact length after the prefix (base10, base16, opaque); None = any",
    )

    @model_validator(mode="after")
    def _consistent(self) -> IdentityFormat:
        if self.prefix:
            if len(self.prefix) > MAX_PREFIX:
                raise ValueError(
                    f"prefix: {len(self.prefix)} characters, at most {MAX_PREFIX} allowed"
                )
            if not _PREFIX_RE.fullmatch(self.prefix):
                raise ValueError(
                    f"prefix: {self.prefix!r} must start with a letter or digit and contain "
                    "only letters, digits and _.:-"
                )
        if self.length is not None:
            if self.type in _SHAPES:
                raise ValueError(f"length: not allowed for {self.type}, whose length is fixed")
            if len(self.prefix) + self.length > MAX_IDENTITY:
                raise ValueError(
                    f"length: {self.length} plus the {len(self.prefix)}-character prefix "
                    f"exceeds {MAX_IDENTITY} characters"
                )
        return self


def _after_prefix(fmt: IdentityFormat) -> str:
    return " after the prefix" if fmt.prefix else ""


def _example(fmt: IdentityFormat) -> str:
    example = _EXAMPLES[fmt.type]
    return example.upper() if fmt.casing == "upper" else example


def _check_uuid(fmt: IdentityFormat, part: str) -> str | None:
    if not _SHAPES["uuidv4"].fullmatch(part):
        return f"expected a uuidv4 like {_example(fmt)}"
    if part[14] != "4":
        return f"expected uuid version 4, got version {part[14]}"
    if part[19] not in "89abAB":
        return f"expected uuid variant 8, 9, a or b, got {part[19]}"
    return None


def _check_chars(fmt: IdentityFormat, part: str) -> str | None:
    """Why ``part`` has characters its variable-length type does not allow, or None."""
    if fmt.type == "base10":
        return None if _BASE10_RE.fullmatch(part) else "expected digits 0-9 only"
    if fmt.type == "base16":
        if part[:2] in ("0x", "0X"):
            return "expected hex digits without 0x"
        return None if _BASE16_RE.fullmatch(part) else "expected hex digits 0-9, a-f only"
    if not _OPAQUE_RE.fullmatch(part):
        return "expected only letters, digits and _.:@-"
    # after a prefix "_" may lead (the identity still starts with the prefix's letter)
    if part[0] in ".:@-" or (part[0] == "_" and not fmt.prefix):
        return f"expected a letter or digit first{_after_prefix(fmt)}"
    return None


def check(fmt: IdentityFormat, identity: str) -> str | None:
    """None if ``identity`` is valid for ``fmt``, else a short reason to show the user.

    Never raises, whatever it is given: identities arrive from devices and URLs.
    """
    if not isinstance(identity, str):
        return "expected a string"
    if not identity.startswith(fmt.prefix):
        return f"expected prefix '{fmt.prefix}'"
    part = identity[len(fmt.prefix) :]
    if not part:
        return "expected characters after the prefix" if fmt.prefix else "expected an identity"
    if fmt.type == "uuidv4":
        reason = _check_uuid(fmt, part)
    elif fmt.type in _SHAPES:
        ok = _SHAPES[fmt.type].fullmatch(part)
        reason = None if ok else f"expected a {fmt.type} address like {_example(fmt)}"
    else:
        reason = _check_chars(fmt, part)
        if reason is None and fmt.length is not None and len(part) != fmt.length:
            reason = f"expected {fmt.length} characters{_after_prefix(fmt)}"
        if reason is None and len(identity) > MAX_IDENTITY:
            room = MAX_IDENTITY - len(fmt.prefix)
            reason = f"expected at most {room} characters{_after_prefix(fmt)}"
    if reason is not None:
        return reason
    if fmt.casing == "lower" and _HAS_UPPER.search(part):
        return "expected lower case"
    if fmt.casing == "upper" and _HAS_LOWER.search(part):
        return "expected upper case"
    return None


def _random_bytes(rng: random.Random | None, n: int) -> bytes:
    return secrets.token_bytes(n) if rng is None else rng.randbytes(n)


def _random_chars(rng: random.Random | None, alphabet: str, n: int) -> str:
    if rng is None:
        return "".join(secrets.choice(alphabet) for _ in range(n))
    return "".join(rng.choices(alphabet, k=n))


def generate(fmt: IdentityFormat, rng: random.Random | None = None) -> str:
    """A new random identity valid for ``fmt``.

    Without ``rng`` the randomness comes from ``secrets``: a generated identity may be
    all that names a device to the outside, so it must not be guessable from earlier
    ones. Tests pass a seeded ``random.Random`` to get repeatable identities.
    MAC addresses are locally administered unicast (first octet: bit 1 set, bit 0
    clear), so they never collide with a vendor-assigned address.
    """
    length = fmt.length or DEFAULT_LENGTH
    if fmt.type in ("mac:48", "mac-48", "mac.48"):
        octets = bytearray(_random_bytes(rng, 6))
        octets[0] = (octets[0] & 0xFC) | 0x02
        hexed = octets.hex()
        if fmt.type == "mac.48":
            part = ".".join(hexed[i : i + 4] for i in range(0, 12, 4))
        else:
            part = fmt.type[3].join(hexed[i : i + 2] for i in range(0, 12, 2))
    elif fmt.type == "uuidv4":
        part = str(uuid.UUID(bytes=_random_bytes(rng, 16), version=4))
    elif fmt.type == "base10":
        part = _random_chars(rng, "0123456789", length)
    elif fmt.type == "base16":
        part = _random_chars(rng, "0123456789abcdef", length)
    else:
        part = _random_chars(rng, "abcdefghijklmnopqrstuvwxyz0123456789", length)
    if fmt.casing == "upper":
        part = part.upper()
    return fmt.prefix + part


def describe(fmt: IdentityFormat) -> str:
    """One line for error messages and docs, e.g.
    ``mac:48 (aa:bb:cc:dd:ee:ff) with prefix 'plant1-', lower case``."""
    if fmt.type in _EXAMPLES:
        text = f"{fmt.type} ({_example(fmt)})"
    else:
        longest = MAX_IDENTITY - len(fmt.prefix)
        size = f"1-{longest}" if fmt.length is None else str(fmt.length)
        noun = {"base10": "digits", "base16": "hex digits"}.get(
            fmt.type, "letters, digits and _.:@-"
        )
        text = f"{fmt.type} ({size} {noun})"
    if fmt.prefix:
        text += f" with prefix '{fmt.prefix}'"
    if fmt.casing != "mixed" and fmt.type != "base10":
        text += f", {fmt.casing} case"
    return text
