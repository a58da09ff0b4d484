"""Bounded requests at the application: authentication from the headers before any
body is read, body limits per route while the body streams in (413), and the readings
bound of ingest (400 naming ``body``).

The bodies come from generators that count what the app pulled, so "not read" is
measured, not assumed (httpx's ASGI transport pulls the body only when the app calls
``receive``)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from millrace.api.context import ApiSettings
from millrace.api.limits import (
    DEFAULT_MAX_BODY,
    READING_BYTES,
    SAMPLE_BYTES,
    RequestLimits,
    ingest_body_limit,
)
from millrace.api.permissions import SIGN_IN_PATHS
from millrace.pipeline.identities.config import ProvisioningConfig, RegistryConfig
from millrace.pipeline.topics import AUDIT
from tests.api.conftest import NOW_US, V1, Api, MakeApi, assert_bad_field, error_of, uid

MIB = 1024 * 1024
HUGE = 200 * MIB


class Counted:
    """A streamed (chunked) request body of ``total`` bytes that counts what was read."""

    def __init__(self, total: int, chunk: int = MIB) -> None:
        self.total = total
        self.chunk = b"x" * chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            self.pulled += len(self.chunk)
            yield self.chunk


def assert_too_large(r: Any, limit: int) -> None:
    assert r.status_code == 413, r.text
    err = error_of(r)
    assert err["code"] == "body_too_large"
    assert err["details"][0]["field"] == "body"
    assert err["details"][0]["limit"] == limit


async def provisioned(api: Api) -> tuple[str, str]:
    """A provisioned device: (identity, token)."""
    name = uid("dev")
    r = await api.client.post(
        f"{V1}/identities", json={"identity": name}, headers=api.auth(api.operator)
    )
    assert r.status_code == 201, r.text
    r = await api.client.post(f"{V1}/provision", json={"identity": name})
    assert r.status_code == 201, r.text
    return name, r.json()["token"]


def test_the_ingest_limit_is_what_the_ingest_rules_let_a_request_carry() -> None:
    limit = ingest_body_limit(10_000, 100_000)
    assert limit == 10_000 * SAMPLE_BYTES + 100_000 * READING_BYTES == 18_480_000
    assert RequestLimits().ingest_max_body_bytes == limit
    # the largest batch the rules allow, pretty-printed, fits: 10,000 samples with 10
    # readings of 128-character names and the longest number text each
    name = "s" * 125
    values = {f"{name}{i:03d}": -2.2250738585072014e-308 for i in range(10)}
    sample = {"timestamp": -(2**63), "quality": -(2**31), "values": values}
    one = json.dumps(sample, indent=4)
    assert 10_000 * (len(one) + 2) <= limit


async def test_200mb_with_a_garbage_credential_is_401_without_reading_the_body(
    api: Api,
) -> None:
    body = Counted(HUGE)
    r = await api.client.post(
        f"{V1}/identities/{uid()}/data",
        content=body,
        headers={"Authorization": "Bearer garbage", "content-type": "application/json"},
    )
    assert r.status_code == 401, r.text
    assert body.pulled <= MIB  # at most the chunk the transport holds ready
    assert api.log.appended == {}


async def test_200mb_with_a_valid_device_credential_is_413_after_the_limit(
    make_api: MakeApi,
) -> None:
    api = await make_api(registry=RegistryConfig(provisioning=ProvisioningConfig()))
    name, token = await provisioned(api)
    body = Counted(HUGE)
    r = await api.client.post(
        f"{V1}/identities/{name}/data",
        content=body,
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    limit = RequestLimits().ingest_max_body_bytes
    assert_too_large(r, limit)
    assert body.pulled <= limit + MIB
    assert api.log.appended.get("telemetry", 0) == 0


async def test_a_declared_length_over_the_limit_is_413_before_a_byte_is_read(
    make_api: MakeApi,
) -> None:
    limits = RequestLimits(ingest_max_body_bytes=64 * 1024)
    api = await make_api(settings=ApiSettings(limits=limits))
    body = Counted(HUGE)
    r = await api.client.post(
        f"{V1}/identities/{uid()}/data",
        content=body,
        headers={
            **api.auth(api.operator),
            "content-type": "application/json",
            "content-length": str(HUGE),
        },
    )
    assert_too_large(r, 64 * 1024)
    assert body.pulled == 0


async def test_a_chunked_body_over_the_limit_is_413(make_api: MakeApi) -> None:
    limits = RequestLimits(ingest_max_body_bytes=64 * 1024)
    api = await make_api(settings=ApiSettings(limits=limits))
    body = Counted(10 * MIB, chunk=16 * 1024)
    r = await api.client.post(
        f"{V1}/identities/{uid()}/data",
        content=body,
        headers={**api.auth(api.operator), "content-type": "application/json"},
    )
    assert_too_large(r, 64 * 1024)
    assert body.pulled <= 64 * 1024 + 16 * 1024
    # a batch under the limit still goes in
    assert (await api.ingest(uid(), [{"timestamp": NOW_US, "values": {"x": 1}}])).status_code == 202


async def test_other_routes_take_small_bodies(api: Api) -> None:
    big = b'{"identity": "' + b"a" * (2 * MIB) + b'"}'
    r = await api.post_raw("/identities", big)
    assert_too_large(r, DEFAULT_MAX_BODY)
    # a bad key: 401, whatever the size
    body = Counted(HUGE)
    r = await api.client.post(
        f"{V1}/identities",
        content=body,
        headers={"Authorization": "Bearer mr_wrong", "content-type": "application/json"},
    )
    assert r.status_code == 401 and body.pulled <= MIB


async def test_the_413_is_audited(api: Api) -> None:
    r = await api.post_raw("/identities", b"[" + b"1," * MIB + b"1]")
    assert r.status_code == 413
    assert api.log.appended.get(AUDIT, 0) == 1


async def test_provision_refuses_from_the_headers_and_takes_a_small_body(
    make_api: MakeApi,
) -> None:
    off = await make_api(registry=RegistryConfig(provisioning=ProvisioningConfig(enabled=False)))
    body = Counted(HUGE)
    r = await off.client.post(
        f"{V1}/provision", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 403 and error_of(r)["code"] == "provisioning_disabled"
    assert body.pulled <= MIB
    fenced = ProvisioningConfig(ip_allowlist=["10.1.0.0/16"])
    fenced_api = await make_api(registry=RegistryConfig(provisioning=fenced))
    body = Counted(HUGE)
    r = await fenced_api.client.post(
        f"{V1}/provision", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 403 and error_of(r)["code"] == "address_not_allowed"
    assert body.pulled <= MIB
    on = await make_api(registry=RegistryConfig(provisioning=ProvisioningConfig()))
    r = await on.post_raw("/provision", b'{"identity": "' + b"d" * 20_000 + b'"}', key=None)
    assert_too_large(r, 16 * 1024)
    # and a bad body is still named
    r = await on.post_raw("/provision", b'{"auth_type": "carrier pigeon"}', key=None)
    assert_bad_field(r, "body.auth_type")


async def test_one_sample_with_200000_signals_is_400_naming_body(api: Api) -> None:
    values = {f"s{i}": i for i in range(200_000)}
    r = await api.ingest(uid(), [{"timestamp": NOW_US, "values": values}])
    assert_bad_field(r, "body")
    assert "200000 readings; at most 100000" in error_of(r)["message"]
    assert api.log.appended == {}


async def test_readings_are_counted_over_all_samples(make_api: MakeApi) -> None:
    api = await make_api(settings=ApiSettings(max_batch_readings=10))
    five = {f"s{i}": i for i in range(5)}
    ok = [{"timestamp": NOW_US - i, "values": five} for i in range(2)]
    assert (await api.ingest(uid(), ok)).status_code == 202
    over = [{"timestamp": NOW_US - i, "values": five} for i in range(3)]
    r = await api.ingest(uid(), over)
    assert_bad_field(r, "body")
    assert "15 readings; at most 10" in error_of(r)["message"]


@pytest.mark.parametrize("text", ["NaN", "-Infinity", "1e400", str(2**64), str(-(2**63) - 1)])
async def test_numbers_orjson_refuses_or_rounds_still_name_their_field(api: Api, text: str) -> None:
    body = f'[{{"timestamp": {NOW_US}, "values": {{"x": {text}}}}}]'.encode()
    assert_bad_field(await api.post_raw(f"/identities/{uid()}/data", body), "body[0].values.x")


async def test_a_large_batch_is_parsed_off_the_loop_and_accepted(api: Api) -> None:
    values = {f"signal_{i:05d}": i * 0.5 for i in range(20_000)}
    r = await api.ingest(uid(), [{"timestamp": NOW_US, "values": values}])
    assert r.status_code == 202, r.text
    assert r.json()["readings"] == 20_000


async def test_every_write_route_refuses_a_bad_credential_before_reading_the_body(
    api: Api,
) -> None:
    """Issue 12: on every route, authentication is decided from the headers (the
    operations are taken from the app's OpenAPI document)."""
    checked = 0
    for template, operations in api.app.openapi()["paths"].items():
        if template == f"{V1}/provision" or template in SIGN_IN_PATHS:
            continue  # open: the credential is in the body (bounded: 413)
        path = re.sub(r"\{[^}]+\}", "x1", template)
        for method in {"post", "put", "patch", "delete"} & set(operations):
            body = Counted(HUGE)
            r = await api.client.request(
                method.upper(),
                path,
                content=body,
                headers={"Authorization": "Bearer mr_wrong", "content-type": "application/json"},
            )
            assert r.status_code == 401, (method, path, r.text)
            assert body.pulled <= MIB, (method, path)
            checked += 1
    assert checked >= 20
