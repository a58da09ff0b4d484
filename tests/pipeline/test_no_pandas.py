"""pandas kept out of millrace's processes (pipeline/no_pandas.py): pyarrow's
conversions and chDB's Arrow inserts and reads work without it, pandas is never
imported, and where pandas was imported first nothing changes.

Each check runs in a fresh interpreter (the pytest process may hold pandas already)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

STORE = """
import json, sys
from millrace.pipeline.no_pandas import skip_pandas
skip_pandas()
skip_pandas()  # twice: one finder
import pyarrow as pa
from millrace.projections.store.chdb import ChdbStore

store = ChdbStore(sys.argv[1])
store.execute("CREATE TABLE t (a Int64, m Map(String, String)) ENGINE = MergeTree ORDER BY a")
schema = pa.schema([("a", pa.int64()), ("m", pa.map_(pa.string(), pa.string()))])
rows = pa.Table.from_pydict({"a": [3, 1, 2], "m": [[("x", "y")], [], [("k", "v")]]}, schema=schema)
store.insert_arrow("INSERT INTO t SELECT * FROM {input}", rows)
got = store.query_arrow("SELECT a, m FROM t ORDER BY a").to_pylist()
empty = store.query_arrow("SELECT a FROM t WHERE a > 10")
try:
    import pandas  # noqa: F401
    refused = False
except ImportError:
    refused = True
print(json.dumps({
    "rows": [[r["a"], r["m"]] for r in got],
    "empty_rows": empty.num_rows,
    "pandas_loaded": "pandas" in sys.modules,
    "import_refused": refused,
    "finders": sum(type(f).__name__ == "_HidePandas" for f in sys.meta_path),
}))
"""

AFTER_PANDAS = """
import json, sys
import pandas
from millrace.pipeline.no_pandas import skip_pandas
skip_pandas()
import pyarrow as pa
frame = pa.table({"a": [1, 2]}).to_pandas()
print(json.dumps({"finders": sum(type(f).__name__ == "_HidePandas" for f in sys.meta_path),
                  "sum": int(frame["a"].sum())}))
"""


def _run(code: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_arrow_in_and_out_of_chdb_without_pandas(tmp_path: Path) -> None:
    out = _run(STORE, str(tmp_path / "chdb"))
    assert out["rows"] == [[1, []], [2, [["k", "v"]]], [3, [["x", "y"]]]]
    assert out["empty_rows"] == 0
    assert out["pandas_loaded"] is False
    assert out["import_refused"] is True
    assert out["finders"] == 1


def test_a_process_that_imported_pandas_keeps_it() -> None:
    assert _run(AFTER_PANDAS) == {"finders": 0, "sum": 3}
