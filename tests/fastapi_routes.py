"""FastAPI's per-app route building, done once per route for the whole test session.

FastAPI (0.165) builds each included route's dependency tree and its pydantic fields
(``TypeAdapter``s for parameters, bodies and response models) for every app instance, on
the app's first request. ``millrace api`` builds one app; the tests build one per test
(``tests/api/conftest.py``: a fresh log, keys and clock each), most of the 1,900 tests
under ``tests/api``, and each paid about 0.2 s of CPU before its first answer (104 of
the permission tests: 28 s of CPU without this module, 8.5 s with it).

The two steps that take that time are memoized here, on keys that say exactly what
they are built from, so a hit returns what a call would build again:

* the dependency tree of an endpoint: from its path, the endpoint function and the
  ``Depends`` objects around it (by identity; they are kept alive with the entry);
* a field built from a type alone (a response model: no ``FieldInfo``, default or
  alias), by name, type and mode.

Both results are read-only once built. A FastAPI without these functions is left alone
(the tests only run slower). Processes the tests start (``millrace run`` and the
distributed roles) are not affected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import fastapi.routing
import fastapi.utils

_dependants: dict[tuple[Any, ...], tuple[Any, list[Any]]] = {}
_fields: dict[tuple[Any, ...], Any] = {}


def install() -> None:
    """Replace the two builders in ``fastapi.routing`` with memoizing ones (once)."""
    build = getattr(fastapi.routing, "_build_dependant_with_parameterless_dependencies", None)
    field = getattr(fastapi.routing, "create_model_field", None)
    undefined = getattr(fastapi.utils, "Undefined", None)
    if build is None or field is None or undefined is None or getattr(build, "memo", False):
        return

    def build_once(*, path: str, call: Callable[..., Any], dependencies: Sequence[Any]) -> Any:
        key = (path, call, tuple(id(d) for d in dependencies))
        hit = _dependants.get(key)
        if hit is None:
            built = build(path=path, call=call, dependencies=dependencies)
            hit = _dependants[key] = (built, list(dependencies))  # keeps the ids valid
        return hit[0]

    def field_once(
        name: str,
        type_: Any,
        default: Any = undefined,
        field_info: Any = None,
        alias: str | None = None,
        mode: str = "validation",
    ) -> Any:
        if field_info is not None or default is not undefined or alias is not None:
            return field(name, type_, default, field_info, alias, mode)
        key = (name, type_, mode)
        try:
            hit = _fields.get(key)
        except TypeError:  # an unhashable type: built each time
            return field(name, type_, default, field_info, alias, mode)
        if hit is None:
            hit = _fields[key] = field(name, type_, default, field_info, alias, mode)
        return hit

    build_once.memo = True  # type: ignore[attr-defined]
    fastapi.routing._build_dependant_with_parameterless_dependencies = build_once  # type: ignore[assignment]
    fastapi.routing.create_model_field = field_once  # type: ignore[assignment]
