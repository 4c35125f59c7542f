"""What a sandbox community holds, and how its export files are written.

Two sources, one interface (``CommunityData``):

* ``GeneratedCommunity``: deterministic for a seed. Every record is derived from
  a per-activity random stream, so files of any size are written record by
  record and never held in memory. It covers what ``docs/sandbox.md`` describes:
  every data type, options with visibility active/hidden/deleted, multi-valued
  sets, empty ``values``, skipped questions, a member with two records in one
  activity, unicode and very long question names, duplicate names.
* ``FixtureCommunity``: serves the files of a folder byte for byte.

``truth()`` gives counts and digests computed from the same source, so tests can
check that the tap delivered every record exactly once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

ISO = "%Y-%m-%dT%H:%M:%SZ"
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(ISO)


# The sandbox parses date-times itself (it shares no code with the tap it checks):
# what §11 accepts, 2026-11-20T00:00:00Z with optional fraction and offset.
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_iso(value: Any) -> dt.datetime | None:
    """An aware UTC datetime from an ISO-8601 text, None when it is not one."""
    if not isinstance(value, str):
        return None
    match = _ISO.match(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    offset = dt.timedelta(0)
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    try:
        moment = dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            micro,
            tzinfo=dt.timezone(offset),
        )
    except ValueError:
        return None
    return moment.astimezone(dt.UTC)


class ResponseIds:
    """The tap's documented response ids: the record's id, else ``<member>:<n>``."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def __call__(self, record: Mapping[str, Any]) -> str:
        own = record.get("id", record.get("responseId"))
        if own is not None:
            return str(own)
        member = str(record.get("ownerId") or "")
        n = self._counts.get(member, 0)
        self._counts[member] = n + 1
        return f"{member}:{n}"


class Digest:
    """Order-independent digest of a multiset of strings (sum of SHA-256 mod 2^256)."""

    def __init__(self) -> None:
        self.total = 0

    def add(self, text: str) -> None:
        self.total = (self.total + int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")) % (1 << 256)

    def hexdigest(self) -> str:
        return f"{self.total:064x}"


@dataclass
class ActivityStats:
    """Truth about one activity's records."""

    records: int = 0
    values: int = 0
    fields: int = 0
    members: set[str] = field(default_factory=set)
    digest: Digest = field(default_factory=Digest)

    def add_record(self, record: Mapping[str, Any], response_id: str) -> None:
        self.records += 1
        self.members.add(str(record.get("ownerId")))
        for value in record.get("fields") or ():
            self.values += len(value.get("values") or ())
        self.digest.add(response_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "values": self.values,
            "fields": self.fields,
            "members_with_records": len(self.members),
            "response_id_digest": self.digest.hexdigest(),
        }


class CommunityData(Protocol):
    """The interface the server needs from a community's data."""

    activities: list[dict[str, Any]]

    def member_variables(self) -> list[dict[str, Any]]: ...

    def activity_file(
        self, activity_id: str, batch_id: str, workdir: Path, *, records_first: bool = False
    ) -> list[bytes | Path]:
        """The file as segments (bytes or whole files) to be served one after another."""

    def activity_truth(self, activity_id: str, workdir: Path) -> dict[str, Any]: ...

    def iter_members(self) -> Iterator[dict[str, Any]]:
        """Every member with every variable (before ``sinceDatetime`` filtering)."""


# --------------------------------------------------------------------------- members (shared)


@dataclass
class MemberOverlay:
    """Changes made through ``/_sandbox/members/touch``: member id → variable id → variable."""

    changes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def apply(self, member: dict[str, Any]) -> dict[str, Any]:
        updates = self.changes.get(member["memberId"])
        if not updates:
            return member
        variables = [updates.get(v["id"], v) for v in member.get("variables", [])]
        known = {v["id"] for v in variables}
        variables += [v for vid, v in updates.items() if vid not in known]
        return {**member, "variables": variables}


def filter_member(member: dict[str, Any], since: dt.datetime | None) -> dict[str, Any] | None:
    """Keep variables whose effectiveDate is after ``since``; None when none is left."""
    if since is None:
        return member
    kept = []
    for variable in member.get("variables") or []:
        effective = parse_iso(variable.get("effectiveDate"))
        if effective is not None and effective > since:
            kept.append(variable)
    return {**member, "variables": kept} if kept else None


def write_member_file(
    members: Iterator[dict[str, Any]],
    all_members: Iterator[dict[str, Any]],
    out: IO[str] | Any,
    *,
    batch_id: str,
    since: str | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """Write a §4.2 member file; returns its truth (counts and lastSyncDate).

    ``all_members`` is a second, independent pass used to find the newest
    effectiveDate (``lastSyncDate``) before ``members`` is written.
    """
    newest: dt.datetime | None = None
    for member in all_members:
        for variable in member.get("variables") or []:
            effective = parse_iso(variable.get("effectiveDate"))
            if effective is not None and (newest is None or effective > newest):
                newest = effective
    since_dt = parse_iso(since)
    head = {
        "id": batch_id,
        "exportOptions": {"sinceDatetime": since} if since else {},
        "exportDate": iso(now),
        "lastSyncDate": iso(newest) if newest else iso(now),
    }
    out.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "members": [')
    counts = {"members": 0, "member_variables": 0, "values": 0}
    for member in members:
        kept = filter_member(member, since_dt)
        if kept is None:
            continue
        if counts["members"]:
            out.write(",")
        out.write(json.dumps(kept, ensure_ascii=False))
        counts["members"] += 1
        counts["member_variables"] += len(kept["variables"])
        counts["values"] += sum(len(v.get("values") or []) for v in kept["variables"])
    out.write("]}")
    return {**counts, "lastSyncDate": head["lastSyncDate"]}
