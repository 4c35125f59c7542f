"""Each activity's field definitions for one run, and those of closed surveys kept on disk.

``Definitions`` knows each activity's fields once per run: from this run, from the
cache below (closed surveys), from the activity's downloaded file, else from an
export that reads only the ``definition`` part of a file (discovery).

The cache (``DefinitionsCache``):

Discovery needs each activity's field definitions, and Alida has no endpoint
for them: every discovery would export every survey (``docs/api.md`` §7.1),
closed ones included. A closed survey's questions cannot change while it stays
closed, so its definition is kept in ``cache_dir`` (per community and activity)
and used again while the listing shows it closed with the same ``closedOn`` and
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
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tap_alida.export.batch import Batch
from tap_alida.export.lifecycle import DISCOVERY
from tap_alida.export.plan import ExportJob, ExportPlan
from tap_alida.modelling.layout import ActivityLayout
from tap_alida.modelling.types import FieldDefinition, WarnOnce, parse_definition
from tap_alida.settings import AlidaSettings

if TYPE_CHECKING:
    from tap_alida.directory import Activity

logger = logging.getLogger("tap_alida.definitions")


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
