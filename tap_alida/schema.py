"""From Alida field definitions to Singer schemas and typed values.

An export file's ``definition.fields`` declares each field's data type
(``string``, ``double``, ``date-time``, ``identifier``, ``enum``, ``set``). This
module owns the one mapping from those types to JSON Schema, the value
conversions (numbers, date-times, text) and the parsed field definitions. Which
columns a stream has is ``layout``'s business; turning records into rows is
``records``'.

Alida's docs leave a lot open (see ``alida-api.md`` §4-5); the rules here are
the tolerant reading: every ``values`` is an array, numbers may arrive as
strings, date-times in any ISO-8601 variant, an option id may be missing from
the definition, a non-set field may carry several values.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
