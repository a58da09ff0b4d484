"""The opt-in CPU plugin (``tests/cpu_per_test.py``) counts what a test's children burn,
running or finished, and sums the workers' lines per file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cpu_per_test import per_file, tree_cpu

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n{tail}"


def test_a_finished_child_and_a_running_one_are_counted() -> None:
    me = os.getpid()
    before = tree_cpu(me)
    subprocess.run([sys.executable, "-c", BURN.format(s=0.4, tail="")], check=True)
    after_done = tree_cpu(me)
    assert after_done - before >= 0.35  # reaped: in this process's children's times
    # a running child: counted while it runs
    child = subprocess.Popen(
        [sys.executable, "-c", BURN.format(s=0.4, tail="time.sleep(30)")],
    )
    try:
        deadline = time.monotonic() + 20
        while tree_cpu(me) - after_done < 0.35:
            assert time.monotonic() < deadline, "the running child's CPU was never counted"
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait()


def test_lines_are_summed_per_file(tmp_path: Path) -> None:
    rows = [
        {"id": "tests/a.py::t1", "cpu": 1.5, "wall": 2.0},
        {"id": "tests/b.py::t[x]", "cpu": 4.0, "wall": 1.0},
        {"id": "tests/a.py::t2", "cpu": 1.0, "wall": 0.5},
    ]
    (tmp_path / "gw0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    (tmp_path / "gw1.jsonl").write_text(json.dumps(rows[2]) + "\n")
    assert per_file(tmp_path) == [("tests/b.py", 4.0, 1.0, 1), ("tests/a.py", 2.5, 2.5, 2)]
