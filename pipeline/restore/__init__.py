"""Restore: archived records folded back into the projections, exactly once.

A restore is a task (``pipeline.tasks``, kind ``restore``) with parameters
:class:`~millrace.pipeline.restore.sources.RestoreParams`: a time range (optional
identities and topics) or a list of archive file URLs. The handler
(:class:`~millrace.pipeline.restore.task.RestoreTask`) lists the files (the archive
store's manifests, by time), reads each with the archive format's reader (older schema
versions resolved to the current ones) and folds its records through the live
processors into the projection sink (:mod:`~millrace.pipeline.restore.fold`).

Exactly once, projection by projection, whatever was restored before and whatever the
projections already hold:

* readings, aggregates, latest, device metrics, identity_seen: the telemetry fold,
  behind the batch-id admission of :mod:`~millrace.pipeline.restore.admit` (an id
  applied at another origin — live fold, another restore — is dropped). ``latest`` is a
  ReplacingMergeTree by reading time: a restored value shows only when newer.
* identities, alarms, resource states, tasks: state rows carry the log offset of the
  last event they include and the fold skips events at or below it; restored events
  keep their original offsets, so an event the row already holds changes nothing.
  (An archive from another deployment, whose offsets are unrelated, folds into these
  rows by offset order too: it is restored onto an empty projection, not merged.)
* audits, alarm annotations, dead letters: ReplacingMergeTree keyed by the event's own
  id (audit id; alarm id + sequence; source topic/partition/offset), read with FINAL:
  a row folded twice is one row.
* the ``tasks`` topic is not restored (old tasks would run again).

Within one task, each file has its own sink consumer (``restore/<task>/<file>``): the
intent protocol of ``pipeline.sink`` makes a chunk interrupted by kill -9 redo with the
same rows and tokens, and the committed position skips what was folded.
"""

from millrace.pipeline.restore.sources import (
    RESTORABLE,
    RestoreError,
    RestoreForbiddenError,
    RestoreParams,
    check_url,
)
from millrace.pipeline.restore.task import KIND, RestoreTask

__all__ = [
    "KIND",
    "RESTORABLE",
    "RestoreError",
    "RestoreForbiddenError",
    "RestoreParams",
    "RestoreTask",
    "check_url",
]
