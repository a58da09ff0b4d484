"""YAML request bodies (commissioning files) loaded with the limits JSON bodies have.

PyYAML's ``safe_load`` is safe from code execution, not from hostile documents: a
``"\\ud800"`` escape gives a lone surrogate (a 500 once written as UTF-8), a 5,000-digit
integer fails Python's int conversion limit (500), ``\\UFFFFFFFF`` overflows ``chr``
(500), nesting recurses once per level (``RecursionError``), and nine levels of nine
aliases describe 387 million nodes in 200 bytes, which validation would then walk.
:func:`load_yaml` refuses each with a 400 naming ``body`` and the line and column;
YAML syntax errors stay :class:`yaml.YAMLError` for the caller to report as usual.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from millrace.api.errors import ApiError
from millrace.pipeline.errors import MillraceError

#: commissioning files are a few levels deep; PyYAML recurses about three frames a level
MAX_DEPTH = 100
#: nodes of the document with every alias expanded
MAX_NODES = 500_000
#: characters of an integer literal (64 binary digits and a sign fit)
MAX_INT_CHARS = 100
INT64_MIN, UINT64_END = -(2**63), 2**64


class _RefusedError(MillraceError):
    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def _expanded_size(node: Node, sizes: dict[int, int], active: set[int]) -> int:
    """Nodes under ``node``, aliases counted as often as they are used; memoized per
    node, so the walk is linear in the document however often aliases repeat."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in active:
        raise _RefusedError("an alias refers to a node that contains it", node.start_mark)
    active.add(key)
    total = 1
    if isinstance(node, SequenceNode):
        for child in node.value:
            total += _expanded_size(child, sizes, active)
    elif isinstance(node, MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, sizes, active) + _expanded_size(v, sizes, active)
    active.discard(key)
    sizes[key] = total = min(total, MAX_NODES + 1)
    if total > MAX_NODES:
        raise _RefusedError(
            f"more than {MAX_NODES} values once aliases are expanded", node.start_mark
        )
    return total


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` with a depth bound, an expanded-size bound, 64-bit integers and
    valid Unicode strings."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _RefusedError(f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Node | None:
        node: Node | None = super().get_single_node()
        if node is not None:
            _expanded_size(node, {}, set())
        return node

    def construct_scalar(self, node: Node) -> Any:
        value = super().construct_scalar(node)  # type: ignore[arg-type]
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _RefusedError(
                    "a string holds a lone surrogate (not valid Unicode)", node.start_mark
                ) from None
        return value

    def construct_yaml_int(self, node: ScalarNode) -> int:
        text = self.construct_scalar(node)
        if len(text) > MAX_INT_CHARS:
            raise _RefusedError(f"an integer of {len(text)} characters", node.start_mark)
        value: int = super().construct_yaml_int(node)
        if not INT64_MIN <= value < UINT64_END:
            raise _RefusedError("an integer that does not fit 64 bits", node.start_mark)
        return value


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _refused(message: str, line: int | None = None, column: int | None = None) -> ApiError:
    where = f" at line {line}, column {column}" if line is not None else ""
    detail: dict[str, Any] = {"field": "body", "message": message + where}
    if line is not None:
        detail.update(line=line, column=column)
    return ApiError(400, "invalid_body", f"body: {message}{where}", [detail])


def decode_text(body: bytes) -> str:
    """``body`` as UTF-8 text; 400 naming ``body`` and the first bad byte otherwise."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refused(f"not UTF-8 text (byte {exc.start})") from None


def load_yaml(body: bytes) -> Any:
    """The document in ``body``; :class:`ApiError` 400 naming ``body`` for what millrace
    refuses, :class:`yaml.YAMLError` for text that is not YAML."""
    text = decode_text(body)
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except _RefusedError as exc:
        mark = exc.mark
        if mark is None:
            raise _refused(exc.message) from None
        raise _refused(exc.message, mark.line + 1, mark.column + 1) from None
    except (ValueError, OverflowError) as exc:  # e.g. chr() of an escape out of range
        raise _refused(f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
