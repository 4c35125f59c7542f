"""What one run of the tap knows and shares; streams depend on this, never on the tap.

A run has one settings object, one HTTP client (with the run's stop signal), one
``Directory`` (activities and member variables as listed, stream names), one
``Definitions`` (each activity's fields), each fetched once and shared between
discovery and the sync, one ``ExportPlan`` (every export, and the files streams
read) and one ``BatchLedger`` (batches in flight in STATE).

When the sync begins, ``plan`` starts every export the selected streams need
at once, so that N exports take about as long as the slowest
(``export.plan``). Streams say what they need (``ExportNeeds``); the run
decides which batches to create and which recorded ones to re-use, and
streams take the files from the plan.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

import singer_sdk.singerlib as singer
from singer_sdk import Stream, Tap

from tap_alida.catalog_keys import CatalogKeys
from tap_alida.directory import Activity, Definitions, Directory
from tap_alida.errors import RunFailedError
from tap_alida.export.batch import Batch
from tap_alida.export.plan import DISCOVERY, ExportPlan, MemberExport
from tap_alida.export.scheduler import Decision, decide, row_version
from tap_alida.http.client import AlidaClient
from tap_alida.modelling.tally import Tally
from tap_alida.modelling.types import format_datetime, parse_datetime
from tap_alida.settings import AlidaSettings
from tap_alida.state import (
    BatchLedger,
    StatePacer,
    last_export,
    member_since,
    recorded_batch,
    streams_of_activities,
)
from tap_alida.stop import RunStop

logger = logging.getLogger("tap_alida.run")

# A survey stream's key columns: the SCHEMA sent before emptying an old survey stream
# (``Run._retire``) names only them, so a target changes no column of the table.
RETIRED_KEYS = ("activity_id", "response_id")
RETIRED_SCHEMA = {
    "type": "object",
    "properties": {key: {"type": ["string", "null"]} for key in RETIRED_KEYS},
}


@dataclass
class ExportNeeds:
    """The exports a stream reads in this run."""

    # (activity id, STATE slot, batch entry a previous run recorded there)
    activity_files: list[tuple[str, str, Any]] = field(default_factory=list)
    member_file: bool = False
    definitions: tuple[str, ...] = ()  # activity ids whose field definitions the stream reads


class Run:
    """Settings, client, directory, definitions, export plan and STATE ledger of one tap run."""

    def __init__(
        self,
        tap: Tap,
        settings: AlidaSettings,
        catalog_keys: CatalogKeys | None = None,
        pacer: StatePacer | None = None,
    ) -> None:
        self.tap = tap
        self.settings = settings
        self.catalog_keys = catalog_keys or CatalogKeys()
        self.client = AlidaClient(settings, RunStop())
        self.ledger = BatchLedger(tap, pacer)
        # The exports of this run; ``plan`` starts the sync's, discovery starts definition exports.
        self._exports = ExportPlan(self.client, self.ledger)
        self.directory = Directory(self.client, self.catalog_keys.stream_names)
        self.definitions = Definitions(settings, self._exports)
        # Counted data problems of this run, shared by every stream (see tally.py).
        self.tally = Tally(logging.getLogger("tap_alida.modelling.records"))
        self.started = dt.datetime.now(dt.UTC)
        # This run's table version (ms): every full-table stream stamps its RECORDs with it
        # and activates it at its end; rows of several surveys: ``scheduler.row_version``.
        self.table_version = int(self.started.timestamp() * 1000)
        self._decisions: dict[tuple[str, str], Decision] = {}
        self.failures: dict[str, str] = {}  # stream → why it failed (fail_fast: false)

    def decide(
        self,
        stream_name: str,
        activity: Activity,
        last_export: Mapping[str, Any] | None,
        *,
        several_surveys: bool = False,
    ) -> Decision:
        """Whether ``stream_name`` exports ``activity`` this run (``export.scheduler``), decided once.

        ``several_surveys``: the stream holds every survey's rows (``row_version``)."""
        key = (stream_name, activity.id)
        if key not in self._decisions:
            settings = self.settings
            self._decisions[key] = decide(
                activity,
                last_export,
                closed_activities=settings.closed_activities,
                refresh_days=settings.closed_activity_refresh_days,
                now=self.started,
                version_floor=self.table_version if several_surveys else None,
            )
        return self._decisions[key]

    def row_version(self, activity: Activity) -> int:
        """The version of ``activity``'s rows in a stream of several surveys (``scheduler.row_version``)."""
        return row_version(
            activity,
            self.table_version,
            refresh_days=self.settings.closed_activity_refresh_days,
            now=self.started,
            closed_activities=self.settings.closed_activities,
            shard_window=self.shard_window,
        )

    @property
    def shard_window(self) -> dt.timedelta:
        """How much longer rows of several surveys stay valid: with shards, ``shard_validity_hours``
        (until the shard's next complete run, a missed night included)."""
        settings = self.settings
        return dt.timedelta(hours=settings.shard_validity_hours if settings.shard_count > 1 else 0)

    def _selected(self) -> list[Any]:
        return [s for s in self.tap.streams.values() if s.selected]

    @cached_property
    def _selected_names(self) -> list[str]:
        """The selected streams in sync order (worked out once: asked after every stream)."""
        return [stream.name for stream in self._selected()]

    def _member_readers(self) -> list[Stream]:
        return [s for s in self._selected() if s.export_needs().member_file]

    def member_since(self) -> str | None:
        """``sinceDatetime`` of this run's member export (see ``state.member_since``)."""
        return member_since(self._member_readers(), self.settings.start_date)

    def stop(self) -> None:
        """Stop the run: every export worker wakes from its sleep and gives up (``RunStop``)."""
        self.client.stop.set()

    @cached_property
    def plan(self) -> ExportPlan:
        """Every export the selected streams read, started once, when the first stream syncs
        (``AlidaStream.get_records``). Streams take its files and release them.

        Exports re-use the batch discovery created for an activity when the catalog
        carries one and it is young (``catalog_keys``), else a batch a crashed run
        recorded in STATE, when it is still usable. Each activity's file is read
        by every stream that needs it (its own stream, ``activity_answers``) and
        downloaded once; ``activity_fields`` needs only the definitions of
        activities nobody reads; the member streams share one member export.
        """
        plan, directory = self._exports, self.directory
        plan.workdir  # noqa: B018 - made now: dead runs' spool folders are removed at start
        needs = {stream.name: stream.export_needs() for stream in self._selected()}
        readers: dict[str, list[str]] = {}  # activity id → STATE slots of the streams reading its file
        resumes: dict[str, Any] = {}
        for need in needs.values():
            for activity_id, slot, recorded in need.activity_files:
                readers.setdefault(activity_id, []).append(slot)
                resumes.setdefault(activity_id, []).append(recorded)
        for activity in directory.activities:
            if activity.id in readers:
                self._start_file(activity, tuple(readers[activity.id]), resumes[activity.id])
        self._log_economy()
        self._log_shard()
        self._warn_about_new_activities()
        self._move_renamed_streams()
        self._start_member_export([name for name, need in needs.items() if need.member_file])
        definitions = {activity_id for need in needs.values() for activity_id in need.definitions}
        for activity in directory.activities:
            if activity.id in definitions and activity.id not in readers:
                self.definitions.start_definition_export(activity, self.catalog_keys.batch(activity.id))
        return plan

    def _start_file(self, activity: Activity, slots: tuple[str, ...], recorded: Iterable[Any]) -> None:
        """Start the export of the activity's file for the streams at ``slots``. Re-used, in this
        order: the batch this process made for the activity's definition; the batch discovery
        made (from the catalog) while young; the batch a crashed run left in STATE."""
        plan, label = self._exports, activity.label
        own = self.definitions.made_for(activity)
        found = [
            plan.lifecycle.resumable(self._discovery_batch(activity, slots), label, activity.id, DISCOVERY),
            plan.lifecycle.resumable(self._resumable(activity, recorded), label, activity.id),
        ]
        # The newest first: a crashed run's batch may be newer than discovery's.
        reusable = sorted((b for b in found if b is not None), key=lambda b: -b.created_at)
        plan.start(
            f"file:{activity.id}",
            label,
            partial(plan.exports.create_activity_batch, activity.id, label),
            plan.download,
            reuse=[own] if own is not None else reusable,
            slots=slots,
            readers=len(slots),
        )

    def _marks_of(self, activity: Activity) -> list[Mapping[str, Any]]:
        """Every mark STATE keeps of the activity's completed exports, in any stream."""
        streams = self.tap.streams
        marks = []
        own = streams.get(activity.stream_name)
        if own is not None:
            marks.append(last_export(own))
        if "activity_answers" in streams:
            marks.append(last_export(streams["activity_answers"], activity.id))
        return [
            m
            for m in marks
            if isinstance(m, Mapping) and str(m.get("activity_id", "")).lower() == activity.id.lower()
        ]

    def _resumable(self, activity: Activity, entries: Iterable[Any]) -> Any:
        """The batch a crashed run left in STATE for the activity, if a stream may load it: only
        when it is newer than every export of the activity any stream has loaded since (a
        stream deselected in the run that crashed may hold an older batch than its sibling
        loaded later; loading it would take rows back and move the mark backwards)."""
        newest = max(
            (d for m in self._marks_of(activity) if (d := parse_datetime(m.get("created_at")))),
            default=None,
        )
        for entry in entries:
            if not isinstance(entry, Mapping):
                continue
            made = _batch_time(entry)
            if newest is None or (made is not None and made > newest):
                return entry
            logger.info(
                "Not re-using batch %s from the previous run for %s: a stream has loaded a newer "
                "export of it since (%s).",
                entry.get("id"),
                activity.label,
                format_datetime(newest),
            )
        return None

    def _discovery_batch(self, activity: Activity, slots: Iterable[str]) -> Mapping[str, Any] | None:
        """The batch discovery made for the activity (``catalog_keys``), when STATE proves that
        every stream reading it has loaded only older exports of it.

        STATE is the one authority on what was loaded: a catalog used for a second sync
        (Meltano's cached catalog, a rerun, a second machine, ``--full-refresh``) must not
        take the warehouse back to older rows, and without STATE nothing says it would
        not, so the sync exports afresh (the first night costs one export more per survey).
        """
        entry = self.catalog_keys.batch(activity.id)
        if entry is None:
            return None
        created = parse_datetime(entry.get("server_created"))
        # The activity's own stream first: its mark keeps the batch id (``state.last_export``).
        for slot in sorted(slots, key=lambda slot: ":" in slot):
            name, _, activity_id = slot.partition(":")
            reason = _newer_loaded(entry, created, last_export(self.tap.streams[name], activity_id or None))
            if reason is not None:
                logger.info(
                    "Not re-using batch %s that discovery made for %s: %s %s.",
                    entry.get("id"),
                    activity.label,
                    name,
                    reason,
                )
                return None
        return entry

    def _start_member_export(self, names: Iterable[str]) -> None:
        """Start the member profile export (one per run, shared by both member streams)."""
        streams = [self.tap.streams[name] for name in names]
        if not streams:
            return
        plan, since = self._exports, self.member_since()
        recorded = next((entry for entry in map(recorded_batch, streams) if entry), None)
        resumed = plan.lifecycle.resumable(recorded, "member profiles", None)
        if resumed is not None and resumed.since != since:
            logger.info(
                "Not re-using member profile batch %s: it was made with sinceDatetime %s, this run needs %s.",
                resumed.id,
                resumed.since,
                since,
            )
            resumed = None

        def read(batch: Batch) -> MemberExport:
            file = plan.download(batch)
            last_sync = file.first("lastSyncDate")
            return MemberExport(batch, file, None if last_sync is None else str(last_sync))

        plan.start(
            "members",
            "member profiles",
            partial(plan.exports.create_member_batch, since),
            read,
            reuse=[resumed] if resumed else [],
            slots=tuple(s.name for s in streams),
        )

    def _log_economy(self) -> None:
        """One INFO line: how many activities this run exports, how many closed ones it skips."""
        by_activity: dict[str, list[Decision]] = {}
        for (_, activity_id), decision in self._decisions.items():
            by_activity.setdefault(activity_id, []).append(decision)
        skipped = [d for d in by_activity.values() if not any(x.export for x in d)]
        for activity in self.directory.activities:
            reasons = {x.why for x in by_activity.get(activity.id, []) if x.export}
            if activity.is_closed and reasons:
                logger.info("Exporting closed %s: %s.", activity.label, "; ".join(sorted(reasons)))
        exported = len(by_activity) - len(skipped)
        oldest = min((x.exported_at or "" for d in skipped for x in d), default="")
        logger.info(
            "This run exports %d activities and skips %d closed ones%s.",
            exported,
            len(skipped),
            f" (oldest export {oldest})" if oldest else "",
        )

    def _log_shard(self) -> None:
        """In a shard other than 0, one INFO line naming the streams shard 0 loads instead."""
        settings = self.settings
        others = sorted(
            name
            for name, stream in self.tap.streams.items()
            if getattr(stream, "loaded_by_another_shard", False) and stream.mask.get((), True)
        )  # (the catalog's own selection: ``selected`` is False for them)
        if others:
            logger.info(
                "Loaded by shard 0 of %d; this is shard %d: %s (no SCHEMA or RECORD for them here).",
                settings.shard_count,
                settings.shard_index,
                ", ".join(others),
            )

    def _warn_about_new_activities(self) -> None:
        """A survey in scope that the catalog in use has no stream for is never silently missing."""
        streams = self.tap.streams
        for activity in self.directory.activities:
            if activity.stream_name not in streams:
                logger.warning(
                    "Activity %r (%s) is in scope but the catalog has no stream for it (created after "
                    "the catalog was made?). Its values still arrive in activity_answers and it is listed "
                    "in activities; to give it its own stream, run discovery again (`meltano run "
                    "--refresh-catalog …`, or `tap-alida --discover`) and select %r.",
                    activity.name,
                    activity.id,
                    activity.stream_name,
                )

    def _move_renamed_streams(self) -> None:
        """A survey loaded into another stream than its stream now moves, so that the warehouse
        stays what a fresh load gives: its old table is emptied (SCHEMA, then ACTIVATE_VERSION
        of this run's version, and the old stream's STATE entry goes) and the survey is exported
        into its new stream (``decide``: the new stream has no mark of it).

        A name moves when the survey is renamed and the catalog discovered again, or when a
        survey of the same name is: the older of two namesakes has the plain name, so when it is
        renamed the other one takes it. Discovery cannot keep it (Meltano passes it neither
        STATE nor the catalog before); ``stream_naming: id`` gives names that never move.
        An old stream that is now the stream of a survey loaded tonight (selected here) or by
        another shard is not emptied: that survey's export replaces its rows; its STATE entry,
        which names this survey, goes (its export writes its own). Any other old stream (no
        survey's, out of scope, or deselected) is emptied.
        """
        loaded_in = streams_of_activities(self.tap.state)
        mine = {a.id for a in self.directory.activities}
        taken = {name for name, stream in self.tap.streams.items() if stream.selected} | {
            a.stream_name
            for a in self.directory.listed
            if a.id in self.directory.in_any_shard and a.id not in mine
        }
        for activity in self.directory.activities:
            for old in sorted(loaded_in.get(activity.id.lower(), set()) - {activity.stream_name}):
                if old in taken:
                    self._forget(old)
                    what = f"{old!r} is now the stream of another survey, whose export replaces its rows"
                elif self.settings.emit_activate_version:
                    self._retire(old)
                    what = f"{old!r} is emptied (ACTIVATE_VERSION)"
                else:
                    self._forget(old)
                    what = f"its rows stay in {old!r} (emit_activate_version_messages is false)"
                logger.warning(
                    "Activity %r (%s) was loaded into stream %r until now; its stream is now %r (it, "
                    "or a survey of the same name, was renamed and the catalog discovered again): %s, "
                    "and the survey is loaded into %r. 'stream_naming: id' keeps stream names fixed.",
                    activity.name,
                    activity.id,
                    old,
                    activity.stream_name,
                    what,
                    activity.stream_name,
                )

    def _forget(self, stream: str) -> None:
        """Drop a stream's STATE entry that names a survey now loaded elsewhere (a stream this
        run syncs keeps it: its export writes a new one)."""
        if stream in self.tap.streams:
            return
        bookmarks = self.tap.state.get("bookmarks")
        if isinstance(bookmarks, dict):
            bookmarks.pop(stream, None)

    def _retire(self, stream: str) -> None:
        """Empty a stream the catalog no longer has: a target deletes every row of a version
        older than this run's (every row), then its STATE entry goes."""
        tap = self.tap
        tap.write_message(
            singer.SchemaMessage(stream=stream, schema=RETIRED_SCHEMA, key_properties=list(RETIRED_KEYS))
        )
        tap.write_message(singer.ActivateVersionMessage(stream=stream, version=self.table_version))
        bookmarks = tap.state.get("bookmarks")
        if isinstance(bookmarks, dict):
            bookmarks.pop(stream, None)

    # -- failures: one stream's does not stop the others -----------------------------------

    def stream_failed(self, name: str, error: Exception) -> None:
        """Log a stream's failure as one ERROR line and go on; the run fails at its end."""
        logger.error("%s", error)
        self.failures[name] = str(error)
        self.finish_stream(name)

    def finish_stream(self, name: str) -> None:
        """After the last selected stream: write STATE now (``BatchLedger.finish``), then fail
        the run, naming each stream that failed; every stream that completed keeps its bookmarks.
        """
        selected = self._selected_names
        if not selected or name != selected[-1]:
            return
        self.ledger.finish()
        if not self.failures:
            return
        self.stop()
        named = "; ".join(f"{stream}: {why}" for stream, why in self.failures.items())
        msg = (
            f"{len(self.failures)} of {len(selected)} streams failed (the others completed and kept "
            f"their STATE): {named}"
        )
        raise RunFailedError(msg)


def _newer_loaded(entry: Mapping[str, Any], created: dt.datetime | None, mark: Any) -> str | None:
    """Why a stream whose last completed export is ``mark`` must not load discovery's batch
    (None: it may). When in doubt it must not: an export costs less than older rows."""
    if not isinstance(mark, Mapping):
        return "has no export of it in STATE to show that the batch is not older than what it loaded"
    if str(mark.get("batch_id")) == str(entry.get("id")):
        return "already loaded this very batch"
    done = parse_datetime(mark.get("created_at"))
    if done is None:
        return "keeps no usable time of its last export"
    if created is None:
        return "has loaded an export, and discovery's batch carries no server time to compare"
    if created <= done:
        return "already loaded an export as new or newer"
    return None


def _batch_time(entry: Mapping[str, Any]) -> dt.datetime | None:
    """When a recorded batch was created: Alida's time when STATE has it, else this machine's."""
    server = parse_datetime(entry.get("server_created"))
    if server is not None:
        return server
    try:
        return dt.datetime.fromtimestamp(float(entry["created_at"]), dt.UTC)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return None
