"""MQTT topic filters, topic-level templates and the command topic (pure functions).

Topic filters follow MQTT 3.1.1 section 4.7: levels are separated by ``/``, ``+``
stands for exactly one level and ``#`` for any number of levels (zero included) and
must be the last level; a wildcard is always a whole level (``a/b+`` is invalid).

Identities and signals may take parts of the topic a message arrived on: ``{N}`` is
level ``N`` of the topic, counted from 0 (``{1}`` of ``plant/press-7/temp`` is
``press-7``); ``{-N}`` counts from the end (``{-1}`` is the last level, useful under
``#``). Any other text, braces included, is literal.

The command topic template has two placeholders, ``{identity}`` and ``{signal}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from millrace.pipeline.errors import MillraceError

T = TypeVar("T")

_LEVEL_REF = re.compile(r"\{(-?\d+)\}")
_COMMAND_REF = re.compile(r"\{([^{}]*)\}")
COMMAND_PLACEHOLDERS = ("identity", "signal")
#: MQTT limits a topic to 65535 bytes of UTF-8
MAX_TOPIC_BYTES = 65535


class TopicError(MillraceError, ValueError):
    """A topic filter, template or rendered topic that cannot be used."""


def filter_problem(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid MQTT topic filter; None if it is."""
    if not topic_filter:
        return "a topic filter must not be empty"
    if len(topic_filter.encode()) > MAX_TOPIC_BYTES:
        return f"a topic filter is at most {MAX_TOPIC_BYTES} bytes"
    if "\x00" in topic_filter:
        return "a topic filter must not contain the NUL character"
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level:
            if level != "#":
                return f"'#' must be a whole level, not part of {level!r}"
            if i != len(levels) - 1:
                return "'#' must be the last level of a topic filter"
        if "+" in level and level != "+":
            return f"'+' must be a whole level, not part of {level!r}"
    return None


def check_filter(topic_filter: str) -> str:
    """``topic_filter`` if valid, else TopicError with the reason."""
    problem = filter_problem(topic_filter)
    if problem is not None:
        raise TopicError(problem)
    return topic_filter


def is_wildcard(topic_filter: str) -> bool:
    return any(level in ("+", "#") for level in topic_filter.split("/"))


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` (no wildcards) matches ``topic_filter`` (a valid filter).

    As the broker decides it, including the rule that ``#`` and ``+`` at the first
    level do not match topics starting with ``$`` (``$SYS/...``)."""
    return matches_levels(topic_filter.split("/"), topic.split("/"))


def matches_levels(filter_levels: list[str], topic_levels: list[str]) -> bool:
    """:func:`matches` on topics already split into levels."""
    if topic_levels[0].startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    n = len(topic_levels)
    for i, f in enumerate(filter_levels):
        if f == "#":
            return True  # also matches the parent level itself: a/# matches a
        if i >= n:
            return False
        if f != "+" and f != topic_levels[i]:
            return False
    return len(filter_levels) == n


# -- identity/signal templates -----------------------------------------------------------
def level_refs(template: str) -> list[int]:
    """The topic levels ``{N}`` a template refers to, in order."""
    return [int(m.group(1)) for m in _LEVEL_REF.finditer(template)]


def has_level_refs(template: str) -> bool:
    return _LEVEL_REF.search(template) is not None


def ref_problem(template: str, topic_filter: str) -> str | None:
    """Why ``template`` refers to a level no topic matching ``topic_filter`` has."""
    levels = topic_filter.split("/")
    if levels[-1] == "#":
        return None  # a topic under '#' may have any number of further levels
    n_levels = len(levels)  # every matching topic has exactly these levels
    for n in level_refs(template):
        if n >= n_levels or -n > n_levels:
            return (
                f"{{{n}}} refers to a topic level that topic filter {topic_filter!r} "
                f"does not have (levels 0..{n_levels - 1} or -1..-{n_levels})"
            )
    return None


def render(template: str, topic_levels: list[str]) -> str:
    """``template`` with each ``{N}`` replaced by level N of the topic; TopicError if
    the topic has no such level or it is empty."""
    if "{" not in template:
        return template

    def level(m: re.Match[str]) -> str:
        n = int(m.group(1))
        try:
            value = topic_levels[n]
        except IndexError:
            raise TopicError(
                f"topic has no level {n} for {m.group(0)} ({len(topic_levels)} levels)"
            ) from None
        if not value:
            raise TopicError(f"topic level {n} for {m.group(0)} is empty")
        return value

    return _LEVEL_REF.sub(level, template)


@dataclass(frozen=True)
class TemplatePattern:
    """Recognises the identities/signals a templated endpoint produces, for commands:
    ``{1}`` of ``plant/+/temp`` is any text without ``/``, a literal level is itself."""

    regex: re.Pattern[str]

    @classmethod
    def of(cls, identity: str, signal: str, topic_filter: str) -> TemplatePattern:
        flevels = topic_filter.split("/")
        groups: dict[int, str] = {}

        def part(template: str) -> str:
            out, pos = [], 0
            for m in _LEVEL_REF.finditer(template):
                out.append(re.escape(template[pos : m.start()]))
                n = int(m.group(1))
                literal = _literal_level(flevels, n)
                if literal is not None:
                    out.append(re.escape(literal))
                elif n in groups:
                    out.append(f"(?P={groups[n]})")
                else:
                    groups[n] = f"l{len(groups)}"
                    out.append(f"(?P<{groups[n]}>[^/]+)")
                pos = m.end()
            out.append(re.escape(template[pos:]))
            return "".join(out)

        return cls(re.compile(part(identity) + "\x00" + part(signal)))

    def matches(self, identity: str, signal: str) -> bool:
        return self.regex.fullmatch(f"{identity}\x00{signal}") is not None


def _literal_level(filter_levels: list[str], n: int) -> str | None:
    """Level n of every topic matching the filter, if it is a literal level."""
    if filter_levels[-1] == "#":
        fixed = filter_levels[:-1]
        if n < 0:
            return None  # counted from the end of a topic of unknown length
    else:
        fixed = filter_levels
    try:
        level = fixed[n]
    except IndexError:
        return None
    return None if level == "+" else level


# -- command topic ------------------------------------------------------------------------
def command_topic_problem(template: str) -> str | None:
    """Why ``template`` is not a usable command topic template; None if it is."""
    if not template:
        return "the command topic must not be empty"
    if "+" in template or "#" in template:
        return "a command topic is published to and must not contain '+' or '#'"
    unknown = [
        m.group(0)
        for m in _COMMAND_REF.finditer(template)
        if m.group(1) not in COMMAND_PLACEHOLDERS
    ]
    if unknown:
        return f"unknown placeholder {unknown[0]}; the command topic may use " + " and ".join(
            "{" + p + "}" for p in COMMAND_PLACEHOLDERS
        )
    if _COMMAND_REF.sub("", template).count("{") or _COMMAND_REF.sub("", template).count("}"):
        return "unbalanced '{' or '}' in the command topic"
    return None


def command_topic(template: str, identity: str, signal: str) -> str:
    """The topic a command for identity/signal is published to; TopicError if the
    result is not a valid topic to publish to (an identity with '+', say)."""
    topic = template.replace("{identity}", identity).replace("{signal}", signal)
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise TopicError(f"command topic {topic!r} must not contain '+', '#' or NUL")
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        raise TopicError(f"command topic is longer than {MAX_TOPIC_BYTES} bytes")
    return topic


class TopicRouter(Generic[T]):
    """Items registered under topic filters, looked up by a message's topic: a dict
    look-up for filters without wildcards, a scan of the wildcard filters only."""

    def __init__(self) -> None:
        self._exact: dict[str, list[T]] = {}
        self._wild: list[tuple[list[str], T]] = []

    def add(self, topic_filter: str, item: T) -> None:
        if is_wildcard(topic_filter):
            self._wild.append((topic_filter.split("/"), item))
        else:
            self._exact.setdefault(topic_filter, []).append(item)

    def lookup(self, topic: str) -> list[T]:
        found = list(self._exact.get(topic, ()))
        if self._wild:
            levels = topic.split("/")
            found.extend(item for flevels, item in self._wild if matches_levels(flevels, levels))
        return found
