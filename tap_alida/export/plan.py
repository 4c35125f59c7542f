"""One run's exports: each started once, run side by side, taken from creation to its file;
streams take file handles.

Why side by side: a batch export spends most of its life on Alida's side
(``pending`` → ``running``). Starting every export the selected streams need
when the sync begins (``Run.plan``) and polling them together makes N exports
take about as long as the slowest one, not their sum.

Rules that keep this safe:

* Worker threads only do HTTP and files (create, poll, download). Every export
  is created and awaited at once (a thread mostly sleeps between status checks:
  up to ``MAX_JOB_THREADS``); downloads are bounded separately
  (``max_concurrent_exports``), since they are what uses disk, bandwidth and CPU here.
* Every Singer message is written by the main thread. A worker that creates a
  batch queues its STATE entry; the main thread puts it into STATE (``drain``,
  through the run's ``BatchLedger``) while it waits for a file (every
  ``DRAIN_EVERY_SECONDS``) or every few thousand records, so the batch id
  reaches STATE a fraction of a second after the job takes it up. (A batch
  re-used from discovery is downloaded at once: a kill half a second into that
  download must find it in STATE.)
* When the run stops (an error, or the process exits), the run's ``RunStop`` wakes
  every worker out of its poll or backoff sleep.
* A file read by several streams (an activity's own stream and ``activity_answers``)
  is downloaded once; each reader releases its handle and the last one deletes it.

**One export's life** (``BatchLifecycle``): re-use a recorded batch, create, wait, fetch,
re-create. The rules (``docs/api.md`` §3, §12b; the tap's own where Alida is silent):

* a batch a crashed run left in STATE is re-used when it was made for this very
  export (kind, activity), is under 6 h old (``RESUME_MAX_AGE_SECONDS``), and its status is not failed or
  cancelled (nor 404: gone); so is the batch discovery made for an activity
  (``catalog_keys``), under the same checks but only while under an hour old;
* a batch Alida reports ``failed``, or whose file is truncated, is created again,
  up to ``EXPORT_ATTEMPTS`` (3) batches; a cancelled one is not (someone meant it);
* a wait past ``max_wait_to_start_seconds`` / ``max_wait_seconds`` fails the export;
* a batch whose file is wrong the same way on every read (``BadExportFileError``) fails
  the export at once; like a cancelled or timed-out one, it leaves STATE, so a rerun
  exports afresh (a re-used one is passed over for a new batch).
"""

from __future__ import annotations

import atexit
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from tap_alida.catalog_keys import DISCOVERY_BATCH_MAX_AGE_SECONDS
from tap_alida.errors import (
    BadExportFileError,
    BatchFailedError,
    ExportFailedError,
    NotFoundError,
    TruncatedFileError,
)
from tap_alida.export.api import BatchExports
from tap_alida.export.batch import ACTIVITY, MEMBERS, Batch
from tap_alida.export.file import ExportFile
from tap_alida.export.scheduler import Admission
from tap_alida.export.spool import make_workdir
from tap_alida.export.status import BatchState, classify, status_word
from tap_alida.http.client import AlidaClient
from tap_alida.settings import EXPORT_ATTEMPTS, AlidaSettings
from tap_alida.stop import RunStop

logger = logging.getLogger("tap_alida.export.plan")

T = TypeVar("T")

# Threads for jobs in flight: each waits on Alida most of its life, so exports of
# every survey in scope overlap on Alida's side (a run of N exports of T seconds
# takes about T, not N / max_concurrent_exports × T).
MAX_JOB_THREADS = 64
DRAIN_EVERY_SECONDS = 0.1


class Ledger(Protocol):
    """Where batch ids go (``state.BatchLedger``): into STATE, on the main thread."""

    def record(self, slots: tuple[str, ...], entry: dict[str, Any] | None) -> None: ...

    def tick(self) -> None: ...


@dataclass
class ExportJob(Generic[T]):
    """One export in flight: its key in ``ExportPlan.jobs`` and its future result."""

    key: str
    future: Future[T]


@dataclass
class MemberExport:
    """A downloaded member profile file, shared by both member streams."""

    batch: Batch
    file: ExportFile
    last_sync_date: str | None


@dataclass
class FileHandle:
    """One stream's read of a downloaded file; ``release`` when done (the last reader deletes it)."""

    export: ExportFile
    _plan: ExportPlan
    _key: str

    def release(self) -> None:
        self._plan._release(self._key, self.export)


class ExportPlan:
    """Every export of one run: the worker pool, the batch ids for STATE, the files' readers."""

    def __init__(self, client: AlidaClient, ledger: Ledger, max_workers: int = MAX_JOB_THREADS) -> None:
        self.client = client
        self.exports = BatchExports(client)
        self.lifecycle = BatchLifecycle(self.exports, client.settings, client.stop)
        self._ledger = ledger
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="alida-export")
        self._events: queue.SimpleQueue[tuple[tuple[str, ...], dict[str, Any] | None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workdir: Path | None = None
        self.jobs: dict[str, ExportJob[Any]] = {}
        self._readers: dict[str, int] = {}  # job key → streams still to read its file
        # Downloads (disk, bandwidth, CPU) are bounded; creating and awaiting exports is not.
        self._download_slots = threading.BoundedSemaphore(client.settings.max_concurrent_exports)

    def start(
        self,
        key: str,
        label: str,
        create: Callable[[], Batch],
        fetch: Callable[[Batch], T],
        *,
        reuse: Sequence[Batch] = (),
        slots: tuple[str, ...] = (),
        readers: int = 0,
    ) -> ExportJob[T]:
        """Start one export, unless ``key`` is started already: re-use the first usable of
        ``reuse`` (best first) or ``create`` a batch, await it, then ``fetch`` its file
        (``BatchLifecycle.run``). Its batch id goes into STATE at ``slots``; ``readers``
        streams take its file (``file``), the last one deletes it."""
        if key in self.jobs:
            return self.jobs[key]

        def report(entry: dict[str, Any] | None) -> None:
            if slots:
                self._events.put((slots, entry))

        def work() -> T:
            return self.lifecycle.run(create, reuse, report, fetch, label)

        job: ExportJob[T] = ExportJob(key, self._pool.submit(work))
        self.jobs[key] = job
        self._readers[key] = readers
        return job

    def result(self, job: ExportJob[T]) -> T:
        """Wait for a job on the main thread, putting batch ids into STATE meanwhile.

        A job's failure is raised here; whether the run stops is the stream's
        decision (``fail_fast``): the other exports may still be needed.
        """
        while True:
            done, _ = wait([job.future], timeout=DRAIN_EVERY_SECONDS, return_when=FIRST_COMPLETED)
            self.drain()
            if done:
                return job.future.result()

    def drain(self) -> None:
        """Put queued batch ids into STATE, then write a STATE held back when due (main thread only)."""
        while True:
            try:
                slots, entry = self._events.get_nowait()
            except queue.Empty:
                break
            self._ledger.record(slots, entry)
        self._ledger.tick()

    def file(self, activity_id: str) -> FileHandle:
        """The activity's downloaded file, for one stream to read and ``release``."""
        key = f"file:{activity_id}"
        return FileHandle(self.result(self.jobs[key]), self, key)

    def members(self) -> MemberExport:
        """The member profile file both member streams read."""
        result: MemberExport = self.result(self.jobs["members"])
        return result

    def _release(self, key: str, export: ExportFile) -> None:
        left = self._readers.get(key, 1) - 1
        self._readers[key] = left
        if left <= 0:
            export.path.unlink(missing_ok=True)

    def download(self, batch: Batch) -> ExportFile:
        """Download a finished batch's file, at most ``max_concurrent_exports`` at a time."""
        with self._download_slots:
            return ExportFile(self.exports.download(batch, str(self.workdir)), batch)

    @property
    def workdir(self) -> Path:
        """A private temporary folder for this run's files, removed at exit (see ``spool``:
        folders of runs killed before their exit are removed by the next run)."""
        with self._lock:
            if self._workdir is None:
                self._workdir = make_workdir()
                atexit.register(shutil.rmtree, self._workdir, True)
        return self._workdir


# -- one export's life ----------------------------------------------------------------------

# A batch left in STATE by a crashed run is re-used only while it is this young: a rerun
# soon after a crash saves Alida the export again, but a rerun loads Alida as it was at that
# export, so a snapshot from the night before must not stand in for tonight's (nights are
# hours apart; the simulation test ages STATE by a day between nights). Alida documents no
# file retention either.
RESUME_MAX_AGE_SECONDS = 6 * 3600
PREVIOUS_RUN = "the previous run"
DISCOVERY = "discovery"
_MAX_AGE = {PREVIOUS_RUN: RESUME_MAX_AGE_SECONDS, DISCOVERY: DISCOVERY_BATCH_MAX_AGE_SECONDS}

# An export reports each batch it creates or re-uses through this (None: forget it).
Report = Callable[[dict[str, Any] | None], None]


class BatchLifecycle:
    """Creates, re-uses, awaits and fetches batches through ``BatchExports``."""

    def __init__(self, exports: BatchExports, settings: AlidaSettings, stop: RunStop) -> None:
        self.exports = exports
        self.settings = settings
        self.admission = Admission(stop, settings.max_wait_to_start, settings.max_retry_after)

    def resumable(
        self, entry: Any, label: str, activity_id: str | None, source: str = PREVIOUS_RUN
    ) -> Batch | None:
        """The batch a crashed run left in STATE (or discovery in the catalog), if it may be
        re-used: made for this very export (kind and activity, see ``Batch.mismatch``) and
        young enough."""
        if not isinstance(entry, Mapping):
            return None
        batch = Batch.from_state(entry, label, activity_id, source)
        if batch is None:
            return None
        reason = Batch.mismatch(entry, MEMBERS if activity_id is None else ACTIVITY, activity_id)
        if reason is not None:
            logger.info(
                "Not re-using batch %s from %s for %s: %s.",
                batch.id,
                source,
                label,
                reason,
            )
            return None
        age = time.monotonic() - batch.created_at
        if age > _MAX_AGE[source]:
            logger.info("Not re-using %s from %s: it is %.1f h old.", batch.describe(), source, age / 3600)
            return None
        return batch

    def run(
        self,
        create: Callable[[], Batch],
        candidates: Sequence[Batch],
        report: Report,
        fetch: Callable[[Batch], T],
        label: str,
    ) -> T:
        """Await and fetch a batch: the first of ``candidates`` (batches to re-use, best
        first) that is still usable, else a new one; make a new one when Alida reports it
        ``failed`` or its file is truncated, up to ``EXPORT_ATTEMPTS`` (3) batches. A file no
        re-read can mend (``BadExportFileError``), a cancelled batch or a wait too long fails
        the export at once. Every batch given up leaves STATE (``report(None)``), so that a
        rerun never fetches it again. Creates wait for a place when Alida limits exports in
        progress (``scheduler.Admission``)."""
        limit = EXPORT_ATTEMPTS
        created = 0
        queue = list(candidates)
        while True:
            batch = self._next_usable(queue)
            reused = batch is not None
            if batch is None:
                batch = self.admission.create(create, label)
            if not batch.resumed:
                created += 1  # made by this process: just now, or for discovery's definitions
            report(batch.to_state())
            try:
                try:
                    self.exports.wait(batch)
                finally:
                    self.admission.finished(batch)
                return fetch(batch)
            except NotFoundError:
                if not reused:
                    raise  # a batch Alida just accepted cannot be gone: something else is wrong
                _pass_over(batch, report, "is gone")
            except (BatchFailedError, TruncatedFileError) as exc:
                said = str(exc).rstrip(".")  # a sentence more follows
                if batch.resumed:
                    _pass_over(batch, report, f"is not usable ({exc})")
                elif created >= limit:
                    report(None)  # a rerun starts with a new batch
                    msg = (
                        f"{said}. {created} batches were tried. Rerun the sync later; if it keeps "
                        "failing, give Alida support the batch id."
                    )
                    raise type(exc)(msg) from exc
                else:
                    logger.warning("%s; creating a new batch (attempt %d of %d).", said, created + 1, limit)
            except (ExportFailedError, BadExportFileError) as exc:
                # Waited too long (pending or unfinished), cancelled, or a file no re-read can mend.
                if not batch.resumed:
                    report(None)
                    raise
                # A bad file is Alida's to explain: a WARNING, with the batch id its text names.
                bad = isinstance(exc, BadExportFileError)
                _pass_over(batch, report, f"is not usable ({exc})", logging.WARNING if bad else logging.INFO)

    def _next_usable(self, queue: list[Batch]) -> Batch | None:
        """The first candidate that can still be used (taken off ``queue``), or None.

        A re-used batch Alida is still working on holds a place (``scheduler.Admission``)."""
        while queue:
            batch = queue.pop(0)
            if not batch.resumed:
                return batch  # made by this process (discovery's definition export)
            status = self._still_usable(batch)
            if status is not None:
                if classify(status_word(status)) is not BatchState.SUCCEEDED:
                    self.admission.hold(batch)
                return batch
        return None

    def _still_usable(self, batch: Batch) -> dict[str, Any] | None:
        """The status of a batch recorded by a previous run (or discovery) when it can still be
        awaited or downloaded; None when it cannot (gone, another activity's, failed, cancelled)."""
        try:
            status = self.exports.refresh(batch)
        except NotFoundError:
            logger.info("%s from %s no longer exists.", batch.describe(), batch.source)
            return None
        dataset = status.get("datasetId")
        if (
            batch.kind == ACTIVITY
            and dataset is not None
            and str(dataset).lower() != str(batch.activity_id).lower()
        ):
            logger.info(
                "Not re-using %s from %s: Alida says it exports activity %s.",
                batch.describe(),
                batch.source,
                dataset,
            )
            return None
        word = status_word(status)
        if classify(word) in (BatchState.FAILED, BatchState.CANCELLED):
            logger.info("%s from %s ended %r; not re-using it.", batch.describe(), batch.source, word)
            return None
        logger.info("Re-using %s from %s (status %s).", batch.describe(), batch.source, word or "unknown")
        return status


def _pass_over(batch: Batch, report: Report, why: str, level: int = logging.INFO) -> None:
    """Give up a re-used batch that cannot serve: it leaves STATE at once, so that a rerun does
    not fetch it again should the new batch fail before it is recorded."""
    report(None)
    logger.log(level, "%s from %s %s; not re-using it.", batch.describe(), batch.source, why)
