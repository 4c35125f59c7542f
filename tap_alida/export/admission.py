"""How many exports the run keeps in progress on Alida: all at once, fewer after a 429.

The run creates every batch up front, because N exports on Alida's side take
about as long as the slowest. A tenant may cap how many exports run at once and
answer a create with 429. Retrying each refused create on its own (backoff,
``max_request_attempts``) would fail a large run on a tight cap, and keeps
knocking while nothing has finished. Instead:

* a 429 on a create sets the limit to the number of exports in progress then
  (at least 1): Alida just said it takes no more;
* a refused create waits for ``Retry-After`` *and* a free place, then tries again;
  refusals are not counted as failed attempts, but a create refused for longer
  than ``max_wait_to_start_seconds`` fails its export (as a batch stuck in
  ``pending`` does), and a ``Retry-After`` above ``max_retry_after_seconds``
  fails at once;
* after ``limit`` creates in a row are accepted, the limit grows by one, so a
  passing rate limit does not slow the rest of the run: against a fixed cap this
  costs about one refused create per ``limit`` exports.

An export holds its place from its create until Alida reports it finished
(the download that follows does not count: it is bounded by
``max_concurrent_exports``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tap_alida.errors import APIError, ExportFailedError, RateLimitedError
from tap_alida.export.batch import Batch
from tap_alida.stop import RunStop

logger = logging.getLogger("tap_alida.export.admission")

# How often a create waiting for a place checks the run's stop signal.
_WAKE_SECONDS = 0.5
# How often the run says how many creates are waiting (one line for all of them).
PROGRESS_EVERY_SECONDS = 60.0


class Admission:
    """The run's places for exports in progress on Alida (unbounded until a 429)."""

    def __init__(self, stop: RunStop, max_wait_to_start: float, max_retry_after: float) -> None:
        self.stop = stop
        self.max_wait_to_start = max_wait_to_start
        self.max_retry_after = max_retry_after
        self.limit: int | None = None
        self.refused = 0  # creates Alida answered with 429, this run
        self._held: set[int] = set()  # id() of batches holding a place
        self._pending = 0  # creates sent and not answered yet (they hold a place too)
        self._waiting = 0  # creates waiting for a place
        self._last_progress = time.monotonic()
        self._accepted_in_a_row = 0
        self._changed = threading.Condition()

    def create(self, create: Callable[[], Batch], label: str) -> Batch:
        """Run ``create`` when a place is free; after a 429, wait and try again."""
        refused_since: float | None = None
        while True:
            self._take_place()
            try:
                batch = create()
            except RateLimitedError as exc:
                self._refused(exc)
                refused_since = refused_since or time.monotonic()
                self._wait_after_refusal(exc, label, time.monotonic() - refused_since)
                continue
            except BaseException:
                self._give_back()
                raise
            self._accepted(batch)
            return batch

    def finished(self, batch: Batch) -> None:
        """Alida finished the batch (or the run gave up on it): its place is free."""
        with self._changed:
            if id(batch) in self._held:
                self._held.discard(id(batch))
                self._changed.notify_all()

    # -- places ---------------------------------------------------------------------------

    def _take_place(self) -> None:
        with self._changed:
            self._waiting += 1
            try:
                while self.limit is not None and len(self._held) + self._pending >= self.limit:
                    self._changed.wait(_WAKE_SECONDS)
                    self.stop.check()
                    self._report_progress()
            finally:
                self._waiting -= 1
            self._pending += 1

    def _report_progress(self) -> None:
        """One INFO line a minute for the whole run while creates wait (called with the lock)."""
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_SECONDS:
            return
        self._last_progress = now
        logger.info(
            "%d exports wait to be created: Alida takes at most %s at once (HTTP 429); %d in progress.",
            self._waiting,
            self.limit,
            len(self._held),
        )

    def _give_back(self) -> None:
        with self._changed:
            self._pending -= 1
            self._changed.notify_all()

    def _accepted(self, batch: Batch) -> None:
        with self._changed:
            self._pending -= 1
            self._held.add(id(batch))
            if self.limit is not None:
                self._accepted_in_a_row += 1
                if self._accepted_in_a_row >= self.limit:
                    self.limit += 1
                    self._accepted_in_a_row = 0

    def _refused(self, exc: RateLimitedError) -> None:
        with self._changed:
            self._pending -= 1
            self.refused += 1
            self._accepted_in_a_row = 0
            in_progress = len(self._held) + self._pending
            limit = max(1, in_progress)
            first = self.limit is None
            self.limit = limit if self.limit is None else min(self.limit, limit)
            self._changed.notify_all()
        if not first:  # a probe above the cap, or the cap moved: not worth a line each time
            logger.debug("HTTP 429 on a create with %d in progress; limit now %d.", in_progress, self.limit)
        else:
            logger.warning(
                "Alida refused a new export with HTTP 429 while %d were in progress; this run now "
                "keeps at most %d in progress at once (more again as they are accepted).",
                in_progress,
                limit,
            )

    def _wait_after_refusal(self, exc: RateLimitedError, label: str, refused_for: float) -> None:
        if exc.retry_after is not None and exc.retry_after > self.max_retry_after:
            msg = (
                f"Alida refused to start the export of {label} (HTTP 429) and asked to wait "
                f"{exc.retry_after:.0f} s, more than 'max_retry_after_seconds' "
                f"({self.max_retry_after:.0f} s). Rerun later or raise that setting."
            )
            raise APIError(msg, status=429)
        if refused_for > self.max_wait_to_start:
            msg = (
                f"Alida refused to start the export of {label} for {refused_for:.0f} s (HTTP 429: too "
                f"many exports at once; 'max_wait_to_start_seconds' = {self.max_wait_to_start:.0f}). "
                "Other exports may be running on the tenant; rerun later."
            )
            raise ExportFailedError(msg)
        logger.debug("Export of %s refused (HTTP 429); trying again.", label)
        self.stop.sleep(exc.retry_after if exc.retry_after is not None else 1.0)
