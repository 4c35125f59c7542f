"""What the tap knows about one community during one run.

Discovery and sync both need the same facts: which activities are in scope and
what their streams are called, each activity's field definitions, the member
variables, and the member export both member streams read. This object fetches
each fact once per run and shares it, so that, for instance, the batch created
to discover an activity's fields is re-used when the same process syncs it, and
the member export is downloaded once for two streams.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tap_alida.client import AlidaClient
from tap_alida.errors import AlidaError, NotFoundError
from tap_alida.export import Batch, BatchExports
from tap_alida.export_file import ExportFile
from tap_alida.naming import assign_names
from tap_alida.schema import FieldDefinition, parse_definition

logger = logging.getLogger("tap_alida.community")

FIXED_STREAMS = ("activity_fields", "member_profiles", "member_profile_values", "activity_answers")


@dataclass(frozen=True)
class Activity:
    """An activity (survey) as ``/activities`` lists it, with its stream name."""

    id: str
    name: str
    activity_type: str | None
    stream_name: str

    @property
    def label(self) -> str:
        return f"activity {self.name!r} ({self.id})"


@dataclass(frozen=True)
class MemberVariable:
    """A member profile variable as ``/membervariables`` lists it."""

    id: str
    name: str
    data_type: str
    is_sensitive: bool | None


@dataclass
class MemberExport:
    """A downloaded member profile file, shared by both member streams."""

    batch: Batch
    file: ExportFile
    last_sync_date: str | None


class Community:
    """Per-run cache of activities, definitions, batches and files."""

    def __init__(self, client: AlidaClient) -> None:
        self.client = client
        self.exports = BatchExports(client)
        self._lock = threading.Lock()
        self._activities: list[Activity] | None = None
        self._definitions: dict[str, list[FieldDefinition]] = {}
        self._batches: dict[str, Batch] = {}
        self._member_variables: list[MemberVariable] | None = None
        self._member_export: MemberExport | None = None
        self._workdir: Path | None = None

    # -- activities -------------------------------------------------------------------

    @property
    def activities(self) -> list[Activity]:
        """The activities in scope: ``activity_ids``, or every ``Survey``, with stream names."""
        if self._activities is None:
            self._activities = self._load_activities()
        return self._activities

    def _load_activities(self) -> list[Activity]:
        listed = list(
            self.client.iter_collection(
                self.client.url("v1", "activities"), what="list the community's activities"
            )
        )
        by_id = {str(a.get("id")).lower(): a for a in listed if isinstance(a, Mapping) and a.get("id")}
        wanted = self.client.settings.activity_ids
        if wanted:
            for activity_id in wanted:
                if activity_id.lower() not in by_id:
                    by_id[activity_id.lower()] = self._get_activity(activity_id)
        # Names are assigned over every listed activity, oldest first, so a stream
        # keeps its name when other activities come, go or are (de)selected.
        ordered = sorted(by_id.values(), key=lambda a: (str(a.get("createDate") or ""), str(a["id"])))
        names = assign_names(
            [(str(a["id"]), str(a.get("name") or "")) for a in ordered],
            fallback_prefix="activity",
            reserved=FIXED_STREAMS,
        )
        if wanted:
            chosen = [by_id[i.lower()] for i in dict.fromkeys(wanted)]
        else:
            chosen = [a for a in ordered if str(a.get("activityType", "")).lower() == "survey"]
            skipped = len(ordered) - len(chosen)
            if skipped:
                logger.info(
                    "%d of %d activities are not surveys and are not exported (set 'activity_ids' "
                    "to choose activities explicitly).",
                    skipped,
                    len(ordered),
                )
        return [
            Activity(
                id=str(a["id"]),
                name=str(a.get("name") or ""),
                activity_type=a.get("activityType"),
                stream_name=names[str(a["id"])],
            )
            for a in chosen
        ]

    def _get_activity(self, activity_id: str) -> dict[str, Any]:
        try:
            activity = self.client.get_json(
                self.client.url("v1", f"activities/{activity_id}"),
                what=f"look up activity {activity_id}",
            )
        except NotFoundError as exc:
            msg = (
                f"Setting 'activity_ids' names activity {activity_id!r}, which this community does "
                "not have (or the API credential cannot see it). Remove it or correct the id."
            )
            raise AlidaError(msg) from exc
        if not isinstance(activity, Mapping) or not activity.get("id"):
            msg = f"Looking up activity {activity_id!r} returned no activity object."
            raise AlidaError(msg)
        return dict(activity)

    def activity_by_stream(self, stream_name: str) -> Activity | None:
        return next((a for a in self.activities if a.stream_name == stream_name), None)

    # -- activity exports ---------------------------------------------------------------

    def activity_batch(self, activity: Activity) -> Batch:
        """A succeeded batch for the activity, created once per run and re-used."""
        with self._lock:
            batch = self._batches.get(activity.id)
        if batch is None:
            batch = self.exports.create_activity_batch(activity.id, activity.label)
            self.exports.wait(batch)
            with self._lock:
                self._batches[activity.id] = batch
        else:
            # Re-read the status: the file link it carries may be a fresh one.
            self.exports.refresh(batch)
            self.exports.wait(batch)
        return batch

    def definition(self, activity: Activity) -> list[FieldDefinition]:
        """The activity's field definitions (an export's ``definition``), cached per run."""
        with self._lock:
            cached = self._definitions.get(activity.id)
        if cached is not None:
            return cached
        batch = self.activity_batch(activity)
        fields = parse_definition(self.exports.read_definition(batch))
        self.remember_definition(activity, fields)
        return fields

    def remember_definition(self, activity: Activity, fields: list[FieldDefinition]) -> None:
        with self._lock:
            self._definitions[activity.id] = fields

    def download_activity(self, activity: Activity) -> ExportFile:
        batch = self.activity_batch(activity)
        return ExportFile(self.exports.download(batch, str(self.workdir)), batch)

    # -- members --------------------------------------------------------------------------

    @property
    def member_variables(self) -> list[MemberVariable]:
        if self._member_variables is None:
            items = self.client.iter_collection(
                self.client.url("v1", "membervariables"), what="list the member variables"
            )
            ordered = sorted(
                (v for v in items if isinstance(v, Mapping) and v.get("id")),
                key=lambda v: (str(v.get("createDate") or ""), str(v["id"])),
            )
            self._member_variables = [
                MemberVariable(
                    id=str(v["id"]),
                    name=str(v.get("name") or ""),
                    data_type=str(v.get("dataType") or v.get("datatype") or v.get("type") or ""),
                    is_sensitive=v.get("isSensitive"),
                )
                for v in ordered
            ]
        return self._member_variables

    def member_export(self, since: str | None) -> MemberExport:
        """The member profile file of this run (created, awaited and downloaded once)."""
        with self._lock:
            if self._member_export is not None:
                return self._member_export
            batch = self.exports.create_member_batch(since)
            self.exports.wait(batch)
            file = ExportFile(self.exports.download(batch, str(self.workdir)), batch)
            last_sync = file.first("lastSyncDate")
            self._member_export = MemberExport(
                batch=batch,
                file=file,
                last_sync_date=None if last_sync is None else str(last_sync),
            )
            return self._member_export

    # -- files -----------------------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        """A private temporary folder for this run's files, removed at exit."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="tap-alida-"))
            atexit.register(shutil.rmtree, self._workdir, True)
        return self._workdir
