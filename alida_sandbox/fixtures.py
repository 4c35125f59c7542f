"""A community served from a folder of export files, byte for byte."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson

from alida_sandbox.community import ActivityStats, ResponseIds


class FixtureCommunity:
    """Serves ``DIR/activities/<id>.json`` byte for byte and filters ``DIR/members.json``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        files = sorted((directory / "activities").glob("*.json"))
        self._files = {p.stem: p for p in files}
        listing = directory / "activities.json"
        if listing.exists():
            self.activities = json.loads(listing.read_text(encoding="utf-8"))
        else:
            self.activities = [
                {"id": stem, "name": stem, "activityType": "Survey", "status": "open"} for stem in self._files
            ]
        self._truth_cache: dict[str, dict[str, Any]] = {}

    def has_file(self, activity_id: str) -> bool:
        return activity_id in self._files

    def activity_file(
        self, activity_id: str, batch_id: str, workdir: Path, *, records_first: bool = False
    ) -> list[bytes | Path]:
        """Fixture files are served byte for byte (``records_first`` cannot reorder them)."""
        return [self._files[activity_id]]

    def activity_truth(self, activity_id: str, workdir: Path) -> dict[str, Any]:
        if activity_id not in self._truth_cache:
            path = self._files[activity_id]
            with open(path, "rb") as f:
                definition: dict[str, Any] = next(ijson.items(f, "definition"), {}) or {}
            stats = ActivityStats(fields=len(definition.get("fields") or []))
            response_id = ResponseIds()
            with open(path, "rb") as f:
                for record in ijson.items(f, "records.item", use_float=True):
                    stats.add_record(record, response_id(record))
            self._truth_cache[activity_id] = stats.as_dict()
        return self._truth_cache[activity_id]

    def member_variables(self) -> list[dict[str, Any]]:
        listing = self.directory / "membervariables.json"
        if listing.exists():
            return list(json.loads(listing.read_text(encoding="utf-8")))
        seen: dict[str, dict[str, Any]] = {}
        for member in self.iter_members():
            for v in member.get("variables") or []:
                seen.setdefault(
                    v["id"],
                    {
                        "id": v["id"],
                        "name": v.get("name"),
                        "dataType": v.get("dataType"),
                        "isSensitive": v.get("isSensitive"),
                    },
                )
        return list(seen.values())

    def iter_members(self) -> Iterator[dict[str, Any]]:
        path = self.directory / "members.json"
        if not path.exists():
            return
        with open(path, "rb") as f:
            yield from ijson.items(f, "members.item", use_float=True)
