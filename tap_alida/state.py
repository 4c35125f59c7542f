"""Every STATE key the tap writes, and the one place that writes them.

Singer STATE is per stream (``bookmarks.<stream>``). Besides the SDK's own keys
(``replication_key``, ``replication_key_value``), the tap keeps the batch an
export is reading while it is in flight, so that a rerun after a crash (even
SIGKILL) re-uses it instead of exporting again:

* ``alida_batch``: the batch of a stream that reads one file (an activity
  stream, a member stream): ``{"id", "kind", "created_at", "activity_id" | "since"}``;
* ``alida_batches``: ``activity_answers`` reads one file per activity:
  ``{activity id: entry}``;
* ``alida_last_export`` (activity streams) and ``alida_last_exports``
  (``activity_answers``, per activity): the last *completed* export of an
  activity — when Alida created it, the activity's status and ``closedOn`` then,
  its record count — from which a run decides to skip a closed survey
  (``export.scheduler``).

A *slot* names where an entry lives: a stream name, or
``activity_answers:<activity id>``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from singer_sdk import Stream, Tap

from tap_alida.export.batch import ACTIVITY
from tap_alida.modelling.types import format_datetime, parse_datetime

BATCH_STATE_KEY = "alida_batch"
BATCHES_STATE_KEY = "alida_batches"
BOOKMARK_KEY = "replication_key_value"
EXPORT_MARK_KEY = "alida_last_export"
EXPORT_MARKS_KEY = "alida_last_exports"
# How much earlier than its bookmark a member export starts (``member_since``).
MEMBER_SINCE_OVERLAP = dt.timedelta(minutes=1)


def answers_slot(activity_id: str) -> str:
    """The slot of activity_answers' batch for one activity."""
    return f"activity_answers:{activity_id}"


def recorded_batch(stream: Stream, activity_id: str | None = None) -> Any:
    """The batch entry a previous run left for ``stream`` (per activity for activity_answers).

    ``alida_batches`` is keyed by activity id and holds activity batches only, so its
    entries do not repeat ``kind`` and ``activity_id``: they are put back here.
    """
    if activity_id is None:
        return stream.stream_state.get(BATCH_STATE_KEY)
    batches = stream.stream_state.get(BATCHES_STATE_KEY)
    entry = batches.get(activity_id) if isinstance(batches, Mapping) else None
    if isinstance(entry, Mapping):
        return {"kind": ACTIVITY, "activity_id": activity_id, **entry}
    return entry


def last_export(stream: Stream, activity_id: str | None = None) -> Any:
    """The stream's mark of its last completed export (per activity for activity_answers).

    ``alida_last_exports`` is keyed by activity id, so its marks do not repeat it: the
    id is put back here. Its marks keep no batch id (the activity's own stream does):
    a later run compares export times, and a survey's mark is paid for in every STATE.
    """
    if activity_id is None:
        return stream.stream_state.get(EXPORT_MARK_KEY)
    marks = stream.stream_state.get(EXPORT_MARKS_KEY)
    mark = marks.get(activity_id) if isinstance(marks, Mapping) else None
    if isinstance(mark, Mapping) and "activity_id" not in mark:
        return {**mark, "activity_id": activity_id}
    return mark


def set_last_export(stream: Stream, mark: dict[str, Any], activity_id: str | None = None) -> None:
    """Keep the mark of a completed export (written with the stream's next STATE message)."""
    if activity_id is None:
        stream.stream_state[EXPORT_MARK_KEY] = mark
    else:
        # The key says which activity; the activity's own stream keeps the batch id.
        compact = {k: v for k, v in mark.items() if k not in ("activity_id", "batch_id")}
        stream.stream_state.setdefault(EXPORT_MARKS_KEY, {})[activity_id] = compact


# -- how often STATE is written ------------------------------------------------------------
# A STATE message holds every stream's bookmark, so its size grows with the number of
# surveys; written after every survey it would grow with their square (400 surveys: 365 MB a
# night). STATE during a run only saves work after a crash, so it is paced:

# Marks and bookmarks: at most this often (the first at once).
STATE_EVERY_SECONDS = 5.0
# Mid-run STATE is always allowed up to this many bytes in all; beyond that only while it
# stays under STATE_SHARE of the RECORD bytes written so far. The final STATE is always written.
STATE_FLOOR_BYTES = 128 * 1024
STATE_SHARE = 0.005


class OutputCount(Protocol):
    """Bytes the tap has written, by message type (``sdk.CountingWriter``)."""

    def written(self, message_type: str) -> int: ...


class StatePacer:
    """Decides when a STATE the SDK or the ledger asks for is written (``STATE_EVERY_SECONDS``).

    STATE is never ahead of the data: the pacer only ever writes the tap's state as it
    is now, later than asked, and the tap puts a mark or bookmark into it only once the
    rows it stands for are written. A STATE held back is written by a later call, by
    ``tick`` (the run calls it while it waits for exports and between records), when the
    last stream ends (``finish``), and when the sync ends in any case (``TapAlida.invoke``:
    the last STATE of a run, failed or not, is the tap's state as it is then).
    """

    def __init__(
        self,
        emit: Callable[[Any], None],
        output: OutputCount,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._output = output
        self._clock = clock
        self._pending: Mapping[str, Any] | None = None
        self._due: float | None = None
        self._last_emit: float | None = None
        self._last_size = 0
        self._final = False
        self.written = 0  # STATE messages written, for tests and logs
        _PACERS.add(self)

    def write(self, state: Mapping[str, Any], *, urgent: bool = False, now: bool = True) -> None:
        """Ask for a STATE; ``urgent``: it holds a new batch id, due at once (within the
        budget) so that the id is in STATE before its file is downloaded and a rerun
        after a crash re-uses the batch. ``now=False``: the caller ticks once after a
        burst of changes (the ledger applying every queued batch event), one STATE for all."""
        self._pending = state
        if self._final:
            return  # after the last stream: one STATE when the sync ends, however often the SDK asks
        at_once = self._last_emit is None or urgent
        due = self._clock() if at_once else self._last_emit + STATE_EVERY_SECONDS  # type: ignore[operator]
        self._due = due if self._due is None else min(self._due, due)
        if now:
            self.tick()

    def tick(self) -> None:
        """Write the STATE held back when it is due and the STATE budget allows it."""
        if self._pending is None or self._due is None or self._clock() < self._due:
            return
        if not self._final and not self._within_budget(self._pending):
            self._due = self._clock() + STATE_EVERY_SECONDS  # ask again later
            return
        self.flush()

    def _within_budget(self, state: Mapping[str, Any]) -> bool:
        """Whether writing ``state`` keeps mid-run STATE within its budget. Its size is
        measured (a few ms for a thousand surveys, at most once per ``STATE_EVERY_SECONDS``):
        the state grows as surveys complete, so the last STATE's size would understate it."""
        allowed = max(STATE_FLOOR_BYTES, STATE_SHARE * self._output.written("RECORD"))
        so_far = self._output.written("STATE")
        if so_far + self._last_size > allowed:
            return False
        size = len(json.dumps(without_empty_bookmarks(state), separators=(",", ":"), default=str))
        return so_far + size <= allowed

    def flush(self) -> None:
        """Write the STATE held back, if any, now."""
        if self._pending is None:
            return
        state, self._pending, self._due = self._pending, None, None
        before = self._output.written("STATE")
        self._emit(without_empty_bookmarks(state))
        self._last_size = self._output.written("STATE") - before or self._last_size
        self._last_emit = self._clock()
        self.written += 1

    def finish(self) -> None:
        """The last stream is done: write STATE now; what the SDK asks for after it (the
        end of that stream, its progress markers) is written once, when the sync ends."""
        self._final = True
        self.flush()


# Pacers of this process's runs, for ``flush_held_state`` (weak: a finished run's goes).
_PACERS: weakref.WeakSet[StatePacer] = weakref.WeakSet()


def flush_held_state() -> None:
    """Write every STATE a pacer still holds: when a run's sync ends (``TapAlida.invoke``)."""
    for pacer in list(_PACERS):
        pacer.flush()


def without_empty_bookmarks(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """``state`` without the empty ``{}`` the SDK keeps for streams that hold nothing: with
    a stream per survey they would be a line per survey in every STATE, saying nothing."""
    bookmarks = state.get("bookmarks")
    if not isinstance(bookmarks, Mapping) or all(bookmarks.values()):
        return state
    return {**state, "bookmarks": {name: entry for name, entry in bookmarks.items() if entry}}


class BatchLedger:
    """Puts batches in flight into STATE and takes them out, and asks for STATE when they change.

    A new batch id is urgent: it must reach the target's state store before its
    file is downloaded, or a rerun after a crash pays for the same export again.
    Marks and forgotten batches are paced (``StatePacer``). Batch events are
    applied in bursts (``ExportPlan.drain``), followed by one ``tick``.
    """

    def __init__(self, tap: Tap, pacer: StatePacer | None = None) -> None:
        self._tap = tap
        self._pacer = pacer

    def record(self, slots: tuple[str, ...], entry: dict[str, Any] | None) -> None:
        """Set (or, with None, remove) the entry of each slot, then write STATE."""
        for slot in slots:
            name, _, activity_id = slot.partition(":")
            state = self._tap.streams[name].stream_state
            if activity_id:
                batches = state.setdefault(BATCHES_STATE_KEY, {})
                if entry is None:
                    batches.pop(activity_id, None)
                else:  # what the key says is not repeated (``recorded_batch`` puts it back)
                    redundant = {"kind": ACTIVITY, "activity_id": activity_id}
                    batches[activity_id] = {
                        k: v for k, v in entry.items() if not (k in redundant and redundant[k] == v)
                    }
                if not batches:
                    state.pop(BATCHES_STATE_KEY, None)
            elif entry is None:
                state.pop(BATCH_STATE_KEY, None)
            else:
                state[BATCH_STATE_KEY] = entry
        self.write(urgent=entry is not None, now=False)

    def write(self, *, urgent: bool = False, now: bool = True) -> None:
        """Ask for STATE (paced; ``urgent``: it holds a new batch id; ``now=False``: the
        caller ticks after a burst)."""
        if self._pacer is None:
            self._tap.state_writer.write_state(self._tap.state)
        else:
            self._pacer.write(self._tap.state, urgent=urgent, now=now)

    def tick(self) -> None:
        """Write a STATE held back, when it is due (``StatePacer.tick``)."""
        if self._pacer is not None:
            self._pacer.tick()

    def finish(self) -> None:
        """The run's last stream is done: write STATE now and every later STATE at once."""
        if self._pacer is not None:
            self._pacer.finish()
        else:
            self.write()

    def mark_export(self, stream: Stream, mark: dict[str, Any], activity_id: str | None = None) -> None:
        """Keep the mark of a completed export (``last_export``) and write STATE now."""
        set_last_export(stream, mark, activity_id)
        self.write()

    def forget(self, slot: str) -> None:
        """A stream is done with its batch: a rerun must not re-use it."""
        name, _, activity_id = slot.partition(":")
        state = self._tap.streams[name].stream_state
        if (activity_id and activity_id in (state.get(BATCHES_STATE_KEY) or {})) or (
            not activity_id and BATCH_STATE_KEY in state
        ):
            self.record((slot,), None)

    def forget_everywhere(self, batch_id: str) -> None:
        """Drop a batch from every stream's STATE (its file is malformed: no stream may re-use it).

        The activity stream and ``activity_answers`` record the same batch under
        their own slots; forgetting only the failing stream's slot would leave the
        other to re-use the bad file on the rerun.
        """
        for name, stream in self._tap.streams.items():
            state = stream.stream_state
            entry = state.get(BATCH_STATE_KEY)
            if isinstance(entry, dict) and str(entry.get("id")) == batch_id:
                self.record((name,), None)
            batches = state.get(BATCHES_STATE_KEY)
            if isinstance(batches, dict):
                for activity_id, entry in list(batches.items()):
                    if isinstance(entry, dict) and str(entry.get("id")) == batch_id:
                        self.record((f"{name}:{activity_id}",), None)


def streams_of_activities(state: Mapping[str, Any]) -> dict[str, set[str]]:
    """Activity id (lower case) → every stream whose last completed export was of it (a survey
    whose stream name moved has two until the old one is emptied)."""
    found: dict[str, set[str]] = {}
    bookmarks = state.get("bookmarks")
    for stream, entry in bookmarks.items() if isinstance(bookmarks, Mapping) else ():
        mark = entry.get(EXPORT_MARK_KEY) if isinstance(entry, Mapping) else None
        activity_id = mark.get("activity_id") if isinstance(mark, Mapping) else None
        if isinstance(activity_id, str):
            found.setdefault(activity_id.lower(), set()).add(str(stream))
    return found


def member_since(streams: Iterable[Stream], start_date: str | None) -> str | None:
    """``sinceDatetime`` for this run's member export (None: a full export).

    A full-table member stream (``member_profiles`` unless incremental) needs a
    full export: an incremental one carries only changed variables. Otherwise the
    member streams read the same file, so the export starts from the *older* of
    their bookmarks: a stream whose last run died mid-file is not skipped past.
    A stream without a bookmark means ``start_date`` (or a full export).

    A bookmark is sent ``MEMBER_SINCE_OVERLAP`` earlier: whether Alida keeps values
    effective *at* ``sinceDatetime`` is unknown, and its times are whole seconds, so a
    change made in the second of the last ``lastSyncDate`` (after that export) would
    otherwise never arrive. The overlap re-sends a few unchanged values: upserts of the
    same rows.
    """
    readers = list(streams)
    if any(not s.replication_key for s in readers):
        return None
    # Read bookmarks from state directly: the SDK's get_starting_timestamp() only
    # answers once that stream's own sync has begun, and the other may not have.
    starts = []
    for stream in readers:
        bookmark = parse_datetime(stream.stream_state.get(BOOKMARK_KEY))
        starts.append(bookmark - MEMBER_SINCE_OVERLAP if bookmark else parse_datetime(start_date))
    if not starts or any(start is None for start in starts):
        return None
    return format_datetime(min(start for start in starts if start is not None))
