"""Member streams: ``member_profiles`` (one row per member, one column per variable) and
``member_profile_values`` (one row per member × variable), both from one member export."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

import singer_sdk.singerlib as singer
from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE

from tap_alida.errors import ExportFileError
from tap_alida.modelling import drift
from tap_alida.modelling.naming import assign_names
from tap_alida.modelling.privacy import DROP, HASH, SensitiveValues
from tap_alida.modelling.types import (
    SET,
    WarnOnce,
    canonical_type,
    format_datetime,
    normalize_datetime,
    parse_datetime,
    property_schema,
    to_number,
    to_text,
)
from tap_alida.run import ExportNeeds, Run
from tap_alida.streams.base import AlidaStream

if TYPE_CHECKING:
    from tap_alida.directory import MemberVariable
    from tap_alida.export.plan import MemberExport


MEMBER_PROFILES_FIXED: dict[str, dict[str, Any]] = {
    "member_id": {"type": ["string"], "description": "Member GUID."},
    "last_sync_date": {
        "type": ["string", "null"],
        "format": "date-time",
        "description": "lastSyncDate of the member export the row came from (the bookmark).",
    },
    "batch_id": {"type": ["string", "null"], "description": "Id of the member profile batch."},
}


def member_variable_columns(variables: Iterable[MemberVariable], naming: str = "name") -> dict[str, str]:
    """Variable id → column of ``member_profiles`` (``column_naming``: name or id)."""
    return assign_names(
        [(v.id, v.name) for v in variables],
        fallback_prefix="variable",
        reserved=MEMBER_PROFILES_FIXED,
        naming=naming,
    )


def member_profiles_schema(
    variables: list[MemberVariable], warn: WarnOnce, naming: str, sensitive: SensitiveValues
) -> dict[str, Any]:
    """One column per member variable; sensitive ones hashed (strings) or left out."""
    columns = member_variable_columns(variables, naming)
    properties = dict(MEMBER_PROFILES_FIXED)
    for v in variables:
        canonical = canonical_type(v.data_type)
        if canonical is None:
            warn(
                ("type", v.id),
                "Member variable %r (%s) has unknown data type %r; it is loaded as a string.",
                v.name,
                v.id,
                v.data_type,
            )
        doc = f"Member variable {v.name!r} ({v.id})."
        if v.is_sensitive:
            if sensitive.mode == DROP:
                continue
            doc += " " + sensitive.describe()
            if sensitive.mode == HASH:
                canonical = SET if canonical == SET else "string"
        properties[columns[v.id]] = property_schema(canonical, doc)
    return {"type": "object", "properties": properties}


MEMBER_PROFILE_VALUES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "member_id": {"type": ["string"], "description": "Member GUID."},
        "variable_id": {"type": ["string"], "description": "Member variable GUID."},
        "variable_name": {"type": ["string", "null"]},
        "data_type": {"type": ["string", "null"], "description": "Alida data type as exported."},
        "is_sensitive": {
            "type": ["boolean", "null"],
            "description": "isSensitive, from the export or /membervariables.",
        },
        "values": {
            "type": ["array", "null"],
            "items": {"type": "string"},
            "description": "The values as text. For sensitive variables: per setting "
            "'sensitive_values' (hex SHA-256 of salt + value, or null when dropped).",
        },
        "value_ids": {"type": ["array", "null"], "items": {"type": ["string", "null"]}},
        "effective_date": {"type": ["string", "null"], "format": "date-time"},
        **{k: MEMBER_PROFILES_FIXED[k] for k in ("last_sync_date", "batch_id")},
    },
}


class MemberStream(AlidaStream):
    """Shared bookmark logic of the member streams.

    The bookmark is the ``lastSyncDate`` of the last member file that was *fully*
    processed (never earlier than the ``sinceDatetime`` that file was asked for,
    nor than the bookmark before it); it is written only after the file's last
    member, so a run that dies mid-file re-exports from the previous bookmark.
    """

    replication_key = "last_sync_date"
    is_sorted = False
    whole_community = True

    def export_needs(self) -> ExportNeeds:
        # Asked of selected streams only: in a shard above 0 this stream is not (``selected``).
        return ExportNeeds(member_file=True)

    @cached_property
    def sensitive(self) -> SensitiveValues:
        settings = self.run.settings
        return SensitiveValues(settings.sensitive_values, settings.sensitive_values_salt)

    @cached_property
    def _sensitive_ids(self) -> set[str]:
        return {v.id for v in self.run.directory.member_variables if v.is_sensitive}

    def is_sensitive(self, variable: Mapping[str, Any]) -> bool:
        """Flagged by the export file or by ``/membervariables``."""
        return variable.get("isSensitive") is True or str(variable.get("id")) in self._sensitive_ids

    def rows(self, export: MemberExport) -> Iterable[dict[str, Any]]:
        raise NotImplementedError

    def records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        self.begin_table_version()
        export = self.run.plan.members()
        count = 0
        try:
            for row in self.rows(export):
                count += 1
                yield row
        except ExportFileError:
            self.run.ledger.forget(self.name)
            raise
        self.logger.info(
            "%s: %d rows from %s (lastSyncDate %s).",
            self.name,
            count,
            export.batch.describe(),
            export.last_sync_date,
        )
        self.activate_version()
        state = self.get_context_state(context)
        state.pop("progress_markers", None)
        if self.replication_key:
            self.when_written(lambda: self._advance_bookmark(state, export))
        self.run.ledger.forget(self.name)

    def _advance_bookmark(self, state: dict[str, Any], export: MemberExport) -> None:
        """Bookmark := the latest of the file's lastSyncDate, the export's sinceDatetime and
        the bookmark it replaces: a bookmark never moves backwards (a rerun would then
        export again what this run already loaded, or worse, skip nothing it should)."""
        last_sync = parse_datetime(export.last_sync_date)
        since = parse_datetime(export.batch.since)
        previous = parse_datetime(state.get("replication_key_value"))
        if export.last_sync_date is None or last_sync is None:
            self.logger.warning(
                "%s: the member export %s has no usable lastSyncDate (%r); the bookmark stays where it was.",
                self.name,
                export.batch.id,
                export.last_sync_date,
            )
            return
        if since is not None and last_sync < since:
            self.warn(
                ("last-sync-before-since", export.batch.id),
                "%s: Alida reports lastSyncDate %s for member export %s, older than the sinceDatetime "
                "%s it was created with; the bookmark stays at %s so that it never moves backwards.",
                self.name,
                format_datetime(last_sync),
                export.batch.id,
                format_datetime(since),
                format_datetime(since),
            )
        candidates = [d for d in (last_sync, since, previous) if d is not None]
        state["replication_key"] = self.replication_key
        state["replication_key_value"] = format_datetime(max(candidates))

    def _members(self, export: MemberExport) -> Iterable[dict[str, Any]]:
        for member in export.file.items("members.item"):
            if isinstance(member, Mapping) and member.get("memberId") is not None:
                yield dict(member)


class MemberProfilesStream(MemberStream):
    """One row per member in the export, one column per profile variable."""

    primary_keys = ("member_id",)

    def __init__(self, run: Run, schema: dict[str, Any]) -> None:
        super().__init__(run, schema=schema, name="member_profiles")
        self._apply_member_mode()

    def _apply_member_mode(self) -> None:
        """Full table unless ``member_profiles_incremental``: an incremental member export
        carries only the variables that changed, and a Singer RECORD is a full row, so an
        upserting target would blank every other column of a changed member."""
        if self.run.settings.member_profiles_incremental:
            self.replication_key = "last_sync_date"
            self.forced_replication_method = None
        else:
            self.replication_key = None  # type: ignore[assignment]
            self.forced_replication_method = REPLICATION_FULL_TABLE

    def apply_catalog(self, catalog: singer.Catalog) -> None:
        """The catalog's schema and selection, but the replication the settings decide
        (a catalog cached before the setting changed must not bring partial rows back)."""
        super().apply_catalog(catalog)
        self._apply_member_mode()

    def rows(self, export: MemberExport) -> Iterable[dict[str, Any]]:
        variables = self.run.directory.member_variables
        columns = member_variable_columns(variables, self.run.settings.column_naming)
        properties = self.schema.get("properties", {})
        mappers: dict[str, tuple[str, str | None]] = {}
        for v in variables:
            if columns[v.id] in properties:
                mappers[v.id] = (columns[v.id], canonical_type(v.data_type))
        # A RECORD is a full row: a variable absent from the member's entry is null
        # (the export is full, or member_profiles_incremental says changed members
        # come complete), never omitted for an upserting target to blank.
        template: dict[str, Any] = dict.fromkeys(column for column, _ in mappers.values())
        template["batch_id"] = export.batch.id
        template["last_sync_date"] = normalize_datetime(export.last_sync_date)
        for member in self._members(export):
            row = template.copy()
            row["member_id"] = str(member["memberId"])
            for variable in member.get("variables") or ():
                variable_id = str(variable.get("id"))
                sensitive = self.is_sensitive(variable)
                if sensitive and self.sensitive.mode == DROP:
                    continue
                target = mappers.get(variable_id)
                if target is None:
                    self.warn(
                        ("unknown-variable", variable_id),
                        "member_profiles: the export has member variable %r (%s), which the "
                        "catalog has no column for; its values are in member_profile_values.",
                        variable.get("name"),
                        variable_id,
                    )
                    continue
                column, canonical = target
                canonical = canonical or canonical_type(variable.get("dataType"))
                if sensitive and self.sensitive.mode == HASH:
                    # hash the value as text, as member_profile_values shows it
                    text = self._convert(variable, SET if canonical == SET else "string")
                    row[column] = self._hashed(column, variable, text, properties[column])
                    continue
                row[column] = self._convert(variable, canonical)
            yield row

    def _hashed(self, column: str, variable: Mapping[str, Any], value: Any, schema: Mapping[str, Any]) -> Any:
        """The hash of a sensitive value, or None where the column cannot hold a hash."""
        types = drift.type_signature(schema)[0]
        fits = ("array" in types) if isinstance(value, list) else types == ("string",)
        if fits and schema.get("format") is None:
            return self.sensitive.protect(value)
        self.warn(
            ("sensitive-column", column),
            "member_profiles: variable %r (%s) is flagged isSensitive in the export but its "
            "column %s is typed %s by the catalog, which cannot hold a hash; it is loaded as null. "
            "Run discovery again to make it a hashed string column.",
            variable.get("name"),
            variable.get("id"),
            column,
            schema.get("type"),
        )
        return None

    def _convert(self, variable: Mapping[str, Any], canonical: str | None) -> Any:
        raw = [v.get("value") if isinstance(v, Mapping) else v for v in variable.get("values") or ()]
        if canonical == SET:
            return [t for t in (to_text(v) for v in raw) if t is not None]
        if not raw:
            return None
        if len(raw) > 1:
            self.warn(
                ("multi", str(variable.get("id"))),
                "member_profiles: variable %r (%s) is typed %r but has %d values; the first is kept "
                "(all are in member_profile_values).",
                variable.get("name"),
                variable.get("id"),
                variable.get("dataType"),
                len(raw),
            )
        value = raw[0]
        if canonical == "double":
            return to_number(value)
        if canonical == "date-time":
            return normalize_datetime(value)
        return to_text(value)


class MemberProfileValuesStream(MemberStream):
    """One row per member × variable, values as exported: the lossless member view."""

    primary_keys = ("member_id", "variable_id")

    def __init__(self, run: Run, schema: dict[str, Any] | None = None) -> None:
        super().__init__(run, schema=schema or MEMBER_PROFILE_VALUES_SCHEMA, name="member_profile_values")

    def rows(self, export: MemberExport) -> Iterable[dict[str, Any]]:
        last_sync = normalize_datetime(export.last_sync_date)
        for member in self._members(export):
            member_id = str(member["memberId"])
            for variable in member.get("variables") or ():
                values = [v for v in variable.get("values") or () if v is not None]
                texts = [to_text(v.get("value") if isinstance(v, Mapping) else v) or "" for v in values]
                sensitive = self.is_sensitive(variable)
                yield {
                    "member_id": member_id,
                    "variable_id": str(variable.get("id")),
                    "variable_name": variable.get("name"),
                    "data_type": variable.get("dataType"),
                    "is_sensitive": sensitive,
                    "values": self.sensitive.protect(texts) if sensitive else texts,
                    "value_ids": [
                        None if not isinstance(v, Mapping) or v.get("id") is None else str(v["id"])
                        for v in values
                    ],
                    "effective_date": normalize_datetime(variable.get("effectiveDate")),
                    "last_sync_date": last_sync,
                    "batch_id": export.batch.id,
                }
