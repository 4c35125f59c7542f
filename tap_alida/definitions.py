"""Field definitions of closed surveys, kept on disk between runs.

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
from pathlib import Path
from typing import Any

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
