"""The JSON paths of the MQTT connector: a small subset that selects exactly one value.

Syntax (a subset of RFC 9535 JSONPath)::

    $                 the whole document
    $.name            member "name" (letters, digits, '_', '-', '$', '@' and non-ASCII)
    $['any key']      member with any name; \\' and \\\\ escape inside quotes ("..." too)
    $[0]  $[-1]       array element, counted from the start or (negative) from the end

joined in any order: ``$.meter.phases[2].power``, ``$['temp.c']``.

Why a subset and not a full JSONPath library: a reading needs one value per path, and
wildcards, slices, filters and recursive descent (``*``, ``[1:3]``, ``?()``, ``..``)
select several, so they are rejected when the file is validated instead of meaning
"take the first match" at run time. A compiled path is a tuple of keys and indexes,
resolved in a few dict/list look-ups per message, without a dependency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from millrace.pipeline.errors import MillraceError

_NAME = re.compile(r"[A-Za-z0-9_\-$@\u0080-\U0010ffff]+")
_INDEX = re.compile(r"-?(0|[1-9][0-9]*)")

Step = str | int


class JsonPathError(MillraceError, ValueError):
    """A path that is not valid in the supported subset."""


class PathNotFoundError(MillraceError, LookupError):
    """The document has no value at the path (the message says where it stopped)."""


@dataclass(frozen=True)
class JsonPath:
    """A compiled path: :meth:`get` returns the one value it selects."""

    text: str
    steps: tuple[Step, ...]

    def get(self, doc: Any) -> Any:
        node = doc
        for i, step in enumerate(self.steps):
            if isinstance(step, str):
                if not isinstance(node, dict):
                    raise PathNotFoundError(
                        f"{format_path(self.steps[:i])} is {_kind(node)}, not an object "
                        f"(looking for {self.text})"
                    )
                if step not in node:
                    where = (
                        ""
                        if i == len(self.steps) - 1
                        else f" (no {format_path(self.steps[: i + 1])})"
                    )
                    raise PathNotFoundError(f"{self.text} not found{where}")
                node = node[step]
            else:
                if not isinstance(node, list):
                    raise PathNotFoundError(
                        f"{format_path(self.steps[:i])} is {_kind(node)}, not an array "
                        f"(looking for {self.text})"
                    )
                if not -len(node) <= step < len(node):
                    raise PathNotFoundError(
                        f"{self.text} not found ({format_path(self.steps[:i])} has "
                        f"{len(node)} elements)"
                    )
                node = node[step]
        return node

    def __str__(self) -> str:
        return self.text


def compile_path(text: str) -> JsonPath:
    """Parse ``text``; JsonPathError with the position and reason if invalid."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise JsonPathError("a JSON path starts with '$' (the whole payload), e.g. $.value")
    steps: list[Step] = []
    i, n = 1, len(text)
    while i < n:
        c = text[i]
        if text.startswith("..", i):
            raise _unsupported(text, i, "recursive descent '..'")
        if c == ".":
            m = _NAME.match(text, i + 1)
            if m is None:
                if text.startswith("*", i + 1):
                    raise _unsupported(text, i + 1, "wildcard '*'")
                raise JsonPathError(f"a member name must follow '.' at position {i} of {text!r}")
            steps.append(m.group(0))
            i = m.end()
        elif c == "[":
            j = i + 1
            if j < n and text[j] in "'\"":
                key, j = _quoted(text, j)
                steps.append(key)
            else:
                m = _INDEX.match(text, j)
                if m is None or not text.startswith("]", m.end()):
                    end = text.find("]", j)
                    inner = text[j : end if end >= 0 else n]
                    if inner[:1] in ("*", "?") or ":" in inner:
                        raise _unsupported(text, i, f"selector [{inner}]")
                    raise JsonPathError(
                        f"expected an index or a quoted name after '[' at position {i} of {text!r}"
                    )
                steps.append(int(m.group(0)))
                j = m.end()
            if j >= n or text[j] != "]":
                raise JsonPathError(f"missing ']' at position {j} of {text!r}")
            i = j + 1
        else:
            raise JsonPathError(
                f"unexpected {c!r} at position {i} of {text!r}: use .name, ['name'] or [index]"
            )
    return JsonPath(text, tuple(steps))


def path_problem(text: str) -> str | None:
    """Why ``text`` is not a valid JSON path; None if it is."""
    try:
        compile_path(text)
    except JsonPathError as exc:
        return str(exc)
    return None


def format_path(steps: tuple[Step, ...] | list[Step]) -> str:
    """The canonical text of a path (``compile_path(format_path(s)).steps == s``)."""
    out = "$"
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _NAME.fullmatch(step):
            out += f".{step}"
        else:
            out += "['" + step.replace("\\", "\\\\").replace("'", "\\'") + "']"
    return out


def _quoted(text: str, j: int) -> tuple[str, int]:
    """The quoted name starting at text[j] and the position after its closing quote."""
    quote, j = text[j], j + 1
    out: list[str] = []
    while j < len(text):
        c = text[j]
        if c == "\\":
            if j + 1 >= len(text) or text[j + 1] not in (quote, "\\"):
                raise JsonPathError(
                    f"only \\{quote} and \\\\ may be escaped (position {j} of {text!r})"
                )
            out.append(text[j + 1])
            j += 2
        elif c == quote:
            return "".join(out), j + 1
        else:
            out.append(c)
            j += 1
    raise JsonPathError(f"unterminated quoted name in {text!r}")


def _unsupported(text: str, pos: int, what: str) -> JsonPathError:
    return JsonPathError(
        f"{what} at position {pos} of {text!r} is not supported: a path selects one value "
        "($.a.b, $['a b'], $.list[0])"
    )


def _kind(node: Any) -> str:
    if node is None:
        return "null"
    if isinstance(node, bool):
        return "a boolean"
    if isinstance(node, int | float):
        return "a number"
    if isinstance(node, str):
        return "a string"
    if isinstance(node, list):
        return "an array"
    return "an object"
