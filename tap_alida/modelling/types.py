"""From Alida field definitions to Singer schemas and typed values.

An export file's ``definition.fields`` declares each field's data type
(``string``, ``double``, ``date-time``, ``identifier``, ``enum``, ``set``). This
module owns the one mapping from those types to JSON Schema, the value
conversions (numbers, date-times, text) and the parsed field definitions. Which
columns a stream has is ``layout``'s business; turning records into rows is
``records``'.

Alida's docs leave a lot open (see ``docs/api.md`` §4-5); the rules here are
the tolerant reading: every ``values`` is an array, numbers may arrive as
strings, date-times in any ISO-8601 variant, an option id may be missing from
the definition, a non-set field may carry several values.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

logger = logging.getLogger("tap_alida.modelling.types")

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
    """A finite float from a JSON number or a numeric string; None otherwise.

    JSON numbers beyond a double (``1e400``, which the exact parse gives as a
    ``Decimal``, or an integer past 1.8e308) are None too: no warehouse column
    of type double can hold them. ``is_out_of_range`` tells those apart.
    """
    if isinstance(value, bool):
        return None
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, (int, float, Decimal, str)):
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (ValueError, OverflowError):
            return None
        return number if math.isfinite(number) else None
    return None


def is_out_of_range(value: object) -> bool:
    """True for a number (or numeric string) too big for a double, e.g. ``1e400``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        return False
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except ArithmeticError:
        return False
    if not number.is_finite():
        return False
    return to_number(value) is None


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
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def is_structured(value: object) -> bool:
    """True for a JSON object or array where a single (scalar) value was expected."""
    return isinstance(value, (dict, list))


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


# Definitions are parsed several times per run (discovery, each reading stream):
# a duplicated field is reported once per run.
_definition_warnings = WarnOnce(logger)


def parse_definition(definition: Mapping[str, Any] | None, label: str = "") -> list[FieldDefinition]:
    """Field definitions from a file's ``definition`` object (ids must be present).

    A field id listed twice keeps its **first** definition; the later ones are
    skipped with a warning (once per run and field). Why: a record names a
    field by id only, so there is no telling which of two definitions a value
    answers, and two columns (or two ``activity_fields`` rows) for one id would
    duplicate a primary key. Every value stays in ``activity_answers`` under
    that field id.
    """
    raw = definition.get("fields") if isinstance(definition, Mapping) else None
    fields: dict[str, FieldDefinition] = {}
    for entry in raw if isinstance(raw, list) else ():
        if not isinstance(entry, Mapping) or not entry.get("id"):
            continue
        parsed = FieldDefinition.from_api(entry)
        first = fields.get(parsed.id)
        if first is None:
            fields[parsed.id] = parsed
            continue
        _definition_warnings(
            ("duplicate-field", label, parsed.id),
            "%s: the export's definition lists field %s twice (%r, typed %r, and again %r, typed "
            "%r); the first definition is used and the second skipped. Its values are in "
            "activity_answers under that field id.",
            label or "an activity",
            parsed.id,
            first.name,
            first.data_type,
            parsed.name,
            parsed.data_type,
        )
    return list(fields.values())
