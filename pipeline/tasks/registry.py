"""The registry of task kinds: a kind's name -> its handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from millrace.pipeline.errors import MillraceError

if TYPE_CHECKING:
    from millrace.pipeline.tasks.context import TaskContext

Handler = Callable[["TaskContext"], Awaitable[None]]


class TaskError(MillraceError):
    """A task cannot run or went wrong as a whole (its reason ends the task as failed)."""


class UnknownTaskKindError(TaskError):
    """No handler is registered for a task's kind."""


class TaskKinds:
    """Handlers by kind. A runner takes one; ``KINDS`` is the process-wide default
    that ``register_kind`` fills (kinds register when their package is wired in)."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, kind: str, handler: Handler) -> None:
        if not kind:
            raise TaskError("a task kind needs a name")
        self._handlers[kind] = handler

    def get(self, kind: str) -> Handler:
        try:
            return self._handlers[kind]
        except KeyError:
            raise UnknownTaskKindError(f"no handler for task kind {kind!r}") from None

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers

    def kinds(self) -> list[str]:
        return sorted(self._handlers)


KINDS = TaskKinds()


def register_kind(kind: str, handler: Handler, kinds: TaskKinds = KINDS) -> None:
    """Register ``handler`` (``async (TaskContext) -> None``) for tasks of ``kind``."""
    kinds.register(kind, handler)
