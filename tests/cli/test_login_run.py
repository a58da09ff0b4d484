"""Users sign in through the API of a real ``millrace run``: the first start creates
``admin`` and prints its password once (to stdout, never to the log); the admin signs
in, creates a user who signs in, refreshes and signs out; after a restart nothing is
printed again and the sessions, users and signing keys are still there."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_crash_recovery import Engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORD_LINE = re.compile(r"created the user 'admin'.*?\n\n\s+(\S+)\n", re.S)


class TalkingEngine(Engine):
    """``millrace run`` whose stdout goes to a file the test reads."""

    def _spawn(self, env: dict[str, str], errlog: Any) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in env.items() if k != "MILLRACE_ADMIN_PASSWORD"}
        args = [sys.executable, "-m", "millrace.pipeline.cli.main", "run"]
        args += ["--data-dir", str(self.data), "--port", str(self.port)]
        args += ["--config", str(self.config)]
        with open(self.data.parent / "stdout.txt", "ab") as out:
            return subprocess.Popen(args, env=env, stdout=out, stderr=errlog)


def login(url: str, username: str, password: str) -> dict[str, Any]:
    r = httpx.post(f"{url}/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_sign_in_through_millrace_run(tmp_path: Path) -> None:
    config = tmp_path / "millrace.yaml"
    config.write_text("simulator:\n  devices: 0\n")
    engine = TalkingEngine(tmp_path / "data", config)
    try:
        engine.start()
        printed = (tmp_path / "stdout.txt").read_text()
        found = PASSWORD_LINE.search(printed)
        assert found is not None, printed
        admin_password = found.group(1)
        admin = login(engine.url, "admin", admin_password)
        auth = {"Authorization": f"Bearer {admin['access_token']}"}
        r = httpx.post(
            f"{engine.url}/users",
            json={"username": "ana", "password": "a long passphrase here", "roles": ["viewer"]},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        ana = login(engine.url, "ana", "a long passphrase here")
        me = httpx.get(
            f"{engine.url}/me", headers={"Authorization": f"Bearer {ana['access_token']}"}
        )
        assert me.json()["data"]["username"] == "ana"
        r = httpx.post(f"{engine.url}/refresh", json={"refresh_token": ana["refresh_token"]})
        assert r.status_code == 200
        ana = r.json()
        engine.stop()

        engine.start()
        again = (tmp_path / "stdout.txt").read_text()
        assert PASSWORD_LINE.findall(again) == [admin_password]  # printed once, ever
        # the session, the user and the signing key survived the restart
        me = httpx.get(
            f"{engine.url}/me", headers={"Authorization": f"Bearer {ana['access_token']}"}
        )
        assert me.status_code == 200, me.text
        r = httpx.post(f"{engine.url}/logout", json={"refresh_token": ana["refresh_token"]})
        assert r.status_code == 204
        me = httpx.get(
            f"{engine.url}/me", headers={"Authorization": f"Bearer {ana['access_token']}"}
        )
        assert me.status_code == 401
        logged = (tmp_path / "engine.log").read_text()
        for secret in (admin_password, ana["access_token"], ana["refresh_token"]):
            assert secret not in logged
    finally:
        engine.ensure_stopped()
