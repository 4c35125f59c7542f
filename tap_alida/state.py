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

from collections.abc import Iterable, Mapping
from typing import Any

from singer_sdk import Stream, Tap

from tap_alida.modelling.types import format_datetime, parse_datetime

BATCH_STATE_KEY = "alida_batch"
BATCHES_STATE_KEY = "alida_batches"
BOOKMARK_KEY = "replication_key_value"
EXPORT_MARK_KEY = "alida_last_export"
EXPORT_MARKS_KEY = "alida_last_exports"


def answers_slot(activity_id: str) -> str:
    """The slot of activity_answers' batch for one activity."""
    return f"activity_answers:{activity_id}"


def recorded_batch(stream: Stream, activity_id: str | None = None) -> Any:
    """The batch entry a previous run left for ``stream`` (per activity for activity_answers)."""
    if activity_id is None:
        return stream.stream_state.get(BATCH_STATE_KEY)
    return (stream.stream_state.get(BATCHES_STATE_KEY) or {}).get(activity_id)


def last_export(stream: Stream, activity_id: str | None = None) -> Any:
    """The stream's mark of its last completed export (per activity for activity_answers)."""
    if activity_id is None:
        return stream.stream_state.get(EXPORT_MARK_KEY)
    return (stream.stream_state.get(EXPORT_MARKS_KEY) or {}).get(activity_id)


def set_last_export(stream: Stream, mark: dict[str, Any], activity_id: str | None = None) -> None:
    """Keep the mark of a completed export (written with the stream's next STATE message)."""
    if activity_id is None:
        stream.stream_state[EXPORT_MARK_KEY] = mark
    else:
        stream.stream_state.setdefault(EXPORT_MARKS_KEY, {})[activity_id] = mark


class BatchLedger:
    """Puts batches in flight into STATE and takes them out, emitting STATE at once.

    Why at once: a batch id must reach the target's state store before the
    process can die, or a rerun pays for the same export again.
    """

    def __init__(self, tap: Tap) -> None:
        self._tap = tap

    def record(self, slots: tuple[str, ...], entry: dict[str, Any] | None) -> None:
        """Set (or, with None, remove) the entry of each slot, then write STATE."""
        for slot in slots:
            name, _, activity_id = slot.partition(":")
            state = self._tap.streams[name].stream_state
            if activity_id:
                batches = state.setdefault(BATCHES_STATE_KEY, {})
                if entry is None:
                    batches.pop(activity_id, None)
                else:
                    batches[activity_id] = entry
                if not batches:
                    state.pop(BATCHES_STATE_KEY, None)
            elif entry is None:
                state.pop(BATCH_STATE_KEY, None)
            else:
                state[BATCH_STATE_KEY] = entry
        self.write()

    def write(self) -> None:
        """Write STATE now."""
        self._tap.state_writer.write_state(self._tap.state)

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


def streams_by_activity(state: Mapping[str, Any]) -> dict[str, str]:
    """Activity id (lower case) → the stream whose last completed export was of it, from a
    STATE's marks (``alida_last_export`` names its activity): where each survey was loaded."""
    found: dict[str, str] = {}
    bookmarks = state.get("bookmarks")
    for stream, entry in bookmarks.items() if isinstance(bookmarks, Mapping) else ():
        mark = entry.get(EXPORT_MARK_KEY) if isinstance(entry, Mapping) else None
        activity_id = mark.get("activity_id") if isinstance(mark, Mapping) else None
        if isinstance(activity_id, str):
            found[activity_id.lower()] = str(stream)
    return found


def member_since(streams: Iterable[Stream], start_date: str | None) -> str | None:
    """``sinceDatetime`` for this run's member export (None: a full export).

    A full-table member stream (``member_profiles`` unless incremental) needs a
    full export: an incremental one carries only changed variables. Otherwise the
    member streams read the same file, so the export starts from the *older* of
    their bookmarks: a stream whose last run died mid-file is not skipped past.
    A stream without a bookmark means ``start_date`` (or a full export).
    """
    readers = list(streams)
    if any(not s.replication_key for s in readers):
        return None
    # Read bookmarks from state directly: the SDK's get_starting_timestamp() only
    # answers once that stream's own sync has begun, and the other may not have.
    parsed = [parse_datetime(s.stream_state.get(BOOKMARK_KEY) or start_date) for s in readers]
    if not parsed or any(start is None for start in parsed):
        return None
    return format_datetime(min(start for start in parsed if start is not None))
