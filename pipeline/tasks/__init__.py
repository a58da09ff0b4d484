"""Tasks: long-running work (restore, replay) as event-sourced state.

A task is the fold of its TaskEvents on the ``tasks`` topic (key: task id;
``schemas/tasks.avsc``): ``created`` (kind, params as JSON, actor), ``started``,
``progress`` (absolute counts of the work in flight), ``file_completed`` (a file's
counts), ``file_failed`` (a file's reason), ``completed``, ``failed`` (the reason),
``retried`` (a failed task back to pending, its failed files forgotten). The fold
(:func:`state.apply`) is pure; the tasks processor projects it into
``millrace.tasks`` for the API, and the :class:`TaskRunner` folds the topic itself to
find its work, so tasks survive a restart and resume where their events say they were.

Interface for a kind (``pipeline/restore`` and the replay task use it)::

    from millrace.pipeline.tasks import TaskContext, register_kind, create_task

    async def restore(ctx: TaskContext) -> None:
        for name in files(ctx.params):
            if ctx.stop.is_set():
                return                       # left running: resumed after a restart
            if name in ctx.done:
                continue                     # done by an earlier run
            try:
                ...                          # work; now and then:
                await ctx.progress(file=name, events=e, readings=r, bytes=b)
            except SomeError as exc:
                await ctx.file_failed(name, str(exc))  # the task goes on, ends failed
                continue
            await ctx.file_completed(name, {"events": e, "readings": r, "bytes": b})

    register_kind("restore", restore)        # before the runner starts
    task_id = await create_task(publisher, "restore", {"start_time": ...}, actor=user)

``TaskContext`` gives ``task_id``, ``kind``, ``params`` (dict), ``done`` (file ->
counts), ``failed`` (file -> reason), ``counts`` (the task's totals when this run
started), ``progress(file=None, **counts)`` (throttled appends), ``flush()``,
``file_completed(name, counts)``, ``file_failed(name, reason)`` and ``stop`` (an
asyncio.Event: return promptly when it is set). A handler that raises fails the task
with the exception as reason; one that returns with failed files fails it naming
them; otherwise it completes. ``retry_task`` appends ``retried``: the runner runs the
task again, ``done`` keeps the completed files.

The :class:`TaskRunner` is a Stage (singleton, ``process`` role): it runs pending and
running tasks of the registered kinds one at a time, oldest first; tasks of a kind it
does not know stay pending.
"""

from millrace.pipeline.tasks.context import TaskContext
from millrace.pipeline.tasks.events import create_task, new_task_id, retry_task, task_event
from millrace.pipeline.tasks.registry import (
    KINDS,
    Handler,
    TaskError,
    TaskKinds,
    UnknownTaskKindError,
    register_kind,
)
from millrace.pipeline.tasks.runner import TaskRunner
from millrace.pipeline.tasks.state import COMPLETED, FAILED, PENDING, RUNNING, STATUSES

__all__ = [
    "COMPLETED",
    "FAILED",
    "KINDS",
    "PENDING",
    "RUNNING",
    "STATUSES",
    "Handler",
    "TaskContext",
    "TaskError",
    "TaskKinds",
    "TaskRunner",
    "UnknownTaskKindError",
    "create_task",
    "new_task_id",
    "register_kind",
    "retry_task",
    "task_event",
]
