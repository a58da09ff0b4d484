"""The TaskRunner against a memory log: it runs a created task, reports per-file
failures, resumes a task it left running after a restart (from the log, with the
files its events say were done), and a retry redoes the failed files only."""

from __future__ import annotations

import asyncio
from typing import Any

from millrace.pipeline.codec import default_codec
from millrace.pipeline.log.memory import MemoryEventLog
from millrace.pipeline.publisher import LogPublisher
from millrace.pipeline.tasks import TaskContext, TaskKinds, TaskRunner, create_task, retry_task


class Files:
    """A handler over three files; ``bad`` fail, ``block`` waits for the stop."""

    def __init__(self) -> None:
        self.bad: set[str] = set()
        self.block: str | None = None
        self.calls: list[str] = []

    async def __call__(self, ctx: TaskContext) -> None:
        for name in ("a", "b", "c"):
            if name in ctx.done:
                continue
            if name == self.block:
                await ctx.stop.wait()
                return
            self.calls.append(name)
            if name in self.bad:
                await ctx.file_failed(name, f"{name}: broken")
                continue
            await ctx.progress(file=name, events=1)
            await ctx.file_completed(name, {"events": 2, "readings": 3})


async def run_until(runner: TaskRunner, done: Any) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    for _ in range(2000):
        await asyncio.sleep(0.005)  # the runner's own fold first (it starts from scratch)
        await runner.catch_up()
        if done():
            break
    stop.set()
    await task


def make() -> tuple[MemoryEventLog, LogPublisher, Files, TaskKinds]:
    log = MemoryEventLog(partitions=2)
    codec = default_codec()
    kinds, files = TaskKinds(), Files()
    kinds.register("restore", files)
    return log, LogPublisher(log, codec), files, kinds


async def test_runs_fails_files_and_retry_redoes_them_only() -> None:
    log, pub, files, kinds = make()
    files.bad = {"b"}
    runner = TaskRunner(log, pub, kinds, poll_s=0.01)
    tid = await create_task(pub, "restore", {"x": 1}, actor="ops")
    await run_until(runner, lambda: runner.states.get(tid, {}).get("status") == "failed")
    s = runner.states[tid]
    assert s["status"] == "failed" and "b" in s["error"]
    assert s["files_failed"] == {"b": "b: broken"}
    assert s["counts"] == {"events": 4, "readings": 6}
    files.bad = set()
    await retry_task(pub, tid, "restore", actor="ops")
    await run_until(runner, lambda: runner.states[tid]["status"] == "completed")
    assert files.calls == ["a", "b", "c", "b"]
    assert runner.states[tid]["counts"] == {"events": 6, "readings": 9}
    assert runner.states[tid]["attempts"] == 2


async def test_left_running_resumes_after_restart_from_the_log() -> None:
    log, pub, files, kinds = make()
    files.block = "b"
    first = TaskRunner(log, pub, kinds, poll_s=0.01)
    tid = await create_task(pub, "restore", {}, actor="ops")
    await run_until(first, lambda: "a" in first.states.get(tid, {}).get("files_done", {}))
    assert first.states[tid]["status"] == "running"
    files.block = None
    second = TaskRunner(log, pub, kinds, poll_s=0.01)  # a restart: nothing in memory
    await run_until(second, lambda: second.states.get(tid, {}).get("status") == "completed")
    assert files.calls == ["a", "b", "c"]
    assert second.states[tid]["counts"] == {"events": 6, "readings": 9}


async def test_unknown_kind_stays_pending() -> None:
    log, pub, _, kinds = make()
    runner = TaskRunner(log, pub, kinds, poll_s=0.01)
    tid = await create_task(pub, "nobody-knows", {})
    await run_until(runner, lambda: tid in runner.states)
    assert runner.states[tid]["status"] == "pending"
