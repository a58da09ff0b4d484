"""Wrong device passwords from one address cannot lock the device out at another
(issue 12: ten from anywhere answered the real device 429 for a minute)."""

from __future__ import annotations

import base64

import httpx

from tests.api.conftest import NOW_US, V1, Api, error_of, uid

PASSWORD = "correct-horse-battery-staple"


def _client(api: Api, host: str) -> httpx.AsyncClient:
    """A client of ``api`` whose requests come from ``host`` (the ASGI peer address)."""
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


def _basic(identity: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _device(api: Api) -> str:
    name = uid("dev")
    r = await api.client.post(
        f"{V1}/identities",
        json={"identity": name, "auth": {"type": "password", "password": PASSWORD}},
        headers=api.auth(api.operator),
    )
    assert r.status_code == 201, r.text
    await api.sync()
    return name


async def test_guesses_from_one_address_do_not_lock_the_device_out(api: Api) -> None:
    name = await _device(api)
    sample = [{"timestamp": NOW_US, "values": {"t": 1.0}}]
    url = f"{V1}/identities/{name}/data"
    async with _client(api, "198.51.100.7") as attacker, _client(api, "10.0.0.5") as device:
        codes = []
        for _ in range(15):
            r = await attacker.post(url, json=sample, headers=_basic(name, "a wrong guess, long"))
            codes.append(r.status_code)
        assert codes[:10] == [401] * 10, codes
        assert codes[10:] == [429] * 5, codes  # that address, for that identity: blocked
        r = await attacker.post(url, json=sample, headers=_basic(name, PASSWORD))
        assert r.status_code == 429 and error_of(r)["code"] == "too_many_failures", r.text

        r = await device.post(url, json=sample, headers=_basic(name, PASSWORD))
        assert r.status_code == 202, r.text
        # another device behind the attacker's address is not blocked either (yet)
        other = await _device(api)
        r = await attacker.post(
            f"{V1}/identities/{other}/data", json=sample, headers=_basic(other, PASSWORD)
        )
        assert r.status_code == 202, r.text


async def test_an_address_guessing_many_identities_is_blocked(api: Api) -> None:
    api.ctx.failures.max_address_failures = 20
    victim = await _device(api)
    sample = [{"timestamp": NOW_US, "values": {"t": 1.0}}]
    async with _client(api, "198.51.100.8") as attacker, _client(api, "10.0.0.6") as device:
        for i in range(20):  # two failures for each of ten names: no pair is full
            r = await attacker.post(
                f"{V1}/identities/guess-{i // 2}/data",
                json=sample,
                headers={"Authorization": "Bearer dt_forged"},
            )
            assert r.status_code == 401, r.text
        r = await attacker.post(
            f"{V1}/identities/{victim}/data", json=sample, headers=_basic(victim, PASSWORD)
        )
        assert r.status_code == 429, r.text
        r = await device.post(
            f"{V1}/identities/{victim}/data", json=sample, headers=_basic(victim, PASSWORD)
        )
        assert r.status_code == 202, r.text


async def test_a_device_that_gets_its_password_right_starts_afresh(api: Api) -> None:
    """A success clears that (identity, address) pair's failures at once, not after
    they age out."""
    name = await _device(api)
    sample = [{"timestamp": NOW_US, "values": {"t": 1.0}}]
    url = f"{V1}/identities/{name}/data"
    async with _client(api, "10.0.0.9") as device:
        for _ in range(2):
            for _ in range(9):
                r = await device.post(url, json=sample, headers=_basic(name, "a typo, long one"))
                assert r.status_code == 401, r.text
            r = await device.post(url, json=sample, headers=_basic(name, PASSWORD))
            assert r.status_code == 202, r.text
