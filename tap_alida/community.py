"""What the tap knows about one community during one run.

Discovery and sync both need the same facts: which activities are in scope and
what their streams are called, each activity's field definitions, the member
variables, and the member export both member streams read. This object fetches
each fact once per run and shares it, so that, for instance, the batch created
to discover an activity's fields is re-used when the same process syncs it, and
the member export is downloaded once for two streams.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, TypeVar
from urllib.parse import quote

from tap_alida.definitions import DefinitionsCache
from tap_alida.errors import (
    AlidaError,
    NotFoundError,
)
from tap_alida.export.batch import Batch
from tap_alida.export.lifecycle import DISCOVERY
from tap_alida.export.plan import ExportJob, ExportPlan
from tap_alida.http.client import AlidaClient
from tap_alida.modelling.layout import ActivityLayout
from tap_alida.modelling.naming import assign_names
from tap_alida.modelling.tally import Tally
from tap_alida.modelling.types import FieldDefinition, WarnOnce, parse_definition

logger = logging.getLogger("tap_alida.community")

T = TypeVar("T")


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


class Community:
    """Per-run cache of activities, definitions, batches and files."""

    def __init__(
        self, client: AlidaClient, plan: ExportPlan, stream_names: Mapping[str, str] | None = None
    ) -> None:
        self.client = client
        self.plan = plan
        # activity id (lower case) → stream name, from the catalog in use (catalog_keys)
        # (never a fixed stream's name: a hand-edited catalog must not hide a survey there)
        self._pinned_names = {k: v for k, v in (stream_names or {}).items() if v not in FIXED_STREAMS}
        self._lock = threading.Lock()
        self._activities: list[Activity] | None = None
        self._listed: list[Activity] = []
        self._definitions: dict[str, list[FieldDefinition]] = {}
        settings = client.settings
        self.definitions_cache = DefinitionsCache(settings.cache_dir, settings.base_url, settings.community)
        self._batches: dict[str, Batch] = {}
        self._member_variables: list[MemberVariable] | None = None
        # Counted data problems of this run, shared by every stream (see tally.py).
        self.tally = Tally(logging.getLogger("tap_alida.modelling.records"))

    # -- activities -------------------------------------------------------------------

    @property
    def activities(self) -> list[Activity]:
        """The activities in scope: ``activity_ids``, or every ``Survey``, with stream names."""
        if self._activities is None:
            self._activities = self._load_activities()
        return self._activities

    @property
    def listed(self) -> list[Activity]:
        """Every activity ``/activities`` lists (every type), oldest first, with stream names."""
        self.activities  # noqa: B018 - loads both lists
        return self._listed

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
        self._listed = [self._activity(a, names) for a in ordered]
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
        return [self._activity(a, names) for a in chosen]

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

    def discovery_batches(self) -> dict[str, dict[str, Any]]:
        """Activity id → STATE entry of each batch this process created (or re-used) for an
        activity, for the catalog a discovery writes (``catalog_keys``)."""
        with self._lock:
            return {activity_id: batch.to_state() for activity_id, batch in self._batches.items()}

    # -- exports ----------------------------------------------------------------------------

    def made_for(self, activity: Activity) -> Batch | None:
        """The batch this process made (or re-used) to read the activity's definition."""
        with self._lock:
            return self._batches.get(activity.id)

    def start_definition_export(
        self, activity: Activity, discovered: Any = None
    ) -> ExportJob[list[FieldDefinition]] | None:
        """Start an export that reads only the ``definition`` part of the activity's file.

        None when no export is needed: the definition is known from this run or,
        for a closed survey, from the definitions cache (``definitions``). The batch
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
        raw = self.definitions_cache.get(activity)
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
            self.definitions_cache.put(activity, raw)
        return fields

    def layout(self, activity: Activity, fields: list[FieldDefinition], warn: WarnOnce) -> ActivityLayout:
        """The activity stream's columns under this run's naming and multi-select settings."""
        settings = self.client.settings
        return ActivityLayout(
            fields,
            column_naming=settings.column_naming,
            set_columns=settings.set_columns,
            activity_label=activity.label,
            warn=warn,
        )

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


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
