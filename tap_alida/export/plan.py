"""One run's exports: each started once, run side by side; streams take file handles.

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
"""

from __future__ import annotations

import atexit
import queue
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from tap_alida.export.api import BatchExports
from tap_alida.export.batch import Batch
from tap_alida.export.file import ExportFile
from tap_alida.export.lifecycle import BatchLifecycle
from tap_alida.export.spool import make_workdir
from tap_alida.http.client import AlidaClient

# Threads for jobs in flight: each waits on Alida most of its life, so exports of
# every survey in scope overlap on Alida's side (a run of N exports of T seconds
# takes about T, not N / max_concurrent_exports × T).
MAX_JOB_THREADS = 64
DRAIN_EVERY_SECONDS = 0.1

T = TypeVar("T")


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
