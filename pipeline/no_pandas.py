"""pandas kept out of millrace's processes: :func:`skip_pandas`.

Two libraries import pandas only to find out whether it is there: pyarrow, the first
time a process converts Python values to Arrow (``pa.array`` on a list: is the list a
pandas Series?), and chDB, at every insert from an Arrow table (``Python(...)``: is it
a DataFrame?) and in its "ArrowTable" output. Importing it costs about 0.5 s of CPU
(more on a busy machine) in every ``millrace`` process and every worker it starts, for
integrations millrace never uses. Both libraries take an ImportError as "no pandas" and
go on without it. :func:`skip_pandas` makes ``import pandas`` fail in the process that
calls it: the command line (``millrace.pipeline.cli.main``) and the workers it spawns
call it first thing. A program that embeds millrace and uses pandas imports it before
(then this is a no-op) or never calls it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["skip_pandas"]


class _HidePandas(MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(
                f"{fullname}: not loaded in millrace processes (pipeline/no_pandas.py)",
                name=fullname,
            )
        return None


def skip_pandas() -> None:
    """Hide pandas from this process for good (a no-op where pandas is already
    imported)."""
    if "pandas" in sys.modules or any(isinstance(f, _HidePandas) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _HidePandas())
