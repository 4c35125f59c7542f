"""The tap's streams: thin, each reads from the per-run ``Community``.

* one ``ActivityResponsesStream`` per activity (survey): full export each run,
  one row per record (``layout``), schema drift handled per ``drift``;
* ``activity_answers``: every value of every activity, one row each (long form);
* ``activity_fields``: the data dictionary (activity × field → column, options);
* ``member_profiles`` and ``member_profile_values``: incremental, both read the
  same member export file and keep the same bookmark, its ``lastSyncDate``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

import singer_sdk.singerlib as singer
from singer_sdk import Stream
from singer_sdk import typing as th
from singer_sdk.helpers._util import utc_now
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import RemoveRecordTransform
from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE

from tap_alida.errors import AlidaError, ExportFileError
from tap_alida.modelling import drift
from tap_alida.modelling.naming import assign_names
from tap_alida.modelling.privacy import DROP, HASH, SensitiveValues
from tap_alida.modelling.records import ACTIVITY_ANSWERS_SCHEMA, ActivityRecordMapper, AnswerMapper
from tap_alida.modelling.types import (
    SET,
    FieldDefinition,
    WarnOnce,
    canonical_type,
    format_datetime,
    normalize_datetime,
    parse_datetime,
    parse_definition,
    property_schema,
    to_number,
    to_text,
)

# Key of the stream's STATE entry for a batch in flight (re-used after a crash).
BATCH_STATE_KEY = "alida_batch"
# activity_answers reads one batch per activity: activity id → entry.
BATCHES_STATE_KEY = "alida_batches"
# Queued STATE events are applied at least this often while records flow.
DRAIN_EVERY_RECORDS = 5000

if TYPE_CHECKING:
    from tap_alida.community import Activity, Community, MemberExport, MemberVariable
    from tap_alida.export.file import ExportFile
    from tap_alida.tap import TapAlida


class AlidaStream(Stream):
    """Base: access to the tap's per-run community model and warning de-duplication."""

    # Rows are typed when they are built, from the file's field definitions (see
    # records.ActivityRecordMapper), and carry only schema columns, so the SDK's
    # per-value conformance pass would only re-check them; it was most of the
    # per-record cost (benchmarks/bench.py).
    # Deselected columns are still removed by the SDK.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: TapAlida, schema: dict[str, Any], name: str) -> None:
        super().__init__(tap, schema=schema, name=name)
        self.alida_tap = tap
        self.warn = WarnOnce(self.logger)

    @property
    def community(self) -> Community:
        return self.alida_tap.community

    def records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        """The stream's rows (each stream's own)."""
        raise NotImplementedError

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        """The rows of ``records``; a stream that fails stops the run's export workers.

        The SDK then ends the sync; workers still polling or downloading other
        exports would otherwise keep the process alive until they finish.
        """
        try:
            yield from self.records(context)
        except GeneratorExit:  # closed early (a dry run's record limit): the run goes on
            raise
        except BaseException:
            self.alida_tap.client.stop.set()
            raise

    # -- ACTIVATE_VERSION: deletions reach the warehouse ------------------------------------

    @property
    def emit_activate_version_messages(self) -> bool:
        """Never let the SDK emit ACTIVATE_VERSION: it does so *before* the first record.

        A target that honours it then soft-deletes every row of the table at the
        start of the sync, and if the export fails the rows stay deleted. This tap
        emits it after the last record instead (``activate_version``), so a stream
        that fails mid-way emits none.
        """
        return False

    @cached_property
    def _activates_version(self) -> bool:
        """Whether this run's records carry a table version that is activated at the end."""
        return (
            self.alida_tap.settings.emit_activate_version
            and self.replication_method == REPLICATION_FULL_TABLE
            # Batch files carry no version: activating one would delete what they load.
            and not self.get_batch_config(self.config)
        )

    def begin_table_version(self) -> None:
        """Stamp this sync's RECORDs with a new table version (milliseconds, always rising)."""
        if self._activates_version and self._stream_version is None:
            self._stream_version = int(time.time() * 1000)

    def activate_version(self) -> None:
        """After the last record of a complete full-table read: rows of older versions left the export."""
        if not self._activates_version or self._stream_version is None:
            return
        for stream_map in self.stream_maps:
            if isinstance(stream_map, RemoveRecordTransform):
                continue
            self.alida_tap.write_message(
                singer.ActivateVersionMessage(stream=stream_map.stream_alias, version=self._stream_version)
            )

    def log(self, message: str, *args: Any, level: int = logging.INFO, **kwargs: Any) -> None:
        """The SDK's, without its "An unhandled error occurred while syncing" line for an
        AlidaError: ``tap.main`` reports that error as the run's one ERROR line, naming
        the stream's activity or batch, and a generic line before it would be the first."""
        if level == logging.ERROR and message.startswith("An unhandled error") and _alida_error_in_flight():
            return
        super().log(message, *args, level=level, **kwargs)

    @contextmanager
    def read_activity_file(
        self, activity: Activity, slot: str, resume: Any
    ) -> Iterator[tuple[ExportFile, list[FieldDefinition]]]:
        """The activity's downloaded file and its field definitions, for one stream's read.

        ``slot`` is where the batch sits in STATE (see TapAlida._record_batch). It
        is forgotten once the read completes, and also when the file is malformed
        (the rerun must make a new batch); the file is released in any case (the
        last reader deletes it).
        """
        tap = self.alida_tap
        tap.start_exports()
        job = self.community.start_activity_export(activity, (slot,), resume)
        export = self.community.runner.result(job)
        try:
            fields = parse_definition(export.first("definition"), activity.label)
            self.community.remember_definition(activity, fields)
            yield export, fields
        except ExportFileError:
            # Every stream that recorded this batch drops it: a rerun must export afresh.
            tap.forget_batch_everywhere(export.batch.id)
            raise
        finally:
            self.community.release_file(activity, export)
            self.community.tally.flush()
        tap.forget_batch(slot)

    @cached_property
    def _every_column_selected(self) -> bool:
        return all(self.mask[("properties", name)] for name in self.schema.get("properties", {}))

    def _generate_record_messages(
        self, record: dict[str, Any]
    ) -> Generator[singer.RecordMessage, None, None]:
        """The SDK's version (singer-sdk 0.54), minus its per-record walk over
        deselected properties when every column is selected.

        That walk copies the row and looks up each column in the selection mask,
        about 10% of the per-record cost of a 30-question survey and 20% of an
        activity_answers row, and removes nothing then. With any column
        deselected the SDK's version runs as is (tests/test_records.py deselects
        one). Conformance is NONE (above), so the stream-map loop below is all
        that is left of it.
        """
        if not self._every_column_selected:
            yield from super()._generate_record_messages(record)
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield singer.RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=utc_now(),
                )


def _alida_error_in_flight() -> bool:
    return isinstance(sys.exc_info()[1], AlidaError)


class ActivityResponsesStream(AlidaStream):
    """Responses to one activity: one row per record of its export file."""

    primary_keys = ("activity_id", "response_id")
    replication_key = None

    def __init__(self, tap: TapAlida, activity: Activity, schema: dict[str, Any]) -> None:
        super().__init__(tap, schema=schema, name=activity.stream_name)
        self.activity = activity

    def records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        runner = self.community.runner
        resume = self.stream_state.get(BATCH_STATE_KEY)
        self.begin_table_version()
        with self.read_activity_file(self.activity, self.name, resume) as (export, fields):
            started = time.monotonic()
            layout = self.community.layout(self.activity, fields, self.warn)
            plan = drift.resolve(
                self.alida_tap.settings.schema_drift,
                self.schema,
                layout,
                f"{self.name} ({self.activity.label})",
            )
            if plan.schema_changed:
                self._evolve_schema(plan.schema)
            mapper = ActivityRecordMapper(
                activity_id=self.activity.id,
                activity_label=self.activity.label,
                batch_id=export.batch.id,
                layout=layout,
                plan=plan,
                warn=self.warn,
                tally=self.community.tally,
            )
            count = 0
            for record in export.items("records.item"):
                count += 1
                yield mapper.map(record)
                if count % DRAIN_EVERY_RECORDS == 0 and runner.has_events:
                    runner.drain()
            elapsed = time.monotonic() - started
            self.logger.info(
                "%s: %d records from %s in %.2f s (%.0f records/s).",
                self.name,
                count,
                export.batch.describe(),
                elapsed,
                count / max(elapsed, 1e-9),
            )
        self.activate_version()

    def _evolve_schema(self, schema: dict[str, Any]) -> None:
        """Emit ``schema`` (the catalog's, evolved) before this export's records.

        The SDK wrote the catalog's SCHEMA when the sync began; targets apply a
        later SCHEMA for the same stream as an ALTER. Stream maps are rebuilt
        from the new schema so that they (and their SCHEMA) carry the new columns;
        new columns are selected (SelectionMask defaults them to the stream's).
        """
        self._schema = schema
        self._tap.mapper.register_raw_stream_schema(self.name, schema, self.primary_keys)
        self._stream_maps = self._tap.mapper.stream_maps[self.name]
        self.__dict__.pop("_every_column_selected", None)
        self._write_schema_message()


class ActivityAnswersStream(AlidaStream):
    """Every value of every activity in scope: one row per activity × response × field × value.

    Schema-stable (it never drifts), so new questions reach the warehouse here
    even under ``schema_drift: ignore``. It reads the same batch files as the
    activity streams (each file is parsed once per stream that reads it).
    """

    primary_keys = ("activity_id", "response_id", "field_id", "value_index")
    replication_key = None

    def __init__(self, tap: TapAlida, schema: dict[str, Any] | None = None) -> None:
        super().__init__(tap, schema=schema or ACTIVITY_ANSWERS_SCHEMA, name="activity_answers")

    def records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        self.alida_tap.start_exports()
        self.begin_table_version()
        runner = self.community.runner
        for activity in self.community.activities:
            resume = (self.stream_state.get(BATCHES_STATE_KEY) or {}).get(activity.id)
            with self.read_activity_file(activity, answers_slot(activity.id), resume) as (export, fields):
                started = time.monotonic()
                mapper = AnswerMapper(activity.id, fields, activity.label, self.community.tally)
                count = 0
                for record in export.items("records.item"):
                    for row in mapper.rows(record):
                        count += 1
                        yield row
                        if count % DRAIN_EVERY_RECORDS == 0 and runner.has_events:
                            runner.drain()
                self.logger.info(
                    "%s: %d values of %s from %s in %.2f s.",
                    self.name,
                    count,
                    activity.label,
                    export.batch.describe(),
                    time.monotonic() - started,
                )
        self.activate_version()


def answers_slot(activity_id: str) -> str:
    """The STATE slot of activity_answers' batch for one activity (see TapAlida._record_batch)."""
    return f"activity_answers:{activity_id}"


ACTIVITY_FIELDS_SCHEMA = th.PropertiesList(
    th.Property("activity_id", th.StringType, required=True, description="Alida activity id."),
    th.Property("field_id", th.StringType, required=True, description="Field (question) id."),
    th.Property("stream_name", th.StringType, description="The activity's stream."),
    th.Property("position", th.IntegerType, description="0-based position in the definition."),
    th.Property(
        "column_name",
        th.StringType,
        description="The field's column in the activity stream (null: a multi-select field shown "
        "only as indicator columns).",
    ),
    th.Property("name", th.StringType, description="Field name (question text)."),
    th.Property("data_type", th.StringType, description="Alida data type as exported."),
    th.Property("visibility", th.StringType, description="meta.visibility (active, hidden, …)."),
    th.Property(
        "options",
        th.ArrayType(
            th.ObjectType(
                th.Property("id", th.StringType),
                th.Property("name", th.StringType),
                th.Property("visibility", th.StringType),
                th.Property("indicator_column", th.StringType),
            )
        ),
        description="Choice options of enum/set fields, with their indicator columns "
        "(set_columns: indicators or both).",
    ),
).to_dict()


class ActivityFieldsStream(AlidaStream):
    """The data dictionary: one row per activity × field, for analysts to join against."""

    primary_keys = ("activity_id", "field_id")
    replication_key = None

    def __init__(self, tap: TapAlida, schema: dict[str, Any] | None = None) -> None:
        super().__init__(tap, schema=schema or ACTIVITY_FIELDS_SCHEMA, name="activity_fields")

    def records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        self.alida_tap.start_exports()
        self.begin_table_version()
        for activity in self.community.activities:
            fields = self.community.definition(activity)
            layout = self.community.layout(activity, fields, self.warn)
            yield from layout.field_rows(activity.id, activity.stream_name)
        self.activate_version()


# --------------------------------------------------------------------------- members

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

    @cached_property
    def sensitive(self) -> SensitiveValues:
        settings = self.alida_tap.settings
        return SensitiveValues(settings.sensitive_values, settings.sensitive_values_salt)

    @cached_property
    def _sensitive_ids(self) -> set[str]:
        return {v.id for v in self.community.member_variables if v.is_sensitive}

    def is_sensitive(self, variable: Mapping[str, Any]) -> bool:
        """Flagged by the export file or by ``/membervariables``."""
        return variable.get("isSensitive") is True or str(variable.get("id")) in self._sensitive_ids

    def rows(self, export: MemberExport) -> Iterable[dict[str, Any]]:
        raise NotImplementedError

    def records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        tap = self.alida_tap
        tap.start_exports()
        self.begin_table_version()
        job = self.community.start_member_export(tap.member_since(), (self.name,))
        export = self.community.runner.result(job)
        count = 0
        try:
            for row in self.rows(export):
                count += 1
                yield row
        except ExportFileError:
            tap.forget_batch(self.name)
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
            self._advance_bookmark(state, export)
        tap.forget_batch(self.name)

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

    def __init__(self, tap: TapAlida, schema: dict[str, Any]) -> None:
        super().__init__(tap, schema=schema, name="member_profiles")
        self._apply_member_mode()

    def _apply_member_mode(self) -> None:
        """Full table unless ``member_profiles_incremental``: an incremental member export
        carries only the variables that changed, and a Singer RECORD is a full row, so an
        upserting target would blank every other column of a changed member."""
        if self.alida_tap.settings.member_profiles_incremental:
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
        variables = self.community.member_variables
        columns = member_variable_columns(variables, self.alida_tap.settings.column_naming)
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

    def __init__(self, tap: TapAlida, schema: dict[str, Any] | None = None) -> None:
        super().__init__(tap, schema=schema or MEMBER_PROFILE_VALUES_SCHEMA, name="member_profile_values")

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
