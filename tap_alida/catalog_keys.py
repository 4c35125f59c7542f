"""The tap's own keys in a catalog's stream metadata: written at discovery, read at sync.

Two facts must travel from the discovery process to the sync process (``meltano
run`` runs them as two processes, with the catalog file between them):

* ``alida-activity-id``: the activity an activity stream exports. The sync maps
  each stream to its activity by this id, not by name, so a survey renamed in
  Alida keeps its stream (and its warehouse table), and a stream name that now
  belongs to another survey can never pull that survey's rows into it.
* ``alida-batch``: the batch discovery created to read the activity's fields
  (the same entry STATE keeps in ``alida_batch``). A sync that starts within
  ``DISCOVERY_BATCH_MAX_AGE_SECONDS`` re-uses it instead of exporting the same
  survey a second time (``export.plan``).

Why not through the SDK's metadata classes: ``StreamMetadata`` keeps only the
Singer keys (it drops unknown ones when it parses a catalog and has no place for
them when it writes one). So the keys are added to the discovery output as a
dict (``TapAlida.catalog_dict``) and read from the catalog as given, before the
SDK parses it. Both are public paths; Meltano passes unknown metadata through.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("tap_alida.catalog_keys")

ACTIVITY_ID_KEY = "alida-activity-id"
DISCOVERY_BATCH_KEY = "alida-batch"

# Discovery's batch is re-used by a sync that starts within this time. Older, the
# sync exports again: its rows should be as of the sync, not of an old discovery
# (a catalog Meltano cached days ago carries batches of that day).
DISCOVERY_BATCH_MAX_AGE_SECONDS = 3600


@dataclass
class CatalogKeys:
    """What the catalog in use says about activities: stream names and discovery's batches."""

    stream_names: dict[str, str] = field(default_factory=dict)  # activity id (lower case) → stream
    batches: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # activity id → batch entry

    @classmethod
    def read(cls, catalog: Any) -> CatalogKeys:
        """The keys of a catalog given as a dict (anything else, or a malformed entry: none)."""
        keys = cls()
        streams = catalog.get("streams") if isinstance(catalog, Mapping) else None
        for entry in streams if isinstance(streams, list) else []:
            if not isinstance(entry, Mapping):
                continue
            root = _root_metadata(entry)
            activity_id = root.get(ACTIVITY_ID_KEY)
            name = entry.get("tap_stream_id") or entry.get("stream")
            if not isinstance(activity_id, str) or not activity_id or not isinstance(name, str):
                continue
            if name in keys.stream_names.values() or activity_id.lower() in keys.stream_names:
                # A hand-edited catalog naming one stream or activity twice: the first wins.
                logger.warning(
                    "The catalog gives activity %s to more than one stream (or stream %r to more than "
                    "one activity); stream %r is matched by its name instead. Run discovery again.",
                    activity_id,
                    name,
                    name,
                )
                continue
            keys.stream_names[activity_id.lower()] = name
            batch = root.get(DISCOVERY_BATCH_KEY)
            if isinstance(batch, Mapping):
                keys.batches[activity_id.lower()] = batch
        return keys

    def batch(self, activity_id: str) -> Mapping[str, Any] | None:
        """The batch discovery created for the activity, if the catalog carries one."""
        return self.batches.get(activity_id.lower())


def add_keys(catalog: dict[str, Any], activity_ids: Mapping[str, str], batches: Mapping[str, Any]) -> None:
    """Write ``alida-activity-id`` (and ``alida-batch`` when discovery made one) into the
    top-level metadata of each activity stream of a discovery catalog, in place.

    ``activity_ids``: stream name → activity id; ``batches``: activity id → STATE entry.
    """
    for entry in catalog.get("streams", []):
        activity_id = activity_ids.get(entry.get("tap_stream_id"))
        if activity_id is None:
            continue
        root = _root_metadata(entry, create=True)
        root[ACTIVITY_ID_KEY] = activity_id
        if activity_id in batches:
            root[DISCOVERY_BATCH_KEY] = batches[activity_id]


def _root_metadata(entry: Any, *, create: bool = False) -> dict[str, Any]:
    """The stream's top-level (breadcrumb ``[]``) metadata dict ({} when there is none)."""
    if not isinstance(entry, Mapping):
        return {}
    items = entry.get("metadata")
    for item in items if isinstance(items, list) else []:
        metadata = item.get("metadata") if isinstance(item, Mapping) else None
        if isinstance(item, Mapping) and item.get("breadcrumb") == [] and isinstance(metadata, dict):
            return metadata
    if create and isinstance(items, list):
        root: dict[str, Any] = {}
        items.insert(0, {"breadcrumb": [], "metadata": root})
        return root
    return {}
