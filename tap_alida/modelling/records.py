"""From an export's records to the activity stream's rows: one wide row per record.

The mapper is built once per export, from its field definitions, and its
per-record path is a dictionary lookup and a prepared call per value: they run
for every value of every record (see ``benchmarks/bench.py``).

* ``ActivityRecordMapper``: one row per record for the activity's own stream,
  with the columns of an ``ActivityLayout`` and, after schema drift, the
  targets of a ``drift.Plan`` (values coerced to the column they land in).
* the long form, one row per value, is ``answers.AnswerMapper``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tap_alida.modelling.drift import Plan, type_signature
from tap_alida.modelling.layout import ActivityLayout
from tap_alida.modelling.tally import Tally
from tap_alida.modelling.types import (
    DATE_TIME,
    DOUBLE,
    ENUM,
    SET,
    FieldDefinition,
    WarnOnce,
    is_canonical_datetime,
    is_out_of_range,
    is_structured,
    normalize_datetime,
    to_number,
    to_text,
)

Converter = Callable[[list[Any]], Any]
# Writes a set field's indicator columns: (row, values) → None.
Post = Callable[[dict[str, Any], list[Any]], None]


class ResponseIds:
    """``response_id`` of each record in file order: its own id, else ``<member>:<n>``.

    Both mappers number a file's records the same way, so a response's answers
    join to its row.

    An own id seen before in the file (two records with the same id) would give
    two rows with one primary key, and a loader would keep one of them at
    random. The second occurrence becomes ``<id>:1``, the third ``<id>:2`` (the
    first unused such key), in file order, so reruns give the same keys; each
    repeat is reported to ``on_duplicate`` (the mappers count them per
    activity). Costs one string per record with its own id, for the file's read.
    """

    def __init__(self, on_duplicate: Callable[[str], None] | None = None) -> None:
        self._counts: dict[str, int] = {}
        self._seen: set[str] = set()
        self._repeats: dict[str, int] = {}
        self._on_duplicate = on_duplicate

    def __call__(self, record: Mapping[str, Any], member: str | None) -> str:
        own_id = record.get("id", record.get("responseId"))
        if own_id is not None:
            key = own_id if type(own_id) is str else str(own_id)
            if key not in self._seen:
                self._seen.add(key)
                return key
            return self._repeated(key)
        key = member or ""
        n = self._counts.get(key, 0)
        self._counts[key] = n + 1
        return f"{key}:{n}"

    def _repeated(self, own_id: str) -> str:
        n = self._repeats.get(own_id, 0)
        while True:
            n += 1
            candidate = f"{own_id}:{n}"
            if candidate not in self._seen:
                break
        self._repeats[own_id] = n
        self._seen.add(candidate)
        if self._on_duplicate is not None:
            self._on_duplicate(own_id)
        return candidate


def duplicate_counter(tally: Tally, activity_id: str, activity_label: str) -> Callable[[str], None]:
    """Counts repeated response ids of one activity into ``tally`` (one line per activity)."""

    def count(_own_id: str) -> None:
        tally.add(
            ("duplicate-response-id", activity_id),
            "%s: records repeat a response id already used in the export file; each repeat is "
            "loaded with the key '<id>:<n>' (n = 1, 2, … in file order) so no two rows share a "
            "primary key. Ask Alida support why the export repeats ids",
            activity_label,
        )

    return count


def coercion(schema: Mapping[str, Any]) -> Callable[[Any], Any]:
    """Converts a typed value to the JSON type of ``schema`` (a drifted column's)."""
    types, fmt, _items = type_signature(schema)
    if "array" in types:
        return lambda v: v if isinstance(v, list) else ([] if v is None else [to_text(v)])
    if "boolean" in types:
        return lambda v: v if isinstance(v, bool) else None
    if "number" in types:
        return lambda v: None if isinstance(v, list) else to_number(v)
    if fmt == "date-time":
        return lambda v: None if isinstance(v, list) else normalize_datetime(v)
    return lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else to_text(v)


@dataclass
class ActivityRecordMapper:
    """Turns the records of one activity export into rows of its stream.

    Built once per export; ``map`` is the per-record path.
    """

    activity_id: str
    activity_label: str
    batch_id: str | None
    layout: ActivityLayout
    plan: Plan | None = None  # None: the layout's own schema, no drift
    warn: WarnOnce = field(default_factory=WarnOnce)
    # Counted problems (numbers out of range, structured values, repeated ids):
    # the caller flushes it when the file is read.
    tally: Tally = field(default_factory=Tally)

    def __post_init__(self) -> None:
        layout = self.layout
        schema = self.plan.schema if self.plan is not None else layout.schema()
        properties: dict[str, Any] = schema.get("properties") or {}
        targets = self.plan.targets if self.plan is not None else {n: n for n in layout.columns}
        self._template: dict[str, Any] = dict.fromkeys(properties)
        self._template["activity_id"] = self.activity_id
        self._template["batch_id"] = self.batch_id
        self._by_id: dict[str, tuple[str | None, Converter | None, Post | None]] = {}
        self._skipped: set[str] = set()  # declared fields with nothing to emit (schema_drift: ignore)
        self._set_columns: list[str] = []
        for f in layout.fields:
            column = layout.value_column.get(f.id)
            target = None if column is None else targets.get(column)
            converter = None
            if column is not None and target is not None:
                converter = self._converter(f)
                if type_signature(properties[target]) != type_signature(layout.columns[column].schema):
                    converter = _coerced(converter, coercion(properties[target]))
                if type_signature(properties[target])[0] == ("array",):
                    self._set_columns.append(target)
            post = self._indicators(f, targets, properties)
            if converter is None and post is None:
                self._skipped.add(f.id)
            else:
                self._by_id[f.id] = (target, converter, post)
        self._response_ids = ResponseIds(duplicate_counter(self.tally, self.activity_id, self.activity_label))

    @property
    def columns(self) -> list[str]:
        return list(self._template)

    def map(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """One record → one row. The per-record hot path: keep it lean (see bench.py)."""
        row = self._template.copy()
        member_id = record.get("ownerId")
        member = None if member_id is None else str(member_id)
        row["member_id"] = member
        row["response_id"] = self._response_ids(record, member)
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
                column, converter, post = target
                if not isinstance(values, list):
                    values = [values]
                if converter is not None:
                    row[column] = converter(values)  # type: ignore[index]
                if post is not None:
                    post(row, values)
        for column in self._set_columns:
            if row[column] is None:
                row[column] = []
        return row

    def _unknown_field(self, field_id: Any) -> None:
        if str(field_id) in self._skipped:
            return
        self.warn(
            ("unknown-field", self.activity_id, str(field_id)),
            "%s: records carry field %s which the export's definition does not declare; its "
            "values are only in activity_answers.",
            self.activity_label,
            field_id,
        )

    def _indicators(
        self, f: FieldDefinition, targets: Mapping[str, str | None], properties: Mapping[str, Any]
    ) -> Post | None:
        """The writer of a set field's indicator columns (all False in the template)."""
        columns: dict[str, str] = {}
        for option_id, column in self.layout.indicator_columns.get(f.id, {}).items():
            target = targets.get(column)
            if target is not None and "boolean" in type_signature(properties[target])[0]:
                columns[option_id] = target
                columns.setdefault(option_id.lower(), target)
                self._template[target] = False
        if not columns:
            return None

        def post(row: dict[str, Any], values: list[Any]) -> None:
            for value in values:
                column = columns.get(value) if type(value) is str else None
                if column is None and value is not None:
                    if is_structured(value):
                        self._structured(f)
                        continue
                    column = columns.get(str(value).lower())
                    if column is None:
                        self._unlisted_option(f, str(value))
                if column is not None:
                    row[column] = True

        return post

    def _unlisted_option(self, f: FieldDefinition, option_id: str) -> None:
        """An option id with no indicator column: said once per field and option."""
        self.warn(
            ("indicator-option", self.activity_id, f.id, option_id),
            "%s: field %r (%s) has the option id %r, which its definition does not list, so no "
            "indicator column stands for it (set_columns: %s); the answer is in activity_answers "
            "(option_id). Run discovery again if the survey gained the option.",
            self.activity_label,
            f.name,
            f.id,
            option_id,
            self.layout.set_columns,
        )

    def _structured(self, f: FieldDefinition) -> None:
        self.tally.add(
            ("structured", self.activity_id, f.id),
            "%s: field %r (%s) holds a JSON object or array where a single value belongs; it is "
            "loaded as null in the stream's column and as JSON text in "
            "activity_answers.value_string",
            self.activity_label,
            f.name,
            f.id,
        )

    def _overflow(self, f: FieldDefinition) -> None:
        self.tally.add(
            ("out-of-range", self.activity_id, f.id),
            "%s: field %r (%s) holds a number too big for a double (e.g. 1e400); it is loaded as "
            "null in the stream's column and as text in activity_answers.value_string",
            self.activity_label,
            f.name,
            f.id,
        )

    # -- converters, one per field: each takes the field's non-empty ``values`` list --

    def _converter(self, f: FieldDefinition) -> Converter:
        """The field's converter, built once per export.

        Each factory returns a closure specialised for one data type (the
        per-record hot path, see benchmarks/bench.py).
        """
        canonical = f.canonical
        if canonical == SET:
            return self._set_converter(f)
        many = self._many_values(f)
        if canonical == ENUM:
            label = self._label_lookup(f)

            def enum(values: list[Any]) -> Any:
                if len(values) > 1:
                    many(len(values))
                return label(values[0])

            return enum
        if canonical == DOUBLE:
            return self._number_converter(f, many)
        if canonical == DATE_TIME:
            return self._date_time_converter(f, many)
        return self._text_converter(f, many)

    def _set_converter(self, f: FieldDefinition) -> Converter:
        """Multi-select: the labels of the chosen options (structured values left out, counted)."""
        labels = self._label_lookup(f)

        def set_labels(values: list[Any]) -> Any:
            found = [labels(v) for v in values if v is not None]
            if None in found:  # structured values, counted by the lookup
                found = [label for label in found if label is not None]
            return found

        return set_labels

    def _number_converter(self, f: FieldDefinition, many: Callable[[int], None]) -> Converter:
        """A number; a value out of range, structured or not numeric becomes null (counted)."""
        bad = self._bad_value(f, "a number")

        def number(values: list[Any]) -> Any:
            if len(values) > 1:
                many(len(values))
            value = values[0]
            if type(value) is float:  # the common case, ready as it is
                return value
            result = to_number(value)
            if result is None and value is not None:
                if is_out_of_range(value):
                    self._overflow(f)
                elif is_structured(value):
                    self._structured(f)
                else:
                    bad(value)
            return result

        return number

    def _date_time_converter(self, f: FieldDefinition, many: Callable[[int], None]) -> Converter:
        """An RFC 3339 date-time; a structured or unreadable value becomes null (counted)."""
        bad = self._bad_value(f, "a date-time")

        def date_time(values: list[Any]) -> Any:
            if len(values) > 1:
                many(len(values))
            value = values[0]
            if is_canonical_datetime(value):
                return value
            result = normalize_datetime(value)
            if result is None and value is not None:
                if is_structured(value):
                    self._structured(f)
                else:
                    bad(value)
            return result

        return date_time

    def _text_converter(self, f: FieldDefinition, many: Callable[[int], None]) -> Converter:
        """Text (every other type); a structured value becomes null (counted)."""

        def text(values: list[Any]) -> Any:
            if len(values) > 1:
                many(len(values))
            value = values[0]
            if type(value) is str:
                return value
            if is_structured(value):
                self._structured(f)
                return None
            return to_text(value)

        return text

    def _many_values(self, f: FieldDefinition) -> Callable[[int], None]:
        def many(count: int) -> None:
            self.warn(
                ("multi", self.activity_id, f.id),
                "%s: field %r (%s) is typed %r but a record carries %d values; the first is "
                "kept in the column, all are in activity_answers.",
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
                "%s: field %r (%s) holds a value that is not %s (a %s); such values load as null "
                "(as text in activity_answers.value_string).",
                self.activity_label,
                f.name,
                f.id,
                expected,
                type(value).__name__,
            )

        return bad

    def _label_lookup(self, f: FieldDefinition) -> Callable[[Any], str | None]:
        labels = option_labels(f)

        def label(value: Any) -> str | None:
            if type(value) is str:  # the common case: an option id as listed
                found = labels.get(value)
                if found is not None:
                    return found
            if value is None:
                return None
            if is_structured(value):
                self._structured(f)
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


def _coerced(converter: Converter, coerce: Callable[[Any], Any]) -> Converter:
    return lambda values: coerce(converter(values))


def option_labels(f: FieldDefinition) -> dict[str, str]:
    """Option id (as listed and lower-cased) → label."""
    labels = {opt.id: opt.name for opt in f.options}
    labels.update({opt.id.lower(): opt.name for opt in f.options})
    return labels
