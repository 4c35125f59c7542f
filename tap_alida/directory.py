"""The community's directory: what it holds, found once per run and shared by discovery and
the sync: activities and member variables as Alida lists them, with the stream name of each
activity, and each activity's field definitions.

Which activities a run covers is decided in one place: ``Directory.activities`` (those
in scope, ``in_scope``, of this run's shard).

**Field definitions** (``Definitions``): each activity's fields, known once per run: from
this run, from the cache below (closed surveys), from the activity's downloaded file,
else from an export that reads only the ``definition`` part of a file (discovery).

**The definitions cache** (``DefinitionsCache``): discovery needs each activity's field
definitions, and Alida has no endpoint for them: every discovery would export every survey
(``docs/api.md`` §7.1), closed ones included. A closed survey's questions cannot change while
it stays closed, so its definition is kept in ``cache_dir`` (per community and activity) and
used again while the listing shows it closed with the same ``closedOn`` and
``lastUpdateDate``. Anything else (open, re-opened, changed) is exported again.

The cache only saves time: a missing, unreadable or unwritable one costs an
export, with one WARNING per run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tap_alida.errors import AlidaError, NotFoundError
from tap_alida.export.batch import Batch
from tap_alida.export.plan import DISCOVERY, ExportJob, ExportPlan
from tap_alida.export.scheduler import shard_of
from tap_alida.http.client import AlidaClient
from tap_alida.modelling.layout import ActivityLayout
from tap_alida.modelling.naming import assign_names
from tap_alida.modelling.types import FieldDefinition, WarnOnce, parse_definition
from tap_alida.settings import AlidaSettings

logger = logging.getLogger("tap_alida.directory")


FIXED_STREAMS = (
    "activity_fields",
    "member_profiles",
    "member_profile_values",
    "activity_answers",
    "activities",
)


@dataclass(frozen=True)
class Activity:
    """An activity (survey) as ``/activities`` lists it, with its stream name."""

    id: str
    name: str
    activity_type: str | None
    stream_name: str
    status: str | None = None  # as listed: open, closed… (docs/api.md §7.1)
    closed_on: str | None = None  # closedOn as listed (a future one: a scheduled close)
    created: str | None = None
    last_update: str | None = None  # lastUpdateDate, when the listing has one

    @property
    def label(self) -> str:
        return f"activity {self.name!r} ({self.id})"

    @property
    def is_closed(self) -> bool:
        """Listed as closed (whatever the case of the word)."""
        return str(self.status or "").strip().lower() == "closed"


@dataclass(frozen=True)
class MemberVariable:
    """A member profile variable as ``/membervariables`` lists it."""

    id: str
    name: str
    data_type: str
    is_sensitive: bool | None


def in_scope(listed: Sequence[Activity], activity_ids: Sequence[str] | None) -> list[Activity]:
    """The activities this run covers: those ``activity_ids`` names (in its order), else every
    ``Survey`` listed. The one place that decides it: streams, exports and warnings follow it."""
    if activity_ids:
        by_id = {a.id.lower(): a for a in listed}
        return [by_id[i.lower()] for i in dict.fromkeys(activity_ids) if i.lower() in by_id]
    chosen = [a for a in listed if str(a.activity_type or "").lower() == "survey"]
    skipped = len(listed) - len(chosen)
    if skipped:
        logger.info(
            "%d of %d activities are not surveys and are not exported (set 'activity_ids' "
            "to choose activities explicitly).",
            skipped,
            len(listed),
        )
    return chosen


class Directory:
    """Activities (every listed one, and those in scope) and member variables of one run."""

    def __init__(self, client: AlidaClient, stream_names: Mapping[str, str] | None = None) -> None:
        self.client = client
        # activity id (lower case) → stream name, from the catalog in use (catalog_keys)
        # (never a fixed stream's name: a hand-edited catalog must not hide a survey there)
        self._pinned_names = {k: v for k, v in (stream_names or {}).items() if v not in FIXED_STREAMS}

    @cached_property
    def activities(self) -> list[Activity]:
        """The activities this run covers, with stream names: those in scope (``in_scope``)
        that belong to this run's shard (``scheduler.shard_of``)."""
        settings, chosen = self.client.settings, self._in_scope
        mine = [a for a in chosen if shard_of(a.id, settings.shard_count) == settings.shard_index]
        if len(mine) < len(chosen):
            logger.info(
                "Shard %d of %d: %d of the %d activities in scope.",
                settings.shard_index,
                settings.shard_count,
                len(mine),
                len(chosen),
            )
        return mine

    @cached_property
    def in_any_shard(self) -> frozenset[str]:
        """Ids of the activities in scope in any shard (``activities`` lists this shard's)."""
        return frozenset(a.id for a in self._in_scope)

    @cached_property
    def _in_scope(self) -> list[Activity]:
        return in_scope(self.listed, self.client.settings.activity_ids)

    @cached_property
    def listed(self) -> list[Activity]:
        """Every activity ``/activities`` lists (every type, and each ``activity_ids`` names),
        oldest first, with stream names."""
        listed = list(
            self.client.iter_collection(
                self.client.url("v1", "activities"), what="list the community's activities"
            )
        )
        by_id = {str(a.get("id")).lower(): a for a in listed if isinstance(a, Mapping) and a.get("id")}
        for activity_id in self.client.settings.activity_ids or ():
            if activity_id.lower() not in by_id:
                by_id[activity_id.lower()] = self._get_activity(activity_id)
        # Names are assigned over every listed activity, oldest first, so a stream
        # keeps its name when other activities come, go or are (de)selected.
        ordered = sorted(by_id.values(), key=lambda a: (str(a.get("createDate") or ""), str(a["id"])))
        # A stream the catalog in use maps to an activity by id keeps its name, even
        # when the survey was renamed since (catalog_keys).
        pinned = {
            str(a["id"]): self._pinned_names[str(a["id"]).lower()]
            for a in ordered
            if str(a["id"]).lower() in self._pinned_names
        }
        # Every name the catalog gave an activity stays reserved, also when that activity
        # is gone: another survey that now has its name must not read into its stream.
        names = assign_names(
            [(str(a["id"]), str(a.get("name") or "")) for a in ordered],
            fallback_prefix="activity",
            reserved=(*FIXED_STREAMS, *self._pinned_names.values()),
            naming=self.client.settings.stream_naming,
            pinned=pinned,
        )
        return [self._activity(a, names) for a in ordered]

    @staticmethod
    def _activity(a: Mapping[str, Any], names: Mapping[str, str]) -> Activity:
        return Activity(
            id=str(a["id"]),
            name=str(a.get("name") or ""),
            activity_type=a.get("activityType"),
            stream_name=names[str(a["id"])],
            status=_text(a.get("status")),
            closed_on=_text(a.get("closedOn")),
            created=_text(a.get("createDate")),
            last_update=_text(a.get("lastUpdateDate")),
        )

    def _get_activity(self, activity_id: str) -> dict[str, Any]:
        try:
            activity = self.client.get_json(
                self.client.url("v1", f"activities/{quote(activity_id, safe='')}"),
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
        """The activity in scope whose stream this is (a lookup: called once per catalog stream)."""
        return self._by_stream.get(stream_name)

    @cached_property
    def _by_stream(self) -> dict[str, Activity]:
        return {a.stream_name: a for a in reversed(self.activities)}  # the first one wins, as before

    @cached_property
    def member_variables(self) -> list[MemberVariable]:
        """The member profile variables ``/membervariables`` lists, oldest first."""
        items = self.client.iter_collection(
            self.client.url("v1", "membervariables"), what="list the member variables"
        )
        ordered = sorted(
            (v for v in items if isinstance(v, Mapping) and v.get("id")),
            key=lambda v: (str(v.get("createDate") or ""), str(v["id"])),
        )
        return [
            MemberVariable(
                id=str(v["id"]),
                name=str(v.get("name") or ""),
                data_type=str(v.get("dataType") or v.get("datatype") or v.get("type") or ""),
                is_sensitive=v.get("isSensitive"),
            )
            for v in ordered
        ]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# -- each activity's field definitions --------------------------------------------------


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tap-alida``, else ``~/.cache/tap-alida``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tap-alida"


class DefinitionsCache:
    """Raw ``definition`` objects of closed activities, one JSON file each."""

    def __init__(self, cache_dir: str | None, base_url: str, community: str) -> None:
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        key = hashlib.sha256(f"{base_url}|{community}".encode()).hexdigest()[:16]
        self.folder = root / key
        self._warned = False

    @staticmethod
    def _identity(activity: Any) -> dict[str, Any]:
        return {"closed_on": activity.closed_on, "last_update": activity.last_update}

    def _path(self, activity_id: str) -> Path:
        return self.folder / f"{hashlib.sha256(activity_id.encode()).hexdigest()[:32]}.json"

    def get(self, activity: Any) -> dict[str, Any] | None:
        """The cached raw definition, when the activity is closed and unchanged since."""
        if not activity.is_closed or not activity.closed_on:
            return None
        try:
            entry = json.loads(self._path(activity.id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self._warn("read", exc)
            return None
        if not isinstance(entry, dict) or entry.get("activity_id") != activity.id:
            return None
        if entry.get("activity") != self._identity(activity) or not isinstance(entry.get("definition"), dict):
            return None
        definition: dict[str, Any] = entry["definition"]
        return definition

    def put(self, activity: Any, definition: dict[str, Any]) -> None:
        """Keep a closed activity's definition (open ones may still change: not kept)."""
        if not activity.is_closed or not activity.closed_on:
            return
        entry = {"activity_id": activity.id, "activity": self._identity(activity), "definition": definition}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(entry, out, ensure_ascii=False)
            os.replace(name, self._path(activity.id))
        except OSError as exc:
            self._warn("write", exc)

    def _warn(self, verb: str, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "Could not %s the definitions cache in %s (%s); closed surveys are exported again to "
                "read their questions. Set 'cache_dir' to a writable folder to save those exports.",
                verb,
                self.folder,
                type(exc).__name__,
            )


class Definitions:
    """The field definitions of one run, each found once (and the batches made to read them)."""

    def __init__(self, settings: AlidaSettings, plan: ExportPlan) -> None:
        self.settings = settings
        self.plan = plan
        self.cache = DefinitionsCache(settings.cache_dir, settings.base_url, settings.community)
        self._lock = threading.Lock()
        self._definitions: dict[str, list[FieldDefinition]] = {}
        self._batches: dict[str, Batch] = {}

    def discovery_batches(self) -> dict[str, dict[str, Any]]:
        """Activity id → STATE entry of each batch this process created (or re-used) for an
        activity, for the catalog a discovery writes (``catalog_keys``)."""
        with self._lock:
            return {activity_id: batch.to_state() for activity_id, batch in self._batches.items()}

    def made_for(self, activity: Activity) -> Batch | None:
        """The batch this process made (or re-used) to read the activity's definition."""
        with self._lock:
            return self._batches.get(activity.id)

    def start_definition_export(
        self, activity: Activity, discovered: Any = None
    ) -> ExportJob[list[FieldDefinition]] | None:
        """Start an export that reads only the ``definition`` part of the activity's file.

        None when no export is needed: the definition is known from this run or,
        for a closed survey, from the definitions cache (``DefinitionsCache``). The batch
        discovery made (``discovered``, from the catalog) is read when still usable.
        """
        if self.known_definition(activity) is not None:
            return None
        plan = self.plan

        def read(batch: Batch) -> list[FieldDefinition]:
            with self._lock:
                self._batches[activity.id] = batch  # re-used if this process also syncs it
            return self.definition_from(activity, plan.exports.read_definition(batch))

        # Discovery's batch (from the catalog) serves for reading the fields only.
        batch = plan.lifecycle.resumable(discovered, activity.label, activity.id, source=DISCOVERY)
        return plan.start(
            f"definition:{activity.id}",
            activity.label,
            partial(plan.exports.create_activity_batch, activity.id, activity.label),
            read,
            reuse=[batch] if batch else [],
        )

    def definition(self, activity: Activity) -> list[FieldDefinition]:
        """The activity's field definitions: known from this run or the definitions cache, else
        from the activity's downloaded file when this run has it, else from a definition export."""
        known = self.known_definition(activity)
        if known is not None:
            return known
        file_job = self.plan.jobs.get(f"file:{activity.id}")
        if file_job is not None:
            return self.definition_from(activity, self.plan.result(file_job).first("definition"))
        job = self.start_definition_export(activity)
        return self.plan.result(job) if job is not None else self.definition(activity)

    def known_definition(self, activity: Activity) -> list[FieldDefinition] | None:
        """The definitions this run already has, or a closed survey's from the cache."""
        with self._lock:
            cached = self._definitions.get(activity.id)
        if cached is not None:
            return cached
        raw = self.cache.get(activity)
        if raw is None:
            return None
        fields = parse_definition(raw, activity.label)
        with self._lock:
            self._definitions[activity.id] = fields
        return fields

    def definition_from(self, activity: Activity, raw: Any) -> list[FieldDefinition]:
        """Parse an export's ``definition``, remember it for this run and cache it (closed surveys)."""
        fields = parse_definition(raw, activity.label)
        with self._lock:
            self._definitions[activity.id] = fields
        if isinstance(raw, dict):
            self.cache.put(activity, raw)
        return fields

    def layout(self, activity: Activity, fields: list[FieldDefinition], warn: WarnOnce) -> ActivityLayout:
        """The activity stream's columns under this run's naming and multi-select settings."""
        settings = self.settings
        return ActivityLayout(
            fields,
            column_naming=settings.column_naming,
            set_columns=settings.set_columns,
            activity_label=activity.label,
            warn=warn,
        )
