"""The operations API in-process: pause/resume (lag grows, then drains, nothing lost),
health probes without a key (ready fails on a closed store), /metrics parsed by
prometheus_client's parser, system info and metrics, logs (filters, SSE), config."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from millrace.api.app import create_app
from millrace.api.logring import LogRing
from millrace.api.operations import Operations
from millrace.api.prom import EngineMetrics
from millrace.pipeline.errors import StoreError
from millrace.pipeline.runtime.config_follow import ConfigFollower, RuntimeSetting
from millrace.projections.store.chdb import ChdbStore
from tests.api.conftest import NOW_US, V1, Api, MakeApi, uid
from tests.api.test_stream_routes import AsgiStream


class BreakableStore(ChdbStore):
    """A real chDB store whose new sessions fail while ``broken`` (the server gone)."""

    broken = False

    def _checkout(self) -> tuple[Any, int]:
        if self.broken:
            self.close()  # drop idle sessions: every query needs a new one
            raise StoreError("the store is gone")
        return super()._checkout()


def lag_of(api: Api) -> int:
    """Records of the test's log the runtime has not folded (counted from the log)."""
    rt = api.runtime
    return sum(
        len(api.log._partition(tp.topic, tp.partition)) - rt.position(tp)
        for tp in rt.topic_partitions()
    )


def with_ops(api: Api, **kwargs: Any) -> Operations:
    """Operations over the test app's runtime, and a new app/client that has them."""
    rt = api.runtime
    metrics = EngineMetrics(
        lambda: {
            "runtime": asdict(rt.stats),
            "lag_records": lag_of(api),
            "paused": rt.suspended,
            "published": 0,
            "connectors": [
                {"name": "plc1", "current_state": "running", "metrics": {"reconnects": 2}}
            ],
        }
    )
    rt.on_batch = metrics.observe_batch
    ops = Operations(
        logs=kwargs.pop("logs", LogRing(1000)),
        metrics=metrics,
        pause=rt.suspend,
        resume=rt.resume,
        paused=lambda: rt.suspended,
        lag=lambda: lag_of(api),
        **kwargs,
    )
    api.ctx.ops = ops
    api.app = create_app(api.ctx)
    api.client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app, raise_app_exceptions=False),
        base_url="http://t",
    )
    return ops


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    a = await make_api()
    yield a  # type: ignore[misc]
    await a.client.aclose()


def samples(n: int, start: int) -> list[dict[str, Any]]:
    return [{"timestamp": NOW_US - 10_000_000 + start + i, "values": {"v": 1.0}} for i in range(n)]


async def readings(api: Api, identity: str) -> int:
    r = api.ctx.store.execute(
        "SELECT count() FROM millrace.readings WHERE identity = {i:String}", {"i": identity}
    )
    return int(r.rows[0][0])


async def test_pause_lag_grows_resume_drains_nothing_lost(api: Api) -> None:
    with_ops(api)
    ident = uid("pause")
    sent = 0
    for k in range(3):
        assert (await api.ingest(ident, samples(5, k * 5))).status_code == 202
        sent += 5
    await api.sync()
    assert await readings(api, ident) == sent
    r = await api.client.post(f"{V1}/pipeline/pause", headers=api.auth(api.operator))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["paused"] is True
    lags = []
    for k in range(3, 7):
        assert (await api.ingest(ident, samples(5, k * 5))).status_code == 202
        sent += 5
        assert await api.runtime.run_until_idle() == 0  # folds nothing while paused
        lags.append(lag_of(api))
    assert lags == sorted(lags) and lags[-1] >= lags[0] + 3, lags
    assert await readings(api, ident) == 15  # the log accepted, the projections did not move
    status = (await api.get("/system/info")).json()["data"]
    assert status["paused"] is True
    r = await api.client.post(f"{V1}/pipeline/resume", headers=api.auth(api.operator))
    assert r.status_code == 200 and r.json()["data"]["paused"] is False
    await api.sync()
    assert lag_of(api) == 0
    assert await readings(api, ident) == sent == 35
    audits = api.ctx.store.execute(
        "SELECT DISTINCT action, after FROM millrace.audits WHERE target_type = 'pipeline' "
        "AND status = 'ok' AND action IN ('pause', 'resume')"  # not a worker's 'held' answer
    ).rows
    assert {(a, json.loads(b)["paused"]) for a, b in audits} >= {("pause", True), ("resume", False)}


async def test_pause_needs_pipeline_control(api: Api) -> None:
    with_ops(api)
    r = await api.client.post(f"{V1}/pipeline/pause", headers=api.auth(api.viewer))
    assert r.status_code == 403 and "pipeline:control" in r.text
    assert not api.runtime.suspended


async def test_pause_without_runtime_is_409(api: Api) -> None:
    ops = with_ops(api)
    ops.pause = ops.resume = None
    r = await api.client.post(f"{V1}/pipeline/pause", headers=api.auth(api.operator))
    assert r.status_code == 409 and "millrace process" in r.text


async def test_health_without_key_and_ready_names_checks(api: Api) -> None:
    with_ops(api)
    live = await api.client.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = await api.client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"log", "store", "lag"}


async def test_ready_fails_while_the_store_is_unavailable(
    make_api: MakeApi, chdb_path: str | None
) -> None:
    store = BreakableStore(chdb_path)
    api = await make_api(store=store)
    with_ops(api)
    assert (await api.client.get("/health/ready")).status_code == 200
    store.broken = True
    r = await api.client.get("/health/ready")
    assert r.status_code == 503, r.text
    checks = r.json()["checks"]
    assert checks["store"]["ok"] is False and checks["log"]["ok"] is True
    assert "gone" in checks["store"]["detail"]
    store.broken = False
    assert (await api.client.get("/health/ready")).status_code == 200
    await api.client.aclose()
    store.close()


async def test_ready_fails_over_the_lag_bound(api: Api) -> None:
    with_ops(api, ready_max_lag=2)
    await api.runtime.suspend()
    await api.ingest(uid(), samples(1, 0))
    await api.ingest(uid(), samples(1, 0))
    await api.ingest(uid(), samples(1, 0))
    r = await api.client.get("/health/ready")
    assert r.status_code == 503 and r.json()["checks"]["lag"]["ok"] is False
    api.runtime.resume()


async def test_metrics_parse_with_expected_families(api: Api) -> None:
    with_ops(api)
    assert (await api.client.get("/metrics")).status_code == 401
    await api.ingest(uid(), samples(3, 0))
    await api.sync()
    await api.get("/identities")
    r = await api.client.get("/metrics", headers=api.auth(api.viewer))
    assert r.status_code == 200, r.text
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name in (
        "millrace_ingest_readings",
        "millrace_ingest_batches",
        "millrace_runtime_lag_records",
        "millrace_runtime_batch_duration_seconds",
        "millrace_api_request_duration_seconds",
        "millrace_connector_state",
        "millrace_connector_reconnects",
        "millrace_deadletters",
        "millrace_store_errors",
        "millrace_alarm_runner_lag_records",
    ):
        assert name in families, (name, sorted(families))
    readings = families["millrace_ingest_readings"].samples[0].value
    assert readings >= 3
    routes = {
        s.labels["route"]
        for s in families["millrace_api_request_duration_seconds"].samples
        if s.name.endswith("_count")
    }
    assert "/api/v1/identities" in routes or "/identities" in routes, routes
    state = {s.labels["state"]: s.value for s in families["millrace_connector_state"].samples}
    assert state["running"] == 1 and state["stopped"] == 0
    batches = [
        s
        for s in families["millrace_runtime_batch_duration_seconds"].samples
        if s.name.endswith("_count")
    ]
    assert batches[0].value >= 1


async def test_metrics_open_needs_no_key(api: Api) -> None:
    with_ops(api, metrics_open=True)
    assert (await api.client.get("/metrics")).status_code == 200


async def test_system_info_and_hourly_metrics(api: Api) -> None:
    with_ops(api, deployment="embedded", version="9.9.9")
    info = (await api.get("/system/info")).json()["data"]
    assert info["version"] == "9.9.9" and info["deployment"] == "embedded"
    assert info["store_version"] and not info["store_version"].startswith("unavailable")
    a, b = uid("m"), uid("m")
    hour = 3_600_000_000
    # an hour no other test writes into: the figures are system-wide, and the session's
    # chDB holds what earlier tests of this worker ingested around "now"
    base = (NOW_US // hour) * hour - 1000 * 24 * hour
    for ident, n in ((a, 4), (b, 2)):
        body = [{"timestamp": base + i, "values": {"x": 1.0, "y": 2.0}} for i in range(n)]
        assert (await api.ingest(ident, body)).status_code == 202
    await api.sync()
    r = await api.get(
        "/system/metrics",
        interval="hourly",
        start_time=str(base // 1_000_000),
        end_time=str((base + hour) // 1_000_000),
    )
    assert r.status_code == 200, r.text
    points = r.json()["points"]
    assert points == [{"time_us": base, "datapoints": 4, "messages": 12}]
    bad = await api.get("/system/metrics", interval="weekly")
    assert bad.status_code == 400 and "interval" in bad.text


async def test_logs_filters_and_stream(api: Api) -> None:
    ring = LogRing(100)
    logger = logging.getLogger("millrace.test.ops")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(ring)
    try:
        with_ops(api, logs=ring)
        logger.info("pump %s started", "p1")
        logger.warning("pump p2 overheating")
        logging.getLogger("millrace.test.other").addHandler(ring)
        logging.getLogger("millrace.test.other").error("other failure")
        r = await api.get("/logs", key="admin", level="warning")
        msgs = [x["message"] for x in r.json()["data"]]
        assert msgs == ["pump p2 overheating", "other failure"]
        r = await api.get("/logs", key="admin", logger="millrace.test.ops", text="STARTED")
        assert [x["message"] for x in r.json()["data"]] == ["pump p1 started"]
        assert (await api.get("/logs", key="admin", level="LOUD")).status_code == 400
        assert (await api.get("/logs", key="operator")).status_code == 403

        stream = AsgiStream(api, "level=error&since=0", {"authorization": f"Bearer {api.admin}"})
        stream.scope["path"] = f"{V1}/logs/stream"
        stream.scope["raw_path"] = f"{V1}/logs/stream".encode()
        status, headers = await stream.start()
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        first = await stream.next()  # the backlog since 0, errors only
        assert first["event"] == "log" and first["data"]["message"] == "other failure"
        logger.info("not an error")
        logger.error("live failure")
        live = await stream.next()
        assert live["data"]["message"] == "live failure" and live["data"]["level"] == "ERROR"
        await stream.disconnect()
        # browsers' EventSource: the key as ?access_token= (the live stream's rule)
        stream = AsgiStream(api, f"since=0&level=error&access_token={api.admin}")
        stream.scope["path"] = f"{V1}/logs/stream"
        stream.scope["raw_path"] = f"{V1}/logs/stream".encode()
        status, _ = await stream.start()
        assert status == 200
        assert (await stream.next())["data"]["message"] == "other failure"
        await stream.disconnect()
    finally:
        logger.removeHandler(ring)
        logging.getLogger("millrace.test.other").removeHandler(ring)


async def test_config_masked_and_patch_audited(api: Api) -> None:
    value = {"level": "INFO"}

    def parse(v: Any) -> str:
        if v not in ("INFO", "DEBUG"):
            raise ValueError("INFO or DEBUG")
        return str(v)

    with_ops(
        api,
        config=lambda: {"distributed": {"clickhouse_url": "http://u:***@h"}},
        settings={
            "log_level": RuntimeSetting(
                lambda: value["level"], lambda v: value.update(level=v), parse
            )
        },
    )
    r = await api.get("/config", key="admin")
    assert r.status_code == 200
    assert r.json()["data"]["runtime"] == {"log_level": "INFO"}
    patch = await api.client.patch(
        f"{V1}/config", json={"log_level": "LOUD"}, headers=api.auth(api.admin)
    )
    assert patch.status_code == 400 and "body.log_level" in patch.text
    patch = await api.client.patch(f"{V1}/config", json={"nope": 1}, headers=api.auth(api.admin))
    assert patch.status_code == 400 and "body.nope" in patch.text
    patch = await api.client.patch(
        f"{V1}/config", json={"log_level": "DEBUG"}, headers=api.auth(api.admin)
    )
    assert patch.status_code == 200 and value["level"] == "DEBUG"
    await api.sync()
    rows = api.ctx.store.execute(
        "SELECT before, after FROM millrace.audits WHERE target_type = 'setting' "
        "AND target_id = 'log_level' ORDER BY ts DESC LIMIT 1"
    ).rows
    assert rows and "INFO" in rows[0][0] and "DEBUG" in rows[0][1]


async def test_no_secret_reaches_a_log_record(api: Api) -> None:
    """Requests carrying keys, tokens and passwords, and log lines formatting them:
    neither the ring nor a stream handler on the root logger prints any of them."""
    import io

    from millrace.api import logring

    ring = logring.install()
    out = io.StringIO()
    printed = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(printed)
    logring.install()  # the scrub filter on the new handler too
    old_level = root.level
    root.setLevel(logging.INFO)
    secrets = [api.admin, "hunter2-Pa55word!", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"]
    try:
        with_ops(api, logs=ring)
        await api.client.get(f"{V1}/identities", headers={"Authorization": f"Bearer {secrets[1]}"})
        await api.client.get(f"{V1}/stream", params={"access_token": secrets[2]})
        await api.client.post(f"{V1}/login", json={"username": "admin", "password": secrets[1]})
        await api.get("/identities", key="admin")
        lg = logging.getLogger("millrace.test.secrets")
        lg.warning("connect failed password=%s", secrets[1])
        lg.warning("request %s", {"token": secrets[2], "api_key": secrets[0]})
        lg.warning("header Authorization: Bearer %s", secrets[0])
        lg.error("url ?access_token=%s&x=1", secrets[2])
        try:
            raise ValueError(f"bad password: {secrets[1]}")
        except ValueError:
            lg.exception("failed")
        records = (await api.get("/logs", key="admin", limit=5000)).json()["data"]
        text = out.getvalue() + json.dumps(records)
        assert "connect failed" in text and "failed" in text
        for secret in secrets:
            assert secret not in text
    finally:
        root.removeHandler(printed)
        root.setLevel(old_level)


async def test_settings_changes_outlive_a_restart(api: Api) -> None:
    """PATCH /config is audited on the log; a new process's config follower applies
    the last audited value of each setting (``pipeline.runtime.config_follow``)."""
    name = f"test.setting.{uid()}"
    value = {"v": 1}

    def positive(v: Any) -> int:
        if not isinstance(v, int) or v < 1:
            raise ValueError("a positive integer")
        return v

    def setting(box: dict[str, Any]) -> dict[str, RuntimeSetting]:
        return {name: RuntimeSetting(lambda: box["v"], lambda v: box.update(v=v), positive)}

    with_ops(api, settings=setting(value))
    for v in (5, 7):
        r = await api.client.patch(f"{V1}/config", json={name: v}, headers=api.auth(api.admin))
        assert r.status_code == 200, r.text
    fresh = {"v": 1}  # what a restarted process starts with
    follower = ConfigFollower(api.log, setting(fresh))
    await follower.start()
    assert fresh["v"] == 7 and follower.applied == 1


def test_running_configuration_masks_secrets() -> None:
    from millrace.pipeline.cli.assembly.operations import masked

    cfg = {
        "distributed": {"clickhouse_url": "http://millrace:pw-123@ch:8123/db"},
        "connections": {
            "broker": {"host": "mq", "password": "mq-secret", "client_secret": "c-s"},
            "plc": {"host": "10.0.0.5", "token": None},
        },
        "list": [{"api_key": "k-1"}, "tcp://u:p4ss@h:1"],
        "auth": {"password_min_length": 12},
    }
    out = masked(cfg)
    text = json.dumps(out)
    for secret in ("pw-123", "mq-secret", "c-s", "k-1", "p4ss"):
        assert secret not in text
    assert out["distributed"]["clickhouse_url"] == "http://millrace:***@ch:8123/db"
    assert out["connections"]["plc"] == {"host": "10.0.0.5", "token": None}
    assert out["connections"]["broker"]["host"] == "mq"


async def test_read_your_writes_does_not_wait_while_paused(api: Api) -> None:
    from millrace.api.operations import skip_while_paused

    calls: list[str] = []

    async def wait(topic: str) -> bool:
        calls.append(topic)
        return True

    waiter = skip_while_paused(wait, lambda: api.runtime.suspended)
    assert await waiter("identity") is True and calls == ["identity"]
    await api.runtime.suspend()
    assert await waiter("identity") is False and calls == ["identity"]
    api.runtime.resume()
    assert await waiter("identity") is True and calls == ["identity", "identity"]
