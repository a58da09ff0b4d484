"""The config follower (``pipeline.runtime.config_follow``) on a memory log: at start it
applies the last change of each setting already on the log (read backwards over
partitions, other audit events and refused changes between), then what comes next; a
change older than the value in force is not applied; a value already in force is not
applied again; unknown settings and values that no longer parse are skipped."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from millrace.pipeline.events import audit_event
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.runtime.config_follow import ConfigFollower, RuntimeSetting
from millrace.pipeline.topics import AUDIT

T0 = 1_767_225_600_000_000
NAMES = ("a.timeout_s", "b.timeout_s", "log_level")


def change(name: str, value: Any, ts_us: int, status: str = "ok") -> dict[str, Any]:
    """The audit event ``PATCH /config`` appends for one setting."""
    return audit_event(
        actor="user:admin",
        actor_role="admin",
        action="update",
        target_type="setting",
        target_id=name,
        ts_us=ts_us,
        before=json.dumps({name: None}),
        after=json.dumps({name: value}),
        status=status,
    )


def positive(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError("a positive integer")
    return v


class Box:
    """Settings over a dict, counting every set."""

    def __init__(self, **values: Any) -> None:
        self.values = dict(values)
        self.sets: list[tuple[str, Any]] = []

    def setting(self, name: str) -> RuntimeSetting:
        def get() -> Any:
            return self.values[name]

        def set_(v: Any) -> None:
            self.values[name] = v
            self.sets.append((name, v))

        return RuntimeSetting(get, set_, positive)

    def settings(self) -> dict[str, RuntimeSetting]:
        return {name: self.setting(name) for name in self.values}


# (setting, value, status) of the changes, other audit events between
CHANGES = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(NAMES), st.integers(1, 5), st.sampled_from(["ok", "ok", "403"])),
        st.just(("other", 0, "ok")),
    ),
    max_size=30,
)


@settings(max_examples=50, deadline=None)
@given(before=CHANGES, after=CHANGES, partitions=st.integers(1, 4), chunk=st.integers(1, 6))
def test_last_change_of_each_setting_then_what_follows(
    before: list[tuple[str, int, str]],
    after: list[tuple[str, int, str]],
    partitions: int,
    chunk: int,
) -> None:
    log = MemoryEventLog(partitions)
    pub = LogPublisher(log)

    def event(i: int, name: str, value: int, status: str) -> tuple[str, dict[str, Any]]:
        if name == "other":
            return "plc1", audit_event(
                actor="a", actor_role="admin", action="stop", target_type="connector",
                target_id="plc1", ts_us=T0 + i,
            )  # fmt: skip
        return name, change(name, value, T0 + i, status)

    def expected(changes: list[tuple[str, int, str]], start: dict[str, int]) -> dict[str, int]:
        out = dict(start)
        for name, value, status in changes:  # in time order: the last one wins
            if name in out and status == "ok":
                out[name] = value
        return out

    async def main() -> None:
        for i, c in enumerate(before):  # one at a time: appended in time order
            await pub.publish(AUDIT, [event(i, *c)])
        box = Box(**{n: 9 for n in NAMES})
        follower = ConfigFollower(log, box.settings())
        follower.follower.chunk = chunk
        await follower.start()
        want = expected(before, {n: 9 for n in NAMES})
        assert box.values == want
        # one set per setting whose last value differs from the file's
        assert len(box.sets) == sum(1 for n in NAMES if want[n] != 9)
        for i, c in enumerate(after, start=len(before)):
            await pub.publish(AUDIT, [event(i, *c)])
        while await follower.poll():
            pass
        assert box.values == expected(after, want)

    asyncio.run(main())


async def test_a_change_older_than_the_value_in_force_is_not_applied() -> None:
    log = MemoryEventLog(2)
    pub = LogPublisher(log)
    box = Box(**{"a.timeout_s": 9})
    follower = ConfigFollower(log, box.settings())
    await follower.start()
    setting = follower.settings["a.timeout_s"]
    # served here at T0 + 10 (the route's change), then the log brings an older one
    assert setting.change(4, T0 + 10)
    await pub.publish(AUDIT, [("a.timeout_s", change("a.timeout_s", 3, T0 + 5))])
    await follower.poll()
    assert box.values["a.timeout_s"] == 4
    # the route's own event: the value is in force already, nothing is set again
    await pub.publish(AUDIT, [("a.timeout_s", change("a.timeout_s", 4, T0 + 11))])
    await follower.poll()
    assert box.sets == [("a.timeout_s", 4)] and follower.applied == 0
    # a newer change from elsewhere is applied
    await pub.publish(AUDIT, [("a.timeout_s", change("a.timeout_s", 6, T0 + 20))])
    await follower.poll()
    assert box.values["a.timeout_s"] == 6 and follower.applied == 1


async def test_unknown_settings_and_bad_values_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = MemoryEventLog(1)
    pub = LogPublisher(log)
    await pub.publish(AUDIT, [("x", change("a.timeout_s", 5, T0))])
    await pub.publish(AUDIT, [("x", change("newer.setting", 5, T0 + 1))])
    await pub.publish(AUDIT, [("x", change("a.timeout_s", -1, T0 + 2))])
    bad = change("b.timeout_s", 5, T0 + 3)
    bad["after"] = json.dumps({"something": "else"})
    await pub.publish(AUDIT, [("x", bad)])
    box = Box(**{"a.timeout_s": 9, "b.timeout_s": 9})
    follower = ConfigFollower(log, box.settings())
    with caplog.at_level(logging.WARNING, "millrace.runtime.config"):
        await follower.start()
    # the last change of a.timeout_s does not parse: it stays as the file says
    assert box.values == {"a.timeout_s": 9, "b.timeout_s": 9}
    text = caplog.text
    assert "setting a.timeout_s not applied" in text and "positive" in text
    assert "setting b.timeout_s not applied" in text


def test_the_local_logs_retention_is_a_runtime_setting(tmp_path: Path) -> None:
    """``millrace run``: ``log.retention_ms`` changes what the local log's next
    enforcement deletes (the file said no retention), and GET /config's view."""
    from millrace.pipeline.cli.assembly import Assembly, local_adapters
    from millrace.pipeline.cli.assembly.settings import runtime_settings
    from millrace.pipeline.cli.config import MillraceConfig
    from millrace.pipeline.log.base import Message
    from millrace.pipeline.log.local import LocalEventLog, LocalLogConfig

    cfg = MillraceConfig(data_dir=tmp_path, log=LocalLogConfig(partitions=1, segment_bytes=200))
    asm = Assembly(cfg, local_adapters(cfg))
    log = asm.log
    assert isinstance(log, LocalEventLog)
    now = [T0]
    log._clock = lambda: now[0]
    log.open()
    try:
        for _ in range(10):
            log.append_sync("t", [Message(b"x" * 100)])
        now[0] += 3_600_000_000
        assert log.enforce_retention() == 0  # no retention in the file
        settings_ = runtime_settings(asm)
        with pytest.raises(ValueError):
            settings_["log.retention_ms"].parse(-1)
        assert settings_["log.retention_ms"].change(60_000, T0)
        assert cfg.log.retention_ms == 60_000 and settings_["log.retention_ms"].get() == 60_000
        assert log.enforce_retention() > 0
        settings_["log.retention_bytes"].change(10_000, T0)
        assert (log.config.retention_ms, log.config.retention_bytes) == (60_000, 10_000)
    finally:
        log.close_sync()
        asm.close()
