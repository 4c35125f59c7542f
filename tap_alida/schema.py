"""From Alida field definitions to Singer schemas and typed values.

An export file's ``definition.fields`` declares each field's data type
(``string``, ``double``, ``date-time``, ``identifier``, ``enum``, ``set``). This
module owns the one mapping from those types to JSON Schema, and builds, once per
stream, the converters that turn a record's ``values`` arrays into typed column
values. Converters are prepared up front because they run once per value of
every record: the per-record path must stay a dictionary lookup and a call.

Alida's docs leave a lot open (see ``alida-api.md`` §4-5); the rules here are
the tolerant reading: every ``values`` is an array, numbers may arrive as
strings, date-times in any ISO-8601 variant, an option id may be missing from
the definition, a non-set field may carry several values.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tap_alida.naming import assign_names

logger = logging.getLogger("tap_alida.schema")

# Canonical data types and the spellings seen for them across Alida's API
# families (the batch files say ``date-time`` and ``datetime``; v1 member
# variables say e.g. ``number``).
STRING, DOUBLE, DATE_TIME, IDENTIFIER, ENUM, SET = (
    "string",
    "double",
    "date-time",
    "identifier",
    "enum",
    "set",
)
_SYNONYMS = {
    "string": STRING,
    "text": STRING,
    "double": DOUBLE,
    "number": DOUBLE,
    "numeric": DOUBLE,
    "decimal": DOUBLE,
    "integer": DOUBLE,
    "int": DOUBLE,
    "float": DOUBLE,
    "date-time": DATE_TIME,
    "datetime": DATE_TIME,
    "date_time": DATE_TIME,
    "date": DATE_TIME,
    "identifier": IDENTIFIER,
    "guid": IDENTIFIER,
    "uuid": IDENTIFIER,
    "enum": ENUM,
    "singlechoice": ENUM,
    "set": SET,
    "multichoice": SET,
}


def canonical_type(data_type: object) -> str | None:
    """The canonical Alida data type for a spelling, or None when unknown."""
    if not isinstance(data_type, str):
        return None
    return _SYNONYMS.get(data_type.strip().lower().replace(" ", ""))


def property_schema(canonical: str | None, description: str | None = None) -> dict[str, Any]:
    """JSON Schema of one column. Every column is nullable.

    ``None`` (an unknown data type) maps to a nullable string so discovery goes
    on; the caller warns.
    """
    schema: dict[str, Any]
    if canonical == DOUBLE:
        schema = {"type": ["number", "null"]}
    elif canonical == DATE_TIME:
        schema = {"type": ["string", "null"], "format": "date-time"}
    elif canonical == SET:
        schema = {"type": ["array", "null"], "items": {"type": "string"}}
    else:
        schema = {"type": ["string", "null"]}
    if description:
        schema["description"] = description
    return schema


# --------------------------------------------------------------------------- values


def parse_datetime(value: object) -> dt.datetime | None:
    """An aware UTC datetime from any ISO-8601 variant; None when it is not one.

    Accepts ``Z``/offsets/no offset (taken as UTC) and 0-9 fractional digits
    (.NET writes 7).
    """
    if isinstance(value, dt.datetime):
        return as_utc(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    # Python parses at most 6 fractional digits: trim longer fractions.
    dot = text.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        if end - dot - 1 > 6:
            text = text[: dot + 7] + text[end:]
    try:
        return as_utc(dt.datetime.fromisoformat(text))
    except ValueError:
        return None


def format_datetime(value: dt.datetime) -> str:
    """RFC 3339 UTC with ``Z``; fractional seconds only when there are any."""
    value = as_utc(value)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def is_canonical_datetime(value: object) -> bool:
    """True for a valid ``YYYY-MM-DDTHH:MM:SSZ`` string, which normalising would not change.

    The fast path for the common case (Alida writes UTC with ``Z``): one C-level
    parse instead of parse + format.
    """
    if type(value) is not str or len(value) != 20 or value[19] != "Z" or value[10] != "T":
        return False
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def normalize_datetime(value: object) -> str | None:
    """RFC 3339 UTC (``2026-10-01T00:00:00Z``) from any ISO-8601 variant, else None."""
    parsed = parse_datetime(value)
    return None if parsed is None else format_datetime(parsed)


def as_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime (naive ones are taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def to_number(value: object) -> float | None:
    """A float from a JSON number or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def to_text(value: object) -> str | None:
    """A string for string-like columns (numbers keep their JSON spelling)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class WarnOnce:
    """Logs each distinct warning once per run (per key), not once per record."""

    def __init__(self, log: logging.Logger = logger) -> None:
        self._seen: set[tuple[str, ...]] = set()
        self._log = log

    def __call__(self, key: tuple[str, ...], message: str, *args: object) -> None:
        if key not in self._seen:
            self._seen.add(key)
            self._log.warning(message, *args)


# --------------------------------------------------------------------------- activity fields


@dataclass(frozen=True)
class Option:
    id: str
    name: str
    visibility: str | None


@dataclass(frozen=True)
class FieldDefinition:
    """One entry of an export file's ``definition.fields``."""

    id: str
    name: str
    data_type: str  # as exported
    canonical: str | None  # None when unknown
    visibility: str | None
    options: tuple[Option, ...] = ()

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> FieldDefinition:
        type_info = raw.get("type") or {}
        data_type = str(type_info.get("dataType", "")) if isinstance(type_info, Mapping) else ""
        options = []
        for opt in (type_info.get("values") or []) if isinstance(type_info, Mapping) else []:
            if isinstance(opt, Mapping) and opt.get("id") is not None:
                options.append(
                    Option(
                        id=str(opt["id"]),
                        name=str(opt.get("name", opt["id"])),
                        visibility=_visibility(opt),
                    )
                )
        return cls(
            id=str(raw.get("id", "")),
            name=str(raw.get("name") or ""),
            data_type=data_type,
            canonical=canonical_type(data_type),
            visibility=_visibility(raw),
            options=tuple(options),
        )


def _visibility(raw: Mapping[str, Any]) -> str | None:
    meta = raw.get("meta")
    if isinstance(meta, Mapping) and meta.get("visibility") is not None:
        return str(meta["visibility"])
    return None


def parse_definition(definition: Mapping[str, Any] | None) -> list[FieldDefinition]:
    """Field definitions from a file's ``definition`` object (ids must be present)."""
    fields = (definition or {}).get("fields") or []
    return [FieldDefinition.from_api(f) for f in fields if isinstance(f, Mapping) and f.get("id")]


ACTIVITY_FIXED_COLUMNS: dict[str, dict[str, Any]] = {
    "activity_id": {"type": ["string"], "description": "Alida activity id (the export's datasetId)."},
    "response_id": {
        "type": ["string"],
        "description": "The record's own id when the export has one, otherwise "
        "'<member_id>:<n>' with n the 0-based index of that member's records in the file.",
    },
    "member_id": {"type": ["string", "null"], "description": "The record's ownerId (member GUID)."},
    "batch_id": {"type": ["string", "null"], "description": "Id of the batch export the row came from."},
}


def column_names(fields: Sequence[FieldDefinition]) -> dict[str, str]:
    """Field id → column name, unique within the stream and never a fixed column."""
    return assign_names(
        [(f.id, f.name) for f in fields], fallback_prefix="field", reserved=ACTIVITY_FIXED_COLUMNS
    )


def activity_schema(
    fields: Sequence[FieldDefinition], *, activity_label: str, warn: WarnOnce
) -> dict[str, Any]:
    """The Singer schema of an activity-responses stream."""
    names = column_names(fields)
    properties: dict[str, Any] = dict(ACTIVITY_FIXED_COLUMNS)
    for f in fields:
        if f.canonical is None:
            warn(
                ("type", activity_label, f.id),
                "%s: field %r (%s) has unknown data type %r; it is loaded as a string.",
                activity_label,
                f.name,
                f.id,
                f.data_type,
            )
        properties[names[f.id]] = property_schema(f.canonical, _truncate_doc(f.name))
    return {"type": "object", "properties": properties}


def _truncate_doc(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


Converter = Callable[[list[Any]], Any]


@dataclass
class ActivityRecordMapper:
    """Turns the records of one activity export into rows of its stream.

    Built once per export from its definition; ``map`` is the per-record path.
    """

    activity_id: str
    activity_label: str
    batch_id: str | None
    fields: Sequence[FieldDefinition]
    warn: WarnOnce = field(default_factory=WarnOnce)

    def __post_init__(self) -> None:
        names = column_names(self.fields)
        self._template: dict[str, Any] = dict.fromkeys(ACTIVITY_FIXED_COLUMNS)
        self._template["activity_id"] = self.activity_id
        self._template["batch_id"] = self.batch_id
        self._by_id: dict[str, tuple[str, Converter]] = {}
        self._set_columns: list[str] = []
        for f in self.fields:
            column = names[f.id]
            self._template[column] = None
            self._by_id[f.id] = (column, self._converter(f))
            if f.canonical == SET:
                self._set_columns.append(column)
        self._member_counts: dict[str, int] = {}

    @property
    def columns(self) -> list[str]:
        return list(self._template)

    def map(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """One record → one row. The per-record hot path: keep it lean (see bench.py)."""
        row = self._template.copy()
        member_id = record.get("ownerId")
        member = None if member_id is None else str(member_id)
        row["member_id"] = member
        own_id = record.get("id", record.get("responseId"))
        if own_id is not None:
            row["response_id"] = str(own_id)
        else:
            key = member or ""
            n = self._member_counts.get(key, 0)
            self._member_counts[key] = n + 1
            row["response_id"] = f"{key}:{n}"
        by_id = self._by_id
        for value in record.get("fields") or ():
            field_id = value.get("id")
            target = by_id.get(field_id)
            if target is None:
                target = by_id.get(str(field_id))
                if target is None:
                    self._unknown_field(field_id)
                    continue
            values = value.get("values")
            if values:
                row[target[0]] = target[1](values if isinstance(values, list) else [values])
        for column in self._set_columns:
            if row[column] is None:
                row[column] = []
        return row

    def _unknown_field(self, field_id: Any) -> None:
        self.warn(
            ("unknown-field", self.activity_id, str(field_id)),
            "%s: records carry field %s which the export's definition does not declare; its "
            "values are skipped.",
            self.activity_label,
            field_id,
        )

    # -- converters, one per field: each takes the field's non-empty ``values`` list --

    def _converter(self, f: FieldDefinition) -> Converter:
        canonical = f.canonical
        if canonical == SET:
            labels = self._label_lookup(f)
            return lambda values: [labels(v) for v in values if v is not None]
        many = self._many_values(f)
        if canonical == ENUM:
            label = self._label_lookup(f)

            def enum(values: list[Any]) -> Any:
                if len(values) > 1:
                    many(len(values))
                return label(values[0])

            return enum
        if canonical == DOUBLE:
            bad = self._bad_value(f, "a number")

            def number(values: list[Any]) -> Any:
                if len(values) > 1:
                    many(len(values))
                value = values[0]
                if type(value) is float:  # the common case, ready as it is
                    return value
                result = to_number(value)
                if result is None and value is not None:
                    bad(value)
                return result

            return number
        if canonical == DATE_TIME:
            bad = self._bad_value(f, "a date-time")

            def date_time(values: list[Any]) -> Any:
                if len(values) > 1:
                    many(len(values))
                value = values[0]
                if is_canonical_datetime(value):
                    return value
                result = normalize_datetime(value)
                if result is None and value is not None:
                    bad(value)
                return result

            return date_time

        def text(values: list[Any]) -> Any:
            if len(values) > 1:
                many(len(values))
            value = values[0]
            return value if type(value) is str else to_text(value)

        return text

    def _many_values(self, f: FieldDefinition) -> Callable[[int], None]:
        def many(count: int) -> None:
            self.warn(
                ("multi", self.activity_id, f.id),
                "%s: field %r (%s) is typed %r but a record carries %d values; the first is "
                "kept in the column.",
                self.activity_label,
                f.name,
                f.id,
                f.data_type,
                count,
            )

        return many

    def _bad_value(self, f: FieldDefinition, expected: str) -> Callable[[Any], None]:
        def bad(value: Any) -> None:
            self.warn(
                ("bad-value", self.activity_id, f.id),
                "%s: field %r (%s) holds %r, which is not %s; such values load as null.",
                self.activity_label,
                f.name,
                f.id,
                value,
                expected,
            )

        return bad

    def _label_lookup(self, f: FieldDefinition) -> Callable[[Any], str | None]:
        labels = {opt.id: opt.name for opt in f.options}
        labels.update({opt.id.lower(): opt.name for opt in f.options})

        def label(value: Any) -> str | None:
            if type(value) is str:  # the common case: an option id as listed
                found = labels.get(value)
                if found is not None:
                    return found
            if value is None:
                return None
            key = str(value)
            found = labels.get(key) or labels.get(key.lower())
            if found is not None:
                return found
            self.warn(
                ("option", self.activity_id, f.id),
                "%s: field %r (%s) has the option id %r which its definition does not "
                "list; the raw id is loaded instead of a label.",
                self.activity_label,
                f.name,
                f.id,
                key,
            )
            return key

        return label


def field_rows(activity_id: str, fields: Sequence[FieldDefinition]) -> Iterable[dict[str, Any]]:
    """Rows of the ``activity_fields`` data dictionary for one activity."""
    names = column_names(fields)
    for position, f in enumerate(fields):
        yield {
            "activity_id": activity_id,
            "field_id": f.id,
            "position": position,
            "column_name": names[f.id],
            "name": f.name,
            "data_type": f.data_type,
            "visibility": f.visibility,
            "options": [{"id": o.id, "name": o.name, "visibility": o.visibility} for o in f.options],
        }
