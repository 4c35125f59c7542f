"""A warehouse model: what an upserting Singer target that honours ACTIVATE_VERSION holds.

It plays a tap's messages the way target-postgres (MeltanoLabs) does: a RECORD replaces
the row with the same key properties (a full row, never a patch), carrying the
message's ``version``; ACTIVATE_VERSION deletes every row of that stream whose version
is missing or older (soft-deleted rows count as deleted); a BATCH message loads its
files' rows as they are. Comparing the live rows of an incremental warehouse with those
of a fresh full load is the invariant the tap promises.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Differ between any two loads by construction: the export a row came from (its batch, and
# for member rows the lastSyncDate of its member export: an incremental member export loads
# only changed members, so unchanged rows keep an earlier one), and what the activities
# stream says about earlier runs (a fresh load has none).
SKIPPED_COLUMNS = frozenset({"batch_id", "last_sync_date", "last_exported_at", "last_export_records"})


class Warehouse:
    """Tables of an upserting target: stream → key → (version, row)."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, ...]] = {}
        self.tables: dict[str, dict[tuple[Any, ...], tuple[int | None, dict[str, Any]]]] = {}

    def load(self, messages: Iterable[Mapping[str, Any]]) -> Warehouse:
        for message in messages:
            kind, stream = message.get("type"), message.get("stream")
            if kind == "SCHEMA":
                self.keys[stream] = tuple(message.get("key_properties") or ())
                self.tables.setdefault(stream, {})
            elif kind == "RECORD":
                self._upsert(stream, message["record"], message.get("version"))
            elif kind == "ACTIVATE_VERSION":
                table = self.tables.get(stream, {})
                for key in [k for k, (v, _) in table.items() if v is None or v < message["version"]]:
                    del table[key]
            elif kind == "BATCH":
                for url in message["manifest"]:
                    path = Path(urlsplit(url).path)
                    opener = gzip.open if path.suffix == ".gz" else open
                    with opener(path, "rt", encoding="utf-8") as rows:
                        for line in rows:
                            self._upsert(stream, json.loads(line), None)
        return self

    def _upsert(self, stream: str, row: dict[str, Any], version: int | None) -> None:
        key = tuple(row.get(k) for k in self.keys[stream])
        self.tables.setdefault(stream, {})[key] = (version, row)

    def live(
        self,
        stream: str,
        skipped: frozenset[str] = frozenset(),
        stated: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Counter[str]:
        """The stream's rows as JSON texts (a multiset), without the columns that differ by
        construction (and ``skipped``); ``stated(stream, row)``: the row as a stated exception
        allows it to be compared."""
        left_out = SKIPPED_COLUMNS | skipped
        return Counter(
            # A column a row has no value for is null in a table: absent and null compare equal.
            json.dumps({k: v for k, v in row.items() if k not in left_out and v is not None}, sort_keys=True)
            for _, row in self.tables.get(stream, {}).values()
            for row in [stated(stream, row) if stated else row]
        )


def differences(
    incremental: Warehouse,
    fresh: Warehouse,
    extra_allowed: Callable[[str, dict[str, Any]], bool] | None = None,
    *,
    skipped: frozenset[str] = frozenset(),
    stated: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
    missing_allowed: Callable[[str, dict[str, Any]], bool] | None = None,
) -> dict[str, str]:
    """Per table, how the incremental warehouse's live rows differ from a fresh full load's.

    ``extra_allowed(table, row)``: an extra row a stated exception allows (never a missing one);
    ``skipped``: columns a stated exception leaves out of the comparison; ``stated(table, row)``:
    an incremental row as a stated exception lets it compare; ``missing_allowed(table, row)``: a
    fresh row a stated exception lets the incremental warehouse lack.
    """
    found = {}
    for stream in sorted(set(fresh.tables) | set(incremental.tables)):
        expected, got = fresh.live(stream, skipped), incremental.live(stream, skipped, stated)
        missing, extra = expected - got, got - expected
        if extra_allowed is not None:
            extra = Counter(
                {row: n for row, n in extra.items() if not extra_allowed(stream, json.loads(row))}
            )
        if missing_allowed is not None:
            missing = Counter(
                {row: n for row, n in missing.items() if not missing_allowed(stream, json.loads(row))}
            )
        if missing or extra:
            found[stream] = (
                f"{sum(missing.values())} rows missing or different, {sum(extra.values())} extra "
                f"(of {sum(expected.values())}); e.g. extra {list(extra)[:1]}"
            )
    return found
