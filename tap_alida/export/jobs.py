"""Export jobs run side by side; Singer messages stay on the main thread.

Why: a batch export spends most of its life on Alida's side (``pending`` →
``running``). Creating every selected stream's batch up front and polling them
together makes N exports take about as long as the slowest one, not their sum.

Rules that keep this safe:

* Worker threads only do HTTP and files (create, poll, download). Every
  export is created and awaited at once (a thread mostly sleeps between status
  checks: up to ``MAX_JOB_THREADS``); downloads are bounded separately
  (``max_concurrent_exports``, ``Community``), since they are what uses disk,
  bandwidth and CPU here.
* Every Singer message is written by the main thread. A worker that creates a
  batch queues an event; the main thread applies it to STATE (``drain``) while
  it waits for a job (every ``DRAIN_EVERY_SECONDS``) or every few thousand
  records, so the batch id reaches STATE a fraction of a second after the job
  takes it up. (A batch re-used from discovery is downloaded at once: a kill
  half a second into that download must find it in STATE.)
* When the run stops (an error, or the process exits), the run's ``RunStop`` wakes
  every worker out of its poll or backoff sleep.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tap_alida.stop import RunStop

logger = logging.getLogger("tap_alida.export.jobs")

# Threads for jobs in flight: each waits on Alida most of its life, so exports of
# every survey in scope overlap on Alida's side (a run of N exports of T seconds
# takes about T, not N / max_concurrent_exports × T).
MAX_JOB_THREADS = 64

T = TypeVar("T")

# Called on the main thread with (stream names, batch state entry or None).
BatchListener = Callable[[tuple[str, ...], dict[str, Any] | None], None]
# A job reports each batch it creates or re-uses through this (None: forget it).
Report = Callable[[dict[str, Any] | None], None]

DRAIN_EVERY_SECONDS = 0.1


@dataclass
class ExportJob(Generic[T]):
    """One export in flight: its key in ``ExportRunner.jobs`` and its future result."""

    key: str
    future: Future[T]


class ExportRunner:
    """A bounded pool of export jobs and the queue of their STATE events."""

    def __init__(self, stop: RunStop, max_workers: int = MAX_JOB_THREADS) -> None:
        self._stop = stop
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="alida-export")
        self._events: queue.SimpleQueue[tuple[tuple[str, ...], dict[str, Any] | None]] = queue.SimpleQueue()
        self.jobs: dict[str, ExportJob[Any]] = {}
        self.listener: BatchListener | None = None
        # Called on the main thread while it waits for a job (a STATE held back may be due).
        self.on_wait: Callable[[], None] | None = None

    def submit(
        self,
        key: str,
        work: Callable[[Report], T],
        state_streams: tuple[str, ...] = (),
    ) -> ExportJob[T]:
        """Start ``work(report)`` in a worker unless a job with this key exists."""
        if key in self.jobs:
            return self.jobs[key]

        def report(entry: dict[str, Any] | None) -> None:
            if state_streams:
                self._events.put((state_streams, entry))

        job: ExportJob[T] = ExportJob(key, self._pool.submit(work, report))
        self.jobs[key] = job
        return job

    def result(self, job: ExportJob[T]) -> T:
        """Wait for a job on the main thread, applying STATE events meanwhile.

        A job's failure is raised here; whether the run stops is the stream's
        decision (``fail_fast``): the other exports may still be needed.
        """
        while True:
            done, _ = wait([job.future], timeout=DRAIN_EVERY_SECONDS, return_when=FIRST_COMPLETED)
            self.drain()
            if self.on_wait is not None:
                self.on_wait()
            if done:
                break
        return job.future.result()

    def drain(self) -> None:
        """Apply queued batch events to STATE (main thread only)."""
        while True:
            try:
                streams, entry = self._events.get_nowait()
            except queue.Empty:
                return
            if self.listener is not None:
                self.listener(streams, entry)

    @property
    def has_events(self) -> bool:
        return not self._events.empty()

    def stop(self) -> None:
        """Wake and stop every worker; jobs not started yet are cancelled."""
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
