"""Schema drift: an export's fields against the catalog a run was given.

Meltano caches the catalog of the last discovery, so a sync can meet a file
whose questions were added, removed, reworded or retyped since. ``compare``
finds the differences column by column (a column's field is read from its
description, see ``layout``), and ``resolve`` turns them into the schema to
emit and where each of the file's columns goes, by the ``schema_drift`` setting:

* ``evolve``: the catalog's columns stay, in order; new columns are appended
  (nullable); a column whose type changed becomes a string column. The stream
  emits the new SCHEMA before its first record.
* ``ignore``: the catalog's schema stays. New fields go nowhere (their values
  are in ``activity_answers``); a reworded field under ``column_naming: name``
  keeps writing to its old column; values are coerced to the catalog's types.
* ``fail``: any difference stops the run, naming the fields.

Removed fields keep their column in every mode; it is null from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tap_alida.errors import SchemaDriftError
from tap_alida.modelling.layout import ACTIVITY_FIXED_COLUMNS, ActivityLayout, Column, column_ref

logger = logging.getLogger("tap_alida.modelling.drift")

EVOLVE, IGNORE, FAIL = "evolve", "ignore", "fail"


def type_signature(schema: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two column schemas the same type: JSON types (null aside), format, items."""
    types = schema.get("type") or []
    types = [types] if isinstance(types, str) else list(types)
    items = schema.get("items")
    item_types = None
    if isinstance(items, Mapping):
        raw = items.get("type") or []
        item_types = tuple(sorted([raw] if isinstance(raw, str) else raw))
    return (tuple(sorted(t for t in types if t != "null")), schema.get("format"), item_types)


def widened(column: Column) -> dict[str, Any]:
    """The string column a retyped column becomes under ``evolve``."""
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if column.schema.get("description"):
        schema["description"] = column.schema["description"]
    return schema


@dataclass
class Drift:
    """How an export's columns differ from the catalog's."""

    added: list[Column] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # catalog columns nothing maps to
    # (file column, its catalog column's schema)
    retyped: list[tuple[Column, dict[str, Any]]] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # file column → catalog column, same field

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.retyped or self.renamed)

    def describe(self, catalog: Mapping[str, Any]) -> str:
        parts = []
        if self.added:
            parts.append("new: " + "; ".join(c.label for c in self.added))
        if self.renamed:
            moves = "; ".join(f"{old} → {new}" for new, old in self.renamed.items())
            parts.append(f"renamed (question reworded): {moves}")
        if self.removed:
            parts.append("removed: " + "; ".join(_catalog_label(n, catalog[n]) for n in self.removed))
        if self.retyped:
            parts.append(
                "type changed: "
                + "; ".join(
                    f"{c.label} {_type_text(old)} → {_type_text(c.schema)}" for c, old in self.retyped
                )
            )
        return ". ".join(parts)


def _type_text(schema: Mapping[str, Any]) -> str:
    types, fmt, items = type_signature(schema)
    text = "/".join(types) or "any"
    if fmt:
        text += f" ({fmt})"
    if items:
        text += f" of {'/'.join(items)}"
    return text


def _catalog_label(name: str, schema: Mapping[str, Any]) -> str:
    ref = column_ref(schema)
    return name if ref is None else f"{name} (field {ref[0]})"


def compare(catalog_properties: Mapping[str, Any], layout: ActivityLayout) -> Drift:
    """Differences between the catalog's columns and the export's, fixed columns aside."""
    catalog = {n: s for n, s in catalog_properties.items() if n not in ACTIVITY_FIXED_COLUMNS}
    by_ref: dict[tuple[str, str | None], str] = {}
    for name, schema in catalog.items():
        ref = column_ref(schema)
        if ref is not None:
            by_ref.setdefault(ref, name)
    drift = Drift()
    matched: set[str] = set()
    for name, column in layout.columns.items():
        if name in catalog:
            target = name
        elif column.ref in by_ref and by_ref[column.ref] not in layout.columns:
            target = by_ref[column.ref]
            drift.renamed[name] = target
        else:
            drift.added.append(column)
            continue
        matched.add(target)
        if type_signature(catalog[target]) != type_signature(column.schema):
            drift.retyped.append((column, dict(catalog[target])))
    drift.removed = [n for n in catalog if n not in matched]
    return drift


@dataclass
class Plan:
    """What a stream emits for one export: its schema and each file column's target."""

    schema: dict[str, Any]
    schema_changed: bool
    # file column → output column name (None: not emitted)
    targets: dict[str, str | None]


def resolve(mode: str, catalog_schema: Mapping[str, Any], layout: ActivityLayout, label: str) -> Plan:
    """The plan for ``mode``; raises SchemaDriftError under ``fail`` when anything differs."""
    catalog = dict(catalog_schema.get("properties") or {})
    drift = compare(catalog, layout)
    identity: dict[str, str | None] = {name: name for name in layout.columns}
    if not drift.changed:
        return Plan(dict(catalog_schema), False, identity)
    summary = drift.describe(catalog)
    if mode == FAIL:
        msg = (
            f"{label}: the export's fields differ from the catalog in use ({summary}). Setting "
            "'schema_drift' is 'fail'. Refresh the catalog (Meltano: `meltano run --refresh-catalog "
            "…`), or set 'schema_drift' to 'evolve' or 'ignore'."
        )
        raise SchemaDriftError(msg)
    if mode == IGNORE:
        targets = dict(identity)
        for column in drift.added:
            targets[column.name] = None
        targets.update(drift.renamed)
        logger.warning(
            "%s: the export's fields differ from the catalog (%s). 'schema_drift' is 'ignore': the "
            "catalog's columns are kept, new fields are only in activity_answers, and values are "
            "converted to the catalog's types (null where they cannot be).",
            label,
            summary,
        )
        return Plan(dict(catalog_schema), False, targets)
    properties = dict(catalog)
    for column, _old in drift.retyped:
        if column.name not in drift.renamed:  # a renamed column is a new column here
            properties[column.name] = widened(column)
    for new_name in drift.renamed:
        properties[new_name] = layout.columns[new_name].schema
    for column in drift.added:
        properties[column.name] = column.schema
    schema = {**catalog_schema, "properties": properties}
    logger.warning(
        "%s: the export's fields differ from the catalog (%s). 'schema_drift' is 'evolve': an updated "
        "SCHEMA is emitted (new columns nullable, changed types as strings). Refresh the catalog "
        "(`meltano run --refresh-catalog …`) to type them from the new definition.",
        label,
        summary,
    )
    return Plan(schema, schema != dict(catalog_schema), identity)
