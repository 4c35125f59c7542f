"""Which columns an activity stream has: names, JSON Schema, and the field behind each.

An export's field definitions are turned into columns by two settings:
``column_naming`` (names from question texts, or from field ids so a reworded
question keeps its column) and ``set_columns`` (a multi-select field becomes an
array of labels, one boolean column per option, or both). The result, an
``ActivityLayout``, is the one place those choices live: the stream's schema,
the ``activity_fields`` data dictionary, the record mapper and the drift check
all read it.

Every column's description ends with ``(Alida field <id>)`` (indicators:
``(Alida field <id>, option <id>)``). That is how a later run finds which
field a column of a cached catalog came from: Singer catalogs keep a property's
``description`` but drop unknown keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tap_alida.modelling.naming import assign_names, compose, id_suffix, snake_case, truncate, unique
from tap_alida.modelling.types import SET, FieldDefinition, Option, WarnOnce, property_schema

ACTIVITY_FIXED_COLUMNS: dict[str, dict[str, Any]] = {
    "activity_id": {"type": ["string"], "description": "Alida activity id (the export's datasetId)."},
    "response_id": {
        "type": ["string"],
        "description": "The record's own id when the export has one (a repeated id gets "
        "':<n>', n = 1, 2, … in file order), otherwise '<member_id>:<n>' with n the 0-based "
        "index of that member's records in the file.",
    },
    "member_id": {"type": ["string", "null"], "description": "The record's ownerId (member GUID)."},
    "batch_id": {"type": ["string", "null"], "description": "Id of the batch export the row came from."},
}

_REF = re.compile(r"\(Alida field (?P<field>[^,()\s]+)(?:, option (?P<option>[^,()\s]+))?\)$")
DOC_LIMIT = 500


def column_ref(column_schema: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """(field id, option id or None) of a column, read from its description."""
    match = _REF.search(str(column_schema.get("description") or ""))
    return None if match is None else (match["field"], match["option"])


def _doc(text: str, ref: str) -> str:
    room = DOC_LIMIT - len(ref) - 1
    text = text if len(text) <= room else text[: room - 1] + "…"
    return f"{text} {ref}" if text else ref


@dataclass(frozen=True)
class Column:
    """One non-fixed column of an activity stream and the field (and option) behind it."""

    name: str
    schema: dict[str, Any]
    field: FieldDefinition
    option: Option | None = None  # set for indicator columns

    @property
    def ref(self) -> tuple[str, str | None]:
        return (self.field.id, None if self.option is None else self.option.id)

    @property
    def label(self) -> str:
        text = f"{self.field.name!r}" + ("" if self.option is None else f" = {self.option.name!r}")
        return f"{self.name} ({text}, field {self.field.id})"


class ActivityLayout:
    """The columns of one activity stream, derived from its field definitions."""

    def __init__(
        self,
        fields: Sequence[FieldDefinition],
        *,
        column_naming: str = "name",
        set_columns: str = "array",
        activity_label: str = "",
        warn: WarnOnce | None = None,
    ) -> None:
        self.fields = list(fields)
        self.column_naming = column_naming
        self.set_columns = set_columns
        bases = assign_names(
            [(f.id, f.name) for f in self.fields],
            fallback_prefix="field",
            reserved=ACTIVITY_FIXED_COLUMNS,
            naming=column_naming,
        )
        taken = set(ACTIVITY_FIXED_COLUMNS) | set(bases.values())
        self.columns: dict[str, Column] = {}
        # field id → its value column (None: a set field shown only as indicators)
        self.value_column: dict[str, str | None] = {}
        # field id → option id → indicator column
        self.indicator_columns: dict[str, dict[str, str]] = {}
        for f in self.fields:
            if f.canonical is None and warn is not None:
                warn(
                    ("type", activity_label, f.id),
                    "%s: field %r (%s) has unknown data type %r; it is loaded as a string.",
                    activity_label,
                    f.name,
                    f.id,
                    f.data_type,
                )
            ref = f"(Alida field {f.id})"
            is_set = f.canonical == SET
            if not is_set or set_columns in ("array", "both"):
                name = bases[f.id]
                self.columns[name] = Column(name, property_schema(f.canonical, _doc(f.name, ref)), f)
                self.value_column[f.id] = name
            else:
                self.value_column[f.id] = None
            if is_set and set_columns in ("indicators", "both"):
                self.indicator_columns[f.id] = {}
                for option in f.options:
                    name = self._indicator_name(bases[f.id], option, taken)
                    doc = _doc(f"{f.name} = {option.name}", f"(Alida field {f.id}, option {option.id})")
                    schema = {"type": ["boolean", "null"], "description": doc}
                    self.columns[name] = Column(name, schema, f, option)
                    self.indicator_columns[f.id][option.id] = name

    def _indicator_name(self, base: str, option: Option, taken: set[str]) -> str:
        """``<field column>__<option>``; on a clash the option part gets an id suffix, so
        the name still ends with the option it stands for."""
        if self.column_naming == "id":
            part, part_max = snake_case(option.id), 36
        else:
            part, part_max = snake_case(option.name), 30
        part = part or f"option_{id_suffix(option.id)}"
        name = compose(base, part, part_max=part_max)
        if name in taken:
            name = compose(base, f"{truncate(part, part_max - 9)}_{id_suffix(option.id)}", part_max=part_max)
        return unique(name, option.id, taken)

    def schema(self) -> dict[str, Any]:
        """The Singer schema of the stream: fixed columns, then one per column, in field order."""
        properties: dict[str, Any] = dict(ACTIVITY_FIXED_COLUMNS)
        properties.update({name: column.schema for name, column in self.columns.items()})
        return {"type": "object", "properties": properties}

    def field_rows(self, activity_id: str, stream_name: str) -> Iterable[dict[str, Any]]:
        """Rows of the ``activity_fields`` data dictionary: field → column(s)."""
        for position, f in enumerate(self.fields):
            indicators = self.indicator_columns.get(f.id, {})
            yield {
                "activity_id": activity_id,
                "stream_name": stream_name,
                "field_id": f.id,
                "position": position,
                "column_name": self.value_column.get(f.id),
                "name": f.name,
                "data_type": f.data_type,
                "visibility": f.visibility,
                "options": [
                    {
                        "id": o.id,
                        "name": o.name,
                        "visibility": o.visibility,
                        "indicator_column": indicators.get(o.id),
                    }
                    for o in f.options
                ],
            }
