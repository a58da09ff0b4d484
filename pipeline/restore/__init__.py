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
  (An archive from another deployment, whose offsets are unrelated, is not folded
  here: it is appended to the log, its events then the newest of their keys.)
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

This deployment's history, and other files. A file this deployment's archive holds
(by time, a path on the archive store, or a URL whose bytes a manifest of the store
names by sha256) is folded straight into the projections, appending nothing: its
records are history a later replay reads anyway (the log, below its retention the
archive: ``pipeline.log.archive_backed``). A *foreign* file (another deployment's
archive, files other tools wrote) is appended to the log instead
(:mod:`~millrace.pipeline.restore.republish`: each record once, whatever crashes or
repeats, its batch id kept) and folded by the live fold like any record, archived by
the archiver, and folded again by every replay; the task completes when its records
are on the log. The module says why this and not a copy into the archive store.

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

Reading: telemetry in the current schema is decoded a block at a time
(``archive.fastread``, fastavro for the rest), ahead of the fold in a thread
(``prefetch``), and the next file is opened while one folds; the id checks and the
chunks' writes stay one after the other, in order.

Within one task, each file has its own sink consumer (``restore/<task>/<file>``): the
intent protocol of ``pipeline.sink`` makes a chunk interrupted by kill -9 redo with the
same rows and tokens, and the committed position skips what was folded.
"""

from typing import TYPE_CHECKING

from millrace.pipeline.lazy import lazy_exports

if TYPE_CHECKING:
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

# imported on first use: ``restore.config`` (a configuration model) is imported by every
# command, and the task's modules load pyarrow, fsspec and the processors
__getattr__ = lazy_exports(
    __name__,
    {
        "RESTORABLE": "sources",
        "RestoreError": "sources",
        "RestoreForbiddenError": "sources",
        "RestoreParams": "sources",
        "check_url": "sources",
        "masked_url": "sources",
        "KIND": "task",
        "RestoreTask": "task",
        "admit_url": "urls",
    },
)

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
