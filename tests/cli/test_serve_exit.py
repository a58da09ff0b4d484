"""A serving command (``run``, ``process``, ``connect``, ``api``) leaves the interpreter's
exit nothing to collect (``pipeline/cli/main.py`` ``_serve``): the collection Python
runs as it finalizes walked every object of the engine, 1.5-4 s of one CPU after the
last stage stopped. Checked in a fresh interpreter (it freezes the whole process),
with a stand-in engine that builds many objects, unfreezes them (as the GC policy does
at stop) and even fails: the objects are frozen whatever the ending."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import asyncio, gc, json, sys
from millrace.pipeline.cli.main import _serve

kept = []

async def engine(fail):
    kept.extend([{"n": i}] for i in range(200_000))  # the engine's objects
    gc.unfreeze()  # as the GC policy does at stop
    if fail:
        raise RuntimeError("the engine failed")

fail = sys.argv[1] == "fail"
try:
    _serve(engine(fail))
    raised = False
except RuntimeError:
    raised = True
print(json.dumps({"frozen": gc.get_freeze_count(), "raised": raised}))
"""


def _run(how: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, how], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_the_engine_objects_are_frozen_when_it_ends() -> None:
    out = _run("ok")
    assert out["raised"] is False
    # the 200,000 lists at least (a dict of atoms is not tracked by the collector)
    assert isinstance(out["frozen"], int) and out["frozen"] >= 200_000


def test_and_when_it_fails() -> None:
    out = _run("fail")
    assert out["raised"] is True
    assert isinstance(out["frozen"], int) and out["frozen"] >= 200_000
