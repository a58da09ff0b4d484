"""The password policy: what a new password must be.

Rules (each named in the 400 that refuses it, as ``details[0].rule``): ``min_length``
(12 by default), ``max_length`` (what argon2 hashing accepts, 1024 bytes),
``not_username`` (nor the username reversed, case-insensitively), ``not_common`` (not in
``common_passwords.txt`` shipped here, plus an optional file of your own, one password a
line). The shipped list is small on purpose: shorter common passwords already fail the
length rule, and a list of millions would be a dependency for little gain at 12
characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from millrace.api.device_auth import MAX_PASSWORD_BYTES
from millrace.pipeline.errors import MillraceError

_SHIPPED = Path(__file__).with_name("common_passwords.txt")


class PasswordRejectedError(MillraceError, ValueError):
    """A password breaks ``rule``; ``message`` says how."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


@lru_cache(maxsize=8)
def _read_list(path: Path) -> frozenset[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(s.strip().lower() for s in lines if s.strip() and not s.startswith("#"))


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 12
    #: extra common passwords, one a line (besides the shipped list)
    extra_list: Path | None = None
    check_common: bool = True
    extra: frozenset[str] = field(default_factory=frozenset)

    def common(self) -> frozenset[str]:
        found = _read_list(_SHIPPED) | self.extra
        if self.extra_list is not None:
            found |= _read_list(self.extra_list)
        return found

    def check(self, password: str, username: str) -> None:
        """Raises :class:`PasswordRejectedError` naming the first rule ``password`` breaks."""
        if len(password) < self.min_length:
            raise PasswordRejectedError(
                "min_length", f"password: must be at least {self.min_length} characters long"
            )
        if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
            raise PasswordRejectedError(
                "max_length", f"password: must be at most {MAX_PASSWORD_BYTES} bytes long"
            )
        low, user = password.lower(), username.lower()
        if user and (low == user or low == user[::-1]):
            raise PasswordRejectedError("not_username", "password: must not be the username")
        if self.check_common and low in self.common():
            raise PasswordRejectedError(
                "not_common", "password: is a commonly used password; choose another"
            )
