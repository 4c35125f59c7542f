"""A generated community: deterministic for a seed, files of any size written record by record.

It covers what ``docs/sandbox.md`` describes: every data type, options with
visibility active/hidden/deleted, multi-valued sets, empty ``values``, skipped
questions, a member with two records in one activity, unicode and very long
question names, duplicate names; and the changes tests make between runs
(activities created, closed, re-opened, renamed; drift; deleted responses).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from alida_sandbox.community import EPOCH, ActivityStats, ResponseIds, iso

_SURVEY_NAMES = [
    "Customer Satisfaction",
    "Brand Tracker — été 2026",
    "Customer Satisfaction",  # a deliberate name clash
    "Product Concept Test",
    "Website Usability Pulse",
    "Net Promoter Score Q4",
]
_PHRASES = [
    "Fast delivery – très bien",
    "Too expensive.",
    "Great support 😀",
    'He said "wow", then left',
    "Línea 1\nLínea 2",
    "Ødegaard's café, naïve façade",
    "料金が高すぎます",
    "",
]
_CITIES = ["Montréal", "Zürich", "São Paulo", "Reykjavík", "Kraków", "Toronto", "London"]


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def _options(
    rng: random.Random, active: list[str], hidden: list[str], deleted: list[str]
) -> list[dict[str, Any]]:
    out = []
    for names, visibility in ((active, "active"), (hidden, "hidden"), (deleted, "deleted")):
        for name in names:
            out.append({"id": _guid(rng), "name": name, "meta": {"visibility": visibility}})
    return out


def _field(
    rng: random.Random, name: str, data_type: str, options: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    type_info: dict[str, Any] = {"dataType": data_type}
    if options is not None:
        type_info["values"] = options
    return {"id": _guid(rng), "name": name, "meta": {"visibility": "active"}, "type": type_info}


class GeneratedCommunity:
    """A deterministic community of ``n_activities`` surveys, ``n_members`` members."""

    def __init__(
        self,
        *,
        seed: int = 1,
        n_activities: int = 3,
        n_members: int = 50,
        n_responses: int = 40,
        n_fields: int = 12,
        anomalies: bool = False,
    ) -> None:
        self.seed = seed
        # True (``--anomalies``): deliberate oddities, i.e. a second value on 2 % of
        # single-value string/double answers (the tap warns) and open surveys with a
        # close scheduled years ahead. False (the default): data reads like a real
        # community's and a tap has nothing to warn about.
        self.anomalies = anomalies
        self.n_members = max(1, n_members)
        self.n_responses = max(0, n_responses)
        self.n_fields = max(1, n_fields)
        rng = random.Random(f"{seed}:community")
        self.member_ids = [_guid(random.Random(f"{seed}:member:{i}")) for i in range(self.n_members)]
        self.activities = []
        for i in range(n_activities):
            name = _SURVEY_NAMES[i % len(_SURVEY_NAMES)]
            if i >= len(_SURVEY_NAMES):
                name = f"{name} (wave {i // len(_SURVEY_NAMES) + 1})"
            self.activities.append(self._activity(_guid(rng), name, "Survey", i, anomalies))
        self.activities.append(
            self._activity(_guid(rng), "Community Forum", "Forum", n_activities, anomalies)
        )
        self._variables = self._make_variables()
        self._truth_cache: dict[str, dict[str, Any]] = {}
        self._build_lock = threading.Lock()
        self._drift: dict[str, tuple[str, ...]] = {}  # activity id → kinds of drift applied
        self._deleted: dict[str, set[int]] = {}  # activity id → indices of deleted responses

    @staticmethod
    def _activity(
        activity_id: str, name: str, activity_type: str, i: int, anomalies: bool = False
    ) -> dict[str, Any]:
        """Every other activity is closed (``closedOn`` in the past); with ``anomalies``, every
        fourth is open with a scheduled close (``closedOn`` years ahead: still open)."""
        created = EPOCH + dt.timedelta(days=i)
        activity = {
            "id": activity_id,
            "name": name,
            "activityType": activity_type,
            "status": "open" if i % 2 == 0 else "closed",
            "createDate": iso(created),
            "createdBy": "1f0e3c9a-0b8d-4b7e-9a6c-a3780118a164",
            "excludeFromParticipation": False,
        }
        if i % 2:
            activity["closedOn"] = iso(created + dt.timedelta(days=30))
        elif anomalies and i % 4 == 0:
            # A scheduled close years ahead: the same for every sandbox of a seed.
            activity["closedOn"] = iso(created + dt.timedelta(days=3 * 365))
        return activity

    # -- activities come, close and re-open (POST /_sandbox/activities…) ----------------------

    def add_activity(self, name: str, activity_type: str = "Survey") -> dict[str, Any]:
        """A new activity, created now; its questions and responses are generated like the others'."""
        with self._build_lock:
            rng = random.Random(f"{self.seed}:added:{len(self.activities)}")
            activity = self._activity(_guid(rng), name, activity_type, 0)
            activity.pop("closedOn", None)
            activity["createDate"] = iso(dt.datetime.now(dt.UTC))
            self.activities.append(activity)
        return dict(activity)

    def close_activity(self, activity_id: str) -> dict[str, Any]:
        """Status ``closed``, ``closedOn`` = now."""
        activity = self._find(activity_id)
        with self._build_lock:
            activity["status"] = "closed"
            activity["closedOn"] = iso(dt.datetime.now(dt.UTC))
        return dict(activity)

    def reopen_activity(self, activity_id: str) -> dict[str, Any]:
        """Status ``open``, ``closedOn`` cleared."""
        activity = self._find(activity_id)
        with self._build_lock:
            activity["status"] = "open"
            activity.pop("closedOn", None)
        return dict(activity)

    def rename_activity(self, activity_id: str, name: str) -> dict[str, Any]:
        """A new ``name`` (and ``lastUpdateDate``), as when a survey is renamed in Alida."""
        activity = self._find(activity_id)
        with self._build_lock:
            activity["name"] = name
            activity["lastUpdateDate"] = iso(dt.datetime.now(dt.UTC))
        return dict(activity)

    def _find(self, activity_id: str) -> dict[str, Any]:
        return next(a for a in self.activities if str(a["id"]).lower() == activity_id.lower())

    # -- activity definition and records ----------------------------------------------------

    def definition(self, activity_id: str) -> list[dict[str, Any]]:
        rng = random.Random(f"{self.seed}:definition:{activity_id}")
        fields = [
            _field(
                rng,
                "What is your gender?",
                "set",
                _options(rng, ["Male", "Female", "Non-binary"], ["Prefer not to say"], ["Other"]),
            ),
            _field(
                rng,
                "Which of these brands have you heard of?",
                "set",
                _options(rng, ["Acme", "Globex", "Initech", "Umbrella"], ["Hooli"], ["Vandelay"]),
            ),
            _field(rng, "How likely are you to recommend us?", "double"),
            _field(rng, "Why did you give that score?", "string"),
            _field(rng, "When did you last buy from us?", "date-time"),
            _field(
                rng,
                "Preferred contact channel",
                "enum",
                _options(rng, ["Email", "Phone", "SMS"], ["Post"], ["Fax"]),
            ),
            _field(rng, "Who referred you?", "identifier"),
            _field(
                rng,
                "Dans l'ensemble, à quel point êtes-vous satisfait(e) de la qualité, de la rapidité "
                "et de la courtoisie de notre service client au cours des douze derniers mois ?",
                "string",
            ),
            _field(rng, "Comments", "string"),
            _field(rng, "Comments", "string"),
            _field(rng, "Monthly spend (€)", "double"),
            _field(rng, "ご意見をお聞かせください", "string"),
        ]
        types = ["string", "double", "date-time", "identifier", "enum", "set"]
        n = len(fields)
        while len(fields) < self.n_fields:
            data_type = types[n % len(types)]
            options = None
            if data_type in ("enum", "set"):
                options = _options(rng, [f"Option {k}" for k in range(1, 5)], ["Retired option"], [])
            fields.append(_field(rng, f"Extra question {n + 1}", data_type, options))
            n += 1
        if fields[0]["meta"]["visibility"] == "active" and len(fields) > 8:
            fields[8]["meta"] = {"visibility": "hidden"}  # a hidden question
        fields = fields[: self.n_fields]
        if self.drift_version(activity_id):
            fields = self._drifted(activity_id, fields)
        return fields

    # -- schema drift (POST /_sandbox/activities/<id>/drift) ------------------------------------

    DRIFT_ADDED = "Which of these features do you use?"
    DRIFT_REWORDED = ("Why did you give that score?", "What is the main reason for your score?")
    DRIFT_RETYPED = ("Monthly spend (€)", "double", "string")
    DRIFT_REMOVED = "ご意見をお聞かせください"

    DRIFT_KINDS = ("added", "reworded", "retyped", "removed")

    def drift_version(self, activity_id: str) -> int:
        """0: as generated; 1: every kind of drift; 100 + bitmask: only some kinds."""
        kinds = self._drift.get(activity_id)
        if not kinds:
            return 0
        if set(kinds) == set(self.DRIFT_KINDS):
            return 1
        return 100 + sum(1 << self.DRIFT_KINDS.index(k) for k in set(kinds))

    def drift(self, activity_id: str, kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Change the activity's survey the way authors do between two runs.

        By default every kind at once: one question added (a multi-select), one
        reworded (same field id), one retyped (double → string) and one removed;
        ``kinds`` picks some of them. Records are generated anew from the changed
        definition; respondents and their response ids stay.
        """
        chosen = tuple(kinds or self.DRIFT_KINDS)
        unknown = set(chosen) - set(self.DRIFT_KINDS)
        if unknown:
            raise ValueError(f"unknown drift kinds {sorted(unknown)}; known: {', '.join(self.DRIFT_KINDS)}")
        with self._build_lock:
            self._drift[activity_id] = chosen
        fields = self.definition(activity_id)
        return {
            "activity_id": activity_id,
            "version": self.drift_version(activity_id),
            "kinds": list(chosen),
            "fields": len(fields),
        }

    def _drifted(self, activity_id: str, fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rng = random.Random(f"{self.seed}:drift:{activity_id}")
        kinds = set(self._drift.get(activity_id, ()))
        out = []
        for f in fields:
            f = json.loads(json.dumps(f))  # a copy
            if "removed" in kinds and f["name"] == self.DRIFT_REMOVED:
                continue
            if "reworded" in kinds and f["name"] == self.DRIFT_REWORDED[0]:
                f["name"] = self.DRIFT_REWORDED[1]
            if "retyped" in kinds and f["name"] == self.DRIFT_RETYPED[0]:
                f["type"] = {"dataType": self.DRIFT_RETYPED[2]}
            out.append(f)
        options = _options(rng, ["Dashboards", "Alerts", "Exports", "Mobile app"], [], [])
        if "added" in kinds:
            out.append(_field(rng, self.DRIFT_ADDED, "set", options))
        return out

    # -- deleted responses (POST /_sandbox/activities/<id>/responses/delete) --------------------

    def delete_responses(self, activity_id: str, count: int) -> dict[str, Any]:
        """Remove ``count`` responses, chosen at random (seeded), from later exports.

        The other responses keep their values: records are still generated in
        full and the deleted ones are left out when the file is written.
        """
        with self._build_lock:
            deleted = self._deleted.setdefault(activity_id, set())
            remaining = [i for i in range(self.n_responses) if i not in deleted]
            rng = random.Random(f"{self.seed}:delete:{activity_id}:{len(deleted)}")
            removed = sorted(rng.sample(remaining, k=min(max(0, count), len(remaining))))
            deleted.update(removed)
            left = self.n_responses - len(deleted)
        return {"activity_id": activity_id, "removed": len(removed), "indices": removed, "remaining": left}

    def _version_key(self, activity_id: str) -> str:
        """What a cached records file depends on: drift version and deleted responses."""
        return f"v{self.drift_version(activity_id)}-d{len(self._deleted.get(activity_id, ()))}"

    def iter_records(self, activity_id: str, fields: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        version = self.drift_version(activity_id)
        rng = random.Random(f"{self.seed}:records:{activity_id}:{version}")
        # Respondents come from their own stream so that they (and the response
        # ids derived from them) stay the same when the survey drifts.
        owners = random.Random(f"{self.seed}:owners:{activity_id}")
        # Now and then a single-value field carries a second value (Alida's
        # docs do not rule it out): its own stream, so other values stay put.
        extras = random.Random(f"{self.seed}:extras:{activity_id}:{version}")
        first_owner = None
        for i in range(self.n_responses):
            owner = self.member_ids[owners.randrange(self.n_members)]
            if i == 1 and first_owner is not None:
                owner = first_owner  # one member answers twice
            first_owner = first_owner or owner
            values = []
            for f in fields:
                roll = rng.random()
                if roll < 0.08:
                    continue  # question skipped: field absent
                if roll < 0.12:
                    values.append({"id": f["id"], "values": []})
                    continue
                answer = self._values(rng, f, i)
                if (
                    self.anomalies
                    and f["type"]["dataType"] in ("string", "double")
                    and extras.random() < 0.02
                ):
                    answer += self._values(extras, f, i + 1)
                values.append({"id": f["id"], "values": answer})
            yield {"ownerId": owner, "fields": values}

    def _values(self, rng: random.Random, f: dict[str, Any], i: int) -> list[Any]:
        data_type = f["type"]["dataType"]
        options = f["type"].get("values") or []
        if data_type == "set":
            if "gender" in f["name"]:
                return [rng.choice(options)["id"]]
            picks = rng.sample(options, k=min(len(options), rng.randint(1, 3)))
            return [o["id"] for o in picks]
        if data_type == "enum":
            return [rng.choice(options)["id"]]
        if data_type == "double":
            if "spend" in f["name"]:
                return [round(rng.uniform(0, 500), 2)]
            return [rng.randint(0, 10)]
        if data_type == "date-time":
            return [iso(EPOCH + dt.timedelta(seconds=rng.randrange(300 * 86400)))]
        if data_type == "identifier":
            return [rng.choice(self.member_ids)]
        return [rng.choice(_PHRASES)]

    def _write_activity_records(self, activity_id: str, out: IO[str]) -> ActivityStats:
        fields = self.definition(activity_id)
        stats = ActivityStats(fields=len(fields))
        out.write("[")
        response_id = ResponseIds()
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        deleted = self._deleted.get(activity_id, set())
        written = 0
        for n, record in enumerate(self.iter_records(activity_id, fields)):
            if n in deleted:
                continue
            if written:
                out.write(",")
            written += 1
            out.write(dumps(record))
            stats.add_record(record, response_id(record))
        out.write("]")
        return stats

    def _records(self, activity_id: str, workdir: Path) -> Path:
        """The ``records`` array, generated once per activity and cached on disk."""
        with self._build_lock:
            version = self._version_key(activity_id)
            path = workdir / f"activity-{activity_id}-{version}.records"
            if not path.exists():
                partial = path.with_suffix(".partial")
                with open(partial, "w", encoding="utf-8") as out:
                    stats = self._write_activity_records(activity_id, out)
                partial.rename(path)
                self._truth_cache[f"{activity_id}:{version}"] = stats.as_dict()
        return path

    def activity_file(
        self, activity_id: str, batch_id: str, workdir: Path, *, records_first: bool = False
    ) -> list[bytes | Path]:
        records = self._records(activity_id, workdir)
        head = f'{{"id": {json.dumps(batch_id)}, "datasetId": {json.dumps(activity_id)}, '
        definition = json.dumps({"fields": self.definition(activity_id)}, ensure_ascii=False)
        if records_first:
            return [f'{head}"records": '.encode(), records, f', "definition": {definition}}}'.encode()]
        return [f'{head}"definition": {definition}, "records": '.encode(), records, b"}"]

    def activity_truth(self, activity_id: str, workdir: Path) -> dict[str, Any]:
        key = f"{activity_id}:{self._version_key(activity_id)}"
        if key not in self._truth_cache:
            self._records(activity_id, workdir)
        return self._truth_cache[key]

    # -- members -------------------------------------------------------------------------

    def _make_variables(self) -> list[dict[str, Any]]:
        rng = random.Random(f"{self.seed}:variables")
        specs = [
            ("email", "string", True),
            ("Prénom", "string", True),
            ("age", "double", False),
            ("date_joined", "datetime", False),
            ("segment", "enum", False),
            ("interests", "set", False),
            ("crm_contact_id", "identifier", False),
            ("Favourite city", "string", False),
        ]
        return [
            {
                "id": _guid(rng),
                "name": name,
                "dataType": data_type,
                "isSensitive": sensitive,
                "categories": ["profileVariable"],
                "createDate": iso(EPOCH + dt.timedelta(minutes=k)),
            }
            for k, (name, data_type, sensitive) in enumerate(specs)
        ]

    def member_variables(self) -> list[dict[str, Any]]:
        return [dict(v) for v in self._variables]

    def iter_members(self) -> Iterator[dict[str, Any]]:
        for i, member_id in enumerate(self.member_ids):
            rng = random.Random(f"{self.seed}:profile:{i}")
            variables = []
            for v in self._variables:
                if v["name"] != "email" and rng.random() < 0.1:
                    continue
                effective = EPOCH + dt.timedelta(seconds=rng.randrange(300 * 86400))
                variables.append(
                    {
                        "id": v["id"],
                        "name": v["name"],
                        "dataType": v["dataType"],
                        "isSensitive": v["isSensitive"],
                        "values": self._profile_values(rng, v["name"], i),
                        "effectiveDate": iso(effective),
                    }
                )
            yield {"memberId": member_id, "variables": variables}

    def _profile_values(self, rng: random.Random, name: str, i: int) -> list[dict[str, Any]]:
        def value(v: Any) -> dict[str, Any]:
            return {"value": v, "id": _guid(rng)}

        if name == "email":
            return [value(f"member{i}@example.com")]
        if name == "Prénom":
            return [value(rng.choice(["Zoë", "José", "Ngozi", "Łukasz", "Hana", "Amélie"]))]
        if name == "age":
            return [value(rng.randint(18, 90))]
        if name == "date_joined":
            return [value(iso(EPOCH - dt.timedelta(days=rng.randrange(2000))))]
        if name == "segment":
            return [value(rng.choice(["Gold", "Silver", "Bronze"]))]
        if name == "interests":
            picks = rng.sample(["Travel", "Cooking", "Sports", "Music", "Tech"], k=rng.randint(1, 3))
            return [value(p) for p in picks]
        if name == "crm_contact_id":
            return [value(_guid(rng))]
        return [value(rng.choice(_CITIES))]
