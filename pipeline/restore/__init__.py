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

Which time: ``start_us``/``end_us`` (``start_time``/``end_time`` of the API and the
CLI) are the records' *log append time* (the log record's timestamp, which the archive
keeps and its windows and manifests are cut by), not the readings' source time
(``ts_us`` of a sample; ``millrace archive export`` filters on that one). A reading
measured long before it reached the log is restored with the range its batch was
appended in.

Not on the log: a restore folds into the projections and appends nothing to the log.
What it restores from this deployment's archive survives a later replay (the replay
reads the log, below its retention the archive: ``pipeline.log.archive_backed``);
what it restores from *other* files (a URL outside the archive store: another
deployment's archive, files other tools wrote) is in neither, so a later
``POST /replay`` or ``millrace replay`` rebuilds the projections without it — restore
those files again after a replay. (Not fixed: making it durable means appending the
restored events to the log or having replay fold completed restore tasks.)

Files: one file named several ways (a path on the store, the store's URL + path,
``file://`` + the store's directory) is restored once (``sources.canonical_name``); the
origin of a restored batch names the file (``task.file_scope``), so a second copy of a
file under another name is not taken for the first one's crash redo: its batches are
dropped as applied elsewhere. URLs are checked against the allow-list parsed, not as
strings (``urls.admit_url``), and HTTP redirects are not followed. Credentials of an
http(s) URL are ``${ENV}`` references the allow-list prefix declares, resolved by the
task runner from its environment when it fetches the file (``fetch``): no secret is
in the task's parameters, its events, the configuration or the logs.

Live fold: each chunk that applies ids writes a restore mark with them; the live
fold's ledger reads the mark once per step and asks the store about ids it does not
hold while the mark moves (``pipeline.batches``): a restore over records the live fold
has not folded yet doubles nothing.

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
    masked_url,
)
from millrace.pipeline.restore.task import KIND, RestoreTask
from millrace.pipeline.restore.urls import admit_url

__all__ = [
    "KIND",
    "RESTORABLE",
    "RestoreError",
    "RestoreForbiddenError",
    "RestoreParams",
    "RestoreTask",
    "admit_url",
    "check_url",
    "masked_url",
]
