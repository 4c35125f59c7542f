"""A batch export as the tap knows it, and how it is kept in STATE for a rerun."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACTIVITY = "activity"
MEMBERS = "members"

# A recorded creation time this far ahead of this machine's clock is not believed
# (a hand-edited entry, or a clock far off): the batch is not re-used.
FUTURE_TOLERANCE_SECONDS = 300.0


@dataclass
class Batch:
    """One batch export on Alida's side, as far as the tap knows it."""

    kind: str  # ACTIVITY or MEMBERS
    id: str
    label: str  # e.g. "activity 'Brand tracker' (9b2e…)" or "member profiles"
    activity_id: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.monotonic)
    # When Alida says the batch was created (the create answer's Date header): the
    # time compared with an activity's closedOn, both from Alida's clock, so that
    # this machine's clock skew cannot make a closed survey look exported after it closed.
    server_created: str | None = None
    since: str | None = None  # member exports: the sinceDatetime sent
    resumed: bool = False
    # Where a re-used batch comes from, for the log: "the previous run" (STATE) or
    # "discovery" (the catalog, see catalog_keys).
    source: str = "the previous run"

    def describe(self) -> str:
        return f"{self.label}, batch {self.id}"

    def to_state(self) -> dict[str, Any]:
        """What STATE keeps so that a rerun after a crash can re-use this batch.

        The activity id (activity batches) and ``sinceDatetime`` (member batches)
        are kept so that a rerun re-uses a batch only for the export it was made
        for (``matches``): a stream renamed to another activity, or a STATE file
        copied between projects, must not load one survey's file as another's.
        """
        created = time.time() - (time.monotonic() - self.created_at)
        # Whole seconds: a target may parse a JSON fraction as a Decimal it cannot write back
        # (target-postgres failed so on a mid-run STATE), and a second is precise enough here.
        entry: dict[str, Any] = {"id": self.id, "kind": self.kind, "created_at": int(created)}
        if self.server_created:
            entry["server_created"] = self.server_created
        if self.kind == MEMBERS:
            entry["since"] = self.since
        else:
            entry["activity_id"] = self.activity_id
        return entry

    @staticmethod
    def mismatch(entry: Mapping[str, Any], kind: str, activity_id: str | None) -> str | None:
        """Why a STATE entry was not made for this export (None: it was)."""
        if entry.get("kind") != kind:
            return f"it is a {entry.get('kind')!r} batch, not an {kind!r} one"
        if kind == ACTIVITY:
            recorded = entry.get("activity_id")
            if recorded is None:
                return "STATE does not record which activity it belongs to"
            if str(recorded).lower() != str(activity_id).lower():
                return f"it belongs to activity {recorded}"
        return None

    @classmethod
    def from_state(
        cls, entry: Mapping[str, Any], label: str, activity_id: str | None, source: str = "the previous run"
    ) -> Batch | None:
        """The batch a previous run (or discovery) recorded, or None when the entry is unusable."""
        try:
            batch_id, kind, created = str(entry["id"]), str(entry["kind"]), float(entry["created_at"])
        except (KeyError, TypeError, ValueError):
            return None
        if not math.isfinite(created) or created > time.time() + FUTURE_TOLERANCE_SECONDS:
            return None  # NaN, or a time ahead of this clock: its age cannot be trusted
        return cls(
            kind=kind,
            id=batch_id,
            label=label,
            activity_id=activity_id,
            created_at=time.monotonic() - max(0.0, time.time() - created),
            since=entry.get("since"),
            server_created=entry.get("server_created")
            if isinstance(entry.get("server_created"), str)
            else None,
            resumed=True,
            source=source,
        )
