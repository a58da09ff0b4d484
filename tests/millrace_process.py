"""``millrace run --config`` as a real process, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def millrace_run(config: Path, data_dir: Path, api_key: str) -> Iterator[subprocess.Popen[str]]:
    """Start ``millrace run`` with ``api_key`` as MILLRACE_API_KEY; on leaving, stop it
    and assert it exited cleanly (its output in the message)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "millrace.pipeline.cli.main",
            "run",
            "--config",
            str(config),
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        env={**os.environ, "MILLRACE_API_KEY": api_key},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    except BaseException:
        # the test failed inside: what the engine said is the first thing to read
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
        print(f"millrace run exited {proc.returncode}; its output:\n{out[-8000:]}")
        raise
    proc.terminate()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-4000:]
