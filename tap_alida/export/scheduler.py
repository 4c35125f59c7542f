"""Which activities a run exports: closed surveys already loaded after they closed are skipped.

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
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tap_alida.modelling.types import format_datetime, parse_datetime

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
