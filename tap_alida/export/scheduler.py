"""Which exports a run creates, and when Alida has room for them.

**Which** (``decide``, ``row_version``, ``shard_of``): closed surveys already loaded
after they closed are skipped.

Most surveys of a real community are closed for good; exporting each every night
costs the customer's Alida an export per survey and the run its time. A survey
is skipped when, and only when, all of these hold (``closed_activities: skip``):

* ``/activities`` lists it as closed with a ``closedOn`` (a future ``closedOn`` is
  a scheduled close: the survey is still open);
* the stream's last *completed* export *of that activity* (the mark names it: a
  stream name can pass to another survey after a rename) was created after that ``closedOn``
  (both times are Alida's: the ``Date`` of the batch's create answer and the
  listing, so this machine's clock does not matter; a time from this machine is
  trusted only ``CLOCK_MARGIN`` earlier than it says);
* that export is younger than ``closed_activity_refresh_days`` (0: never
  refreshed), so deletions made in Alida after closing still arrive.

Everything else is exported: open surveys, a survey closed since its last
export (once more, then skipped), a re-opened one, a new one, and everything
when STATE is empty (``--full-refresh``).

**When** (``Admission``): the run keeps every export in progress on Alida at once, fewer
after a 429.

The run creates every batch up front, because N exports on Alida's side take
about as long as the slowest. A tenant may cap how many exports run at once and
answer a create with 429. Retrying each refused create on its own (backoff,
``max_request_attempts``) would fail a large run on a tight cap, and keeps
knocking while nothing has finished. Instead:

* a 429 on a create sets the limit to the number of this run's exports Alida
  has accepted and not finished (at least 1): Alida just said it takes no more;
* a refused create waits (``Retry-After``, and at least a backoff that grows with
  each refusal of that create: 1, 2, 4 … 30 s) and for a free place, then tries
  again; refusals are not counted as failed attempts. A create refused while
  none of this run's exports is in progress (someone else fills the tenant) for
  longer than ``max_wait_to_start_seconds`` fails its export, as a batch stuck in
  ``pending`` does; a ``Retry-After`` above ``MAX_RETRY_AFTER_SECONDS`` fails at once;
* the limit grows again: by one after ``limit`` creates in a row are accepted
  (against a fixed cap this costs about one refused create per ``limit``
  exports), and doubles after ``QUIET_SECONDS`` without a refusal, so a passing
  rate limit slows the run for a minute or two, not for the rest of it.

An export holds its place from its create (or, for a re-used batch, from when it
is found still running) until Alida reports it finished; the download that
follows does not count (``max_concurrent_exports`` bounds downloads).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tap_alida.errors import ExportFailedError, RateLimitedError
from tap_alida.export.batch import Batch
from tap_alida.http.policy import check_retry_after, jittered_backoff
from tap_alida.modelling.types import format_datetime, parse_datetime
from tap_alida.stop import RunStop

logger = logging.getLogger("tap_alida.export.scheduler")

# A mark whose time came from this machine (no Date header) is moved back by this
# much before it is compared with Alida's closedOn.
CLOCK_MARGIN = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Decision:
    """Export an activity for one stream, or skip it; ``why`` is for the log."""

    export: bool
    why: str
    exported_at: str | None = None  # the last export's time, for skipped activities


def decide(
    activity: Any,
    mark: Mapping[str, Any] | None,
    *,
    closed_activities: str,
    refresh_days: float,
    now: dt.datetime,
    version_floor: int | None = None,
) -> Decision:
    """Whether a stream must export ``activity`` this run, given its last completed export.

    ``version_floor`` (streams that hold several surveys' rows, ``row_version``): a
    survey is skipped only while the rows it loaded carry a version above this run's
    ACTIVATE_VERSION, so that the message that deletes other surveys' stale rows keeps them.
    """
    if closed_activities != "skip":
        return Decision(True, "closed_activities is 'export'")
    if not activity.is_closed:
        return Decision(True, f"status {activity.status or 'unknown'}")
    closed_on = parse_datetime(activity.closed_on)
    if closed_on is None:
        return Decision(True, "closed without a closedOn date")
    if not isinstance(mark, Mapping):
        return Decision(True, "never exported")
    marked = mark.get("activity_id")
    if not isinstance(marked, str) or marked.lower() != str(activity.id).lower():
        # The stream's name now belongs to another survey (a rename and a new discovery),
        # or the mark predates activity ids: it says nothing about this survey.
        return Decision(True, "the stream's last export was of another activity (or is unattributed)")
    exported = parse_datetime(mark.get("created_at"))
    if exported is None:
        return Decision(True, "no usable time of its last export")
    if mark.get("server_time") is False:  # a mark written before marks folded the margin in
        exported -= CLOCK_MARGIN
    if exported <= closed_on:
        return Decision(True, "closed since its last export")
    if refresh_days > 0 and now - exported > dt.timedelta(days=refresh_days):
        return Decision(True, f"last export older than {refresh_days:g} days (closed_activity_refresh_days)")
    if version_floor is not None:
        version = mark.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            return Decision(True, "its rows were loaded without a row version (before tap-alida kept one)")
        if version <= version_floor:
            return Decision(True, "its rows' version has expired (closed_activity_refresh_days)")
    return Decision(
        False, f"closed {activity.closed_on}, exported {mark.get('created_at')}", str(mark.get("created_at"))
    )


def export_mark(batch: Any, activity: Any, records: int, now: dt.datetime) -> dict[str, Any]:
    """What STATE keeps of a completed export: when Alida created it, of which activity, its batch
    and records.

    Only what a later run needs (``decide``, the ``activities`` stream): STATE is written
    many times per run and holds a mark per survey and stream, so every byte here is paid
    for per survey, per STATE message. A time from this machine's clock (no ``Date``
    header) is stored ``CLOCK_MARGIN`` earlier, so that ``decide`` can trust every mark alike.
    """
    created = batch.server_created or format_datetime((now - CLOCK_MARGIN).replace(microsecond=0))
    return {"created_at": created, "activity_id": activity.id, "batch_id": batch.id, "records": records}


# Rows of a closed survey loaded with closed_activity_refresh_days = 0 (never refreshed)
# stay valid this long: in effect for ever.
FOREVER = dt.timedelta(days=100 * 365)


def shard_of(activity_id: str, shard_count: int) -> int:
    """The shard that loads an activity: a hash of its id (lower case) modulo ``shard_count``.

    SHA-256 rather than ``hash()``: Python salts ``hash`` per process, and every shard,
    on every machine and Python version, must agree on where a survey belongs.
    """
    digest = hashlib.sha256(activity_id.lower().encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


def row_version(
    activity: Any,
    run_version: int,
    *,
    refresh_days: float,
    now: dt.datetime,
    closed_activities: str = "skip",
    shard_window: dt.timedelta = dt.timedelta(0),
) -> int:
    """The table version of a survey's rows in a stream that holds several surveys' rows.

    Singer's ACTIVATE_VERSION is one number per stream: a target deletes every row of
    an older version. ``activity_answers`` and ``activity_fields`` skip closed surveys
    already loaded, yet must delete the rows that left the other surveys' exports. So
    each row's version is the time until which it stays valid without being loaded
    again: this run's version (its start, in ms) for an open survey, and that plus
    ``closed_activity_refresh_days`` for a closed one, which ``decide`` skips only
    while that time is ahead (``version_floor``). The run then activates its own
    version: rows that left an export are deleted, a skipped survey's rows are kept.
    With ``closed_activities: export`` nothing is skipped, so no row needs more.

    The one case a longer validity delays: a survey loaded while closed, re-opened,
    then some of those responses deleted; the rows stay until that load's validity ends
    (at most ``closed_activity_refresh_days`` after it).

    Shards (``shard_count`` above 1) load the same two tables, and each activates its own
    run's version: every row stays valid ``shard_window`` longer, longer than the time
    until its own shard loads it again, so that the other shards keep it whatever their
    order, and a shard that misses a night loses nothing (a row deleted in Alida leaves at
    most that long after the last load that had it).
    """
    closed_on = parse_datetime(getattr(activity, "closed_on", None))
    valid = shard_window
    if closed_activities == "skip" and activity.is_closed and closed_on is not None and closed_on <= now:
        valid += dt.timedelta(days=refresh_days) if refresh_days > 0 else FOREVER
    return run_version + int(valid.total_seconds() * 1000)


# -- admission: how many exports are in progress on Alida at once --------------------

# How often a create waiting for a place checks the run's stop signal.
_WAKE_SECONDS = 0.5
# How often the run says how many creates are waiting (one line for all of them).
PROGRESS_EVERY_SECONDS = 60.0
# Without a refusal for this long (or the last Retry-After, if longer), the limit doubles.
QUIET_SECONDS = 30.0
# The wait after a create's n-th refusal is at least the run's jittered backoff from FIRST
# up to CAP (``http.policy``): a Retry-After of 0, or none, never makes a busy loop.
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0


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
        self._accepted_in_a_row = 0
        self._calm_since = 0.0  # the last refusal, or the last doubling
        self._quiet = QUIET_SECONDS
        self._last_progress = time.monotonic()
        self._changed = threading.Condition()

    def create(self, create: Callable[[], Batch], label: str) -> Batch:
        """Run ``create`` when a place is free; after a 429, wait and try again.

        Not ``retry.attempts``: a refusal here is not a failed try (none is counted, the
        bound is the time refused while none of ours runs) and the wait is for a place
        as much as for the backoff; the Retry-After ceiling is the same (``check_retry_after``)."""
        refusals = 0
        refused_alone_since: float | None = None  # refused while none of ours was in progress
        while True:
            self._take_place()
            try:
                batch = create()
            except RateLimitedError as exc:
                ours = self._refused()
                refusals += 1
                if ours:
                    refused_alone_since = None  # our own exports explain the refusal
                elif refused_alone_since is None:
                    refused_alone_since = time.monotonic()
                alone = 0.0 if refused_alone_since is None else time.monotonic() - refused_alone_since
                self._wait_after_refusal(exc, label, refusals, alone)
                continue
            except BaseException:
                self._give_back()
                raise
            self._accepted(batch)
            return batch

    def hold(self, batch: Batch) -> None:
        """A re-used batch Alida is still working on holds a place until it finishes."""
        with self._changed:
            self._held.add(id(batch))

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
                while self._full():
                    self._changed.wait(_WAKE_SECONDS)
                    self.stop.check()
                    self._report_progress()
            finally:
                self._waiting -= 1
            self._pending += 1

    def _full(self) -> bool:
        """Whether every place is taken (called with the lock); lifts the limit after a quiet time."""
        if self.limit is None:
            return False
        if time.monotonic() - self._calm_since > self._quiet:
            self.limit *= 2
            self._calm_since = time.monotonic()  # the next doubling after another quiet time
            logger.debug("No HTTP 429 for %.0f s; the limit is now %d.", self._quiet, self.limit)
        return len(self._held) + self._pending >= self.limit

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

    def _refused(self) -> int:
        """Lower the limit to the exports Alida accepted and has not finished; returns that count."""
        with self._changed:
            self._pending -= 1
            self.refused += 1
            self._accepted_in_a_row = 0
            self._calm_since = time.monotonic()
            ours = len(self._held)
            first = self.limit is None
            self.limit = max(1, ours)
            self._changed.notify_all()
        if first:
            logger.warning(
                "Alida refused a new export with HTTP 429 while %d of this run's exports were in "
                "progress; the run now creates fewer at once and tries again as they finish (one "
                "INFO line a minute says how many wait).",
                ours,
            )
        else:
            logger.debug("HTTP 429 on a create with %d in progress; limit now %d.", ours, self.limit)
        return ours

    def _wait_after_refusal(self, exc: RateLimitedError, label: str, refusals: int, alone: float) -> None:
        retry_after = exc.retry_after
        if retry_after is not None:
            check_retry_after(
                retry_after, self.max_retry_after, f"Alida refused to start the export of {label} (HTTP 429)"
            )
        if alone > self.max_wait_to_start:
            msg = (
                f"Alida refused to start the export of {label} for {alone:.0f} s (HTTP 429: too many "
                "exports at once) while none of this run's exports was in progress "
                f"('max_wait_to_start_seconds' = {self.max_wait_to_start:.0f}). Other exports may be "
                "running on the tenant; rerun later."
            )
            raise ExportFailedError(msg)
        backoff = jittered_backoff(refusals, BACKOFF_FIRST_SECONDS, BACKOFF_CAP_SECONDS)
        wait = max(retry_after or 0.0, backoff)
        with self._changed:
            self._quiet = max(QUIET_SECONDS, retry_after or 0.0)
        logger.debug("Export of %s refused (HTTP 429); trying again in %.1f s.", label, wait)
        self.stop.sleep(wait)
