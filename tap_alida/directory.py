"""The community's directory: activities and member variables as Alida lists them, with the
stream name of each activity, fetched once per run and shared by discovery and the sync.

Which activities a run covers is decided in one place: ``Directory.activities`` (those
in scope, ``in_scope``, of this run's shard).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import quote

from tap_alida.errors import AlidaError, NotFoundError
from tap_alida.export.scheduler import shard_of
from tap_alida.http.client import AlidaClient
from tap_alida.modelling.naming import assign_names

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
