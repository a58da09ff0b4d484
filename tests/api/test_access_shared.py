"""Several ``millrace api`` processes on one data directory agree on users, sessions,
revocations and signing keys (``api.users.shared_file``): what one process changes,
the others act on at their next request — checked with a second process for real."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from millrace.api.auth import KeyStore
from millrace.api.users.access import AccessControl
from millrace.pipeline.errors import ConfigError
from tests.api.conftest import CHEAP_HASHER

PASSWORD = "an admin passphrase for tests"


def control(path: Path) -> AccessControl:
    return AccessControl(KeyStore(path / "api_keys.json"), path, hasher=CHEAP_HASHER)


def sign_in(access: AccessControl, username: str) -> str:
    sid, _ = access.sessions.start(username)
    token, _ = access.signing.issue(username, sid)
    return token


def in_another_process(path: Path, code: str) -> None:
    script = (
        "from pathlib import Path\n"
        "from millrace.api.auth import KeyStore\n"
        "from millrace.api.device_auth import CredentialHasher\n"
        "from millrace.api.users.access import AccessControl\n"
        f"path = Path({str(path)!r})\n"
        "access = AccessControl(KeyStore(path / 'api_keys.json'), path,"
        " hasher=CredentialHasher(time_cost=1, memory_cost=8))\n" + code
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_two_processes_agree(tmp_path: Path) -> None:
    a = control(tmp_path)
    assert a.first_admin(PASSWORD) is None  # chosen, so nothing to print
    b = control(tmp_path)
    assert b.first_admin(None) is None  # users exist: no second admin
    a.users.create("op", CHEAP_HASHER.hash(PASSWORD), roles=["operator"])
    token = sign_in(a, "op")
    principal = b.authenticate(token)
    assert principal is not None and principal.can("alarms:acknowledge")

    # another process demotes the user: this one sees it at the next request
    in_another_process(tmp_path, "access.users.update('op', roles=['viewer'])\n")
    principal = a.authenticate(token)
    assert principal is not None and not principal.can("alarms:acknowledge")

    # another process rotates the signing key and signs in: this one verifies both
    in_another_process(
        tmp_path,
        "access.signing.rotate()\n"
        "sid, _ = access.sessions.start('op')\n"
        "token, _ = access.signing.issue('op', sid)\n"
        "(path / 'token.txt').write_text(token)\n",
    )
    fresh = (tmp_path / "token.txt").read_text()
    assert a.authenticate(fresh) is not None
    assert a.authenticate(token) is not None  # the old key is kept until expiry

    # another process disables the user (ending the sessions): refused here at once
    in_another_process(
        tmp_path,
        "access.users.update('op', enabled=False)\naccess.sessions.end_user('op')\n",
    )
    assert a.authenticate(token) is None
    assert a.authenticate(fresh) is None


def test_files_are_private_and_hold_no_secret(tmp_path: Path) -> None:
    a = control(tmp_path)
    generated = a.first_admin(None)
    assert generated is not None and len(generated) >= 12
    token = sign_in(a, "admin")
    for name in ("users.json", "sessions.json", "jwt_keys.json"):
        path = tmp_path / name
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, name
        text = path.read_text()
        assert generated not in text and token not in text
    user = a.users.get("admin")
    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert CHEAP_HASHER.verify(user.password_hash, generated)


def test_a_weak_admin_password_from_the_environment_fails_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MILLRACE_ADMIN_PASSWORD"):
        control(tmp_path).first_admin("admin")
    assert len(control(tmp_path).users) == 0


def test_the_auth_section_configures_sign_in(tmp_path: Path) -> None:
    from millrace.api.users.access import AccessSettings
    from millrace.api.users.policy import PasswordRejectedError
    from millrace.pipeline.cli.config import MillraceConfig

    extra = tmp_path / "ours.txt"
    extra.write_text("plant-floor-2024-password\n")
    cfg = MillraceConfig.model_validate(
        {
            "api": {
                "auth": {
                    "access_token_ttl_s": 300,
                    "login_max_user_failures": 2,
                    "password_min_length": 16,
                    "common_passwords_file": str(extra),
                }
            }
        }
    )
    settings = AccessSettings.of(cfg.api.auth)
    access = AccessControl(KeyStore(None), tmp_path, hasher=CHEAP_HASHER, settings=settings)
    assert access.signing.access_ttl_s == 300
    assert access.sessions.lockout.max_user_failures == 2
    with pytest.raises(PasswordRejectedError) as short:
        access.policy.check("fifteen chars!!", "x")
    assert short.value.rule == "min_length"
    with pytest.raises(PasswordRejectedError) as ours:
        access.policy.check("Plant-Floor-2024-Password", "x")
    assert ours.value.rule == "not_common"
    access.policy.check("sixteen characters ok", "x")
