"""From an export's records to the rows of ``activity_answers``: one row per value.

``AnswerMapper`` types each value into ``value_string``/``value_number``/
``value_datetime``/``option_*``. Nothing is dropped here: an undeclared field, an
extra value of a single-value field, or a value that is not of its declared type
is kept (as text in ``value_string`` when it fits no typed column). Built once per
export; its per-record path runs for every value (``benchmarks/bench.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tap_alida.modelling.layout import ACTIVITY_FIXED_COLUMNS
from tap_alida.modelling.records import ResponseIds, duplicate_counter, option_labels
from tap_alida.modelling.tally import Tally
from tap_alida.modelling.types import (
    DATE_TIME,
    DOUBLE,
    ENUM,
    SET,
    FieldDefinition,
    is_canonical_datetime,
    normalize_datetime,
    to_number,
    to_text,
)

# --------------------------------------------------------------------------- activity_answers

ANSWER_COLUMNS = (
    "activity_id",
    "response_id",
    "member_id",
    "field_id",
    "value_index",
    "value_string",
    "value_number",
    "value_datetime",
    "option_id",
    "option_label",
)

ACTIVITY_ANSWERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "activity_id": ACTIVITY_FIXED_COLUMNS["activity_id"],
        "response_id": ACTIVITY_FIXED_COLUMNS["response_id"],
        "member_id": ACTIVITY_FIXED_COLUMNS["member_id"],
        "field_id": {"type": ["string"], "description": "Field (question) id; join to activity_fields."},
        "value_index": {
            "type": ["integer"],
            "description": "0-based position of the value in the field's values array.",
        },
        "value_string": {
            "type": ["string", "null"],
            "description": "string and identifier values; any value that is not of its field's "
            "declared type (or of an undeclared field), as text.",
        },
        "value_number": {"type": ["number", "null"], "description": "double values."},
        "value_datetime": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "date-time values, UTC.",
        },
        "option_id": {"type": ["string", "null"], "description": "enum and set values: the option id."},
        "option_label": {
            "type": ["string", "null"],
            "description": "enum and set values: the option's label (null when the definition does "
            "not list the option).",
        },
    },
}


class AnswerMapper:
    """Turns the records of one activity export into ``activity_answers`` rows."""

    def __init__(
        self,
        activity_id: str,
        fields: list[FieldDefinition],
        activity_label: str = "",
        tally: Tally | None = None,
    ) -> None:
        self.activity_id = activity_id
        self._fields = {f.id: (f.canonical, option_labels(f)) for f in fields}
        self.tally = tally if tally is not None else Tally()
        label = activity_label or f"activity {activity_id}"
        self._response_ids = ResponseIds(duplicate_counter(self.tally, activity_id, label))

    def rows(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every value of one record, one row each (records without values give none)."""
        member_id = record.get("ownerId")
        member = None if member_id is None else str(member_id)
        response_id = self._response_ids(record, member)
        rows: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        base = dict.fromkeys(ANSWER_COLUMNS)
        base["activity_id"] = self.activity_id
        base["response_id"] = response_id
        base["member_id"] = member
        for entry in record.get("fields") or ():
            if not isinstance(entry, Mapping):
                continue
            values = entry.get("values")
            if not values:
                continue
            if not isinstance(values, list):
                values = [values]
            field_id = str(entry.get("id"))
            canonical, labels = self._fields.get(field_id, (None, {}))
            start = seen.get(field_id, 0)  # a field listed twice keeps counting
            seen[field_id] = start + len(values)
            head = base.copy()
            head["field_id"] = field_id
            for index, value in enumerate(values, start):
                row = head.copy()
                row["value_index"] = index
                if value is not None:
                    _type_value(row, value, canonical, labels)
                rows.append(row)
        return rows


def _type_value(row: dict[str, Any], value: Any, canonical: str | None, labels: Mapping[str, str]) -> None:
    """Put one (non-null) value into the typed column of its field's data type."""
    if canonical in (ENUM, SET) and isinstance(value, str | int | float) and not isinstance(value, bool):
        key = str(value)
        row["option_id"] = key
        row["option_label"] = labels.get(key) or labels.get(key.lower())
        return
    if canonical == DOUBLE:
        number = to_number(value)
        if number is not None:
            row["value_number"] = number
            return
    elif canonical == DATE_TIME:
        moment = value if is_canonical_datetime(value) else normalize_datetime(value)
        if moment is not None:
            row["value_datetime"] = moment
            return
    if isinstance(value, dict | list):
        row["value_string"] = json.dumps(value, ensure_ascii=False)
    else:
        row["value_string"] = to_text(value)
