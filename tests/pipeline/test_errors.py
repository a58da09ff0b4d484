"""One exception tree (issue 13, item 6): every exception class defined in the five
packages ends in ``Error`` and descends from ``MillraceError``, and the tree drawn in
``pipeline/errors.py`` names each of them. There is no allow-list: ``ApiError`` is in the
tree (argued in ``pipeline/errors.py``), private ones too."""

from __future__ import annotations

import builtins
import importlib
import inspect
import pkgutil
import re

import pytest

from millrace.pipeline import errors
from millrace.pipeline.errors import MillraceError, StoreError

PACKAGES = (
    "millrace.pipeline",
    "millrace.connectors",
    "millrace.projections",
    "millrace.api",
    "millrace.schemas",
)

#: modules that import an optional protocol library (asyncua, pymodbus, aiomqtt) are
#: still walked: ``make test`` installs every extra, so none is skipped here


def _modules() -> list[str]:
    names: list[str] = []
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        names.append(pkg)
        names += [m.name for m in pkgutil.walk_packages(mod.__path__, f"{pkg}.")]
    return sorted(names)


def _exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _modules():
        mod = importlib.import_module(name)  # a module that cannot import fails the test
        for value in vars(mod).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
            ):
                found[f"{name}.{value.__qualname__}"] = value
    return found


EXCEPTIONS = _exceptions()


def test_the_walk_finds_the_known_errors() -> None:
    """The walk itself works: it sees errors of every package."""
    found = {c.__name__ for c in EXCEPTIONS.values()}
    assert {"MillraceError", "StoreError", "FrameError", "ApiError", "QueryRejectedError"} <= found
    assert {"CodecError", "TopicError", "ClusterSqlError", "StreamLimitError"} <= found
    assert len(EXCEPTIONS) >= 35


@pytest.mark.parametrize("where", sorted(EXCEPTIONS))
def test_every_exception_ends_in_error_and_is_a_millrace_error(where: str) -> None:
    cls = EXCEPTIONS[where]
    assert cls.__name__.endswith("Error"), f"{where}: name does not end in Error"
    assert issubclass(cls, MillraceError), f"{where}: not a MillraceError"


def test_the_docstring_tree_names_every_exception_and_nothing_else() -> None:
    doc = errors.__doc__ or ""
    drawn = set(re.findall(r"\b_?[A-Z][A-Za-z]*Error\b", doc)) - set(dir(builtins))
    defined = {c.__name__ for c in EXCEPTIONS.values()}
    assert defined - drawn == set(), "defined but not drawn in pipeline/errors.py"
    assert drawn - defined == set(), "drawn in pipeline/errors.py but not defined"


def test_the_tree_draws_each_parent_above_its_children() -> None:
    """Each ``├──``/``└──`` line of the drawing sits under its class's first
    millrace base."""
    lines = (errors.__doc__ or "").splitlines()
    column: dict[str, int] = {}
    stack: list[tuple[int, str]] = []
    by_name: dict[str, list[type[BaseException]]] = {}
    for c in EXCEPTIONS.values():  # two DecodeErrors: pipeline's (Avro) and mqtt's
        by_name.setdefault(c.__name__, []).append(c)
    checked = 0
    for line in lines:
        m = re.match(r"^([ │]*[├└]── )(_?[A-Z]\w*Error)\b", line)
        if line.strip() == "MillraceError":
            stack = [(line.index("M"), "MillraceError")]
            continue
        if not m or not stack:
            continue
        col, name = len(m.group(1)), m.group(2)
        column[name] = col
        while stack and stack[-1][0] >= col:
            stack.pop()
        parent = stack[-1][1]
        bases = [
            [b.__name__ for b in c.__bases__ if issubclass(b, MillraceError)][:1]
            for c in by_name[name]
        ]
        assert [parent] in bases, f"{name} is drawn under {parent}, based on {bases}"
        stack.append((col, name))
        checked += 1
    assert checked >= 20


def test_a_store_error_carries_clickhouse_s_code() -> None:
    exc = StoreError(
        "Code: 164. DB::Exception: default: Cannot execute query in readonly mode. (READONLY)"
    )
    assert (exc.code, exc.name) == (164, "READONLY")
    assert StoreError("no code here").code is None
    assert StoreError("x", code=60, name="UNKNOWN_TABLE").code == 60
