"""Activity streams: one per survey (wide rows), ``activity_answers`` (one row per value),
``activity_fields`` (the data dictionary). All full table: a full export each run."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from singer_sdk import typing as th

from tap_alida.errors import STREAM_FAILURES
from tap_alida.export.scheduler import CLOCK_MARGIN, Decision, export_mark
from tap_alida.modelling import drift
from tap_alida.modelling.answers import ACTIVITY_ANSWERS_SCHEMA, AnswerMapper
from tap_alida.modelling.records import ActivityRecordMapper
from tap_alida.modelling.types import format_datetime, normalize_datetime
from tap_alida.run import ExportNeeds, Run
from tap_alida.sdk import replace_schema
from tap_alida.state import answers_slot, last_export, recorded_batch
from tap_alida.streams.base import DRAIN_EVERY_RECORDS, AlidaStream

if TYPE_CHECKING:
    from tap_alida.directory import Activity


class ActivityResponsesStream(AlidaStream):
    """Responses to one activity: one row per record of its export file."""

    primary_keys = ("activity_id", "response_id")
    replication_key = None

    def __init__(self, run: Run, activity: Activity, schema: dict[str, Any]) -> None:
        super().__init__(run, schema=schema, name=activity.stream_name)
        self.activity = activity

    def decision(self) -> Decision:
        """Export this run, or skip (a closed survey already loaded after it closed)."""
        return self.run.decide(self.name, self.activity, last_export(self))

    def export_needs(self) -> ExportNeeds:
        if not self.decision().export:
            return ExportNeeds()
        return ExportNeeds(activity_files=[(self.activity.id, self.name, recorded_batch(self))])

    def records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        decision = self.decision()
        if not decision.export:
            # No RECORD and no ACTIVATE_VERSION: the warehouse keeps the rows as loaded.
            self.logger.info("%s: skipped, %s.", self.name, decision.why)
            return
        self.begin_table_version()
        with self.read_activity_file(self.activity, self.name) as (export, fields):
            started = time.monotonic()
            layout = self.run.definitions.layout(self.activity, fields, self.warn)
            plan = drift.resolve(
                self.run.settings.schema_drift,
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
                tally=self.run.tally,
            )
            count = 0
            for record in export.items("records.item"):
                count += 1
                yield mapper.map(record)
                if count % DRAIN_EVERY_RECORDS == 0:
                    self.run.plan.drain()
            elapsed = time.monotonic() - started
            self.logger.info(
                "%s: %d records from %s in %.2f s (%.0f records/s).",
                self.name,
                count,
                export.batch.describe(),
                elapsed,
                count / max(elapsed, 1e-9),
            )
            mark = export_mark(export.batch, self.activity, count, self.run.started)
            self.when_written(lambda: self.run.ledger.mark_export(self, mark))
        self.activate_version()

    def _evolve_schema(self, schema: dict[str, Any]) -> None:
        """Emit ``schema`` (the catalog's, evolved) before this export's records.

        The SDK wrote the catalog's SCHEMA when the sync began; targets apply a
        later SCHEMA for the same stream as an ALTER. Stream maps are rebuilt
        from the new schema so that they (and their SCHEMA) carry the new columns;
        new columns are selected (SelectionMask defaults them to the stream's).
        """
        replace_schema(self, self.run.tap, schema)
        self.columns_changed()


class ActivityAnswersStream(AlidaStream):
    """Every value of every activity in scope: one row per activity × response × field × value.

    Schema-stable (it never drifts), so new questions reach the warehouse here
    even under ``schema_drift: ignore``. It reads the same batch files as the
    activity streams (each file is parsed once per stream that reads it).
    """

    several_surveys = True

    primary_keys = ("activity_id", "response_id", "field_id", "value_index")
    replication_key = None

    def __init__(self, run: Run, schema: dict[str, Any] | None = None) -> None:
        super().__init__(run, schema=schema or ACTIVITY_ANSWERS_SCHEMA, name="activity_answers")

    def decision(self, activity: Activity) -> Decision:
        # Row versions only matter where rows carry them (not BATCH, not without ACTIVATE_VERSION).
        return self.run.decide(
            self.name, activity, last_export(self, activity.id), several_surveys=self.activates_versions
        )

    def export_needs(self) -> ExportNeeds:
        return ExportNeeds(
            activity_files=[
                (a.id, answers_slot(a.id), recorded_batch(self, a.id))
                for a in self.run.directory.activities
                if self.decision(a).export
            ]
        )

    def records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        """Every activity's values; skipped closed surveys keep their rows as loaded.

        Each survey's rows carry the version until which they stay valid
        (``scheduler.row_version``), and the stream then activates the run's version:
        rows that left an export this run are deleted, a skipped survey's are kept
        (it is skipped only while they are valid). A run in which a survey failed
        activates nothing: that survey's rows stay, and the next complete run deletes
        what this one would have.
        """
        self.begin_table_version()
        skipped = failed = 0
        for activity in self.run.directory.activities:
            decision = self.decision(activity)
            if not decision.export:
                skipped += 1
                continue
            try:
                yield from self._activity_rows(activity)
            except STREAM_FAILURES as exc:
                if self.run.settings.fail_fast:
                    raise
                failed += 1  # its rows stay as loaded; the others go on
                self.run.stream_failed(f"{self.name} ({activity.label})", exc)
        if failed:
            self.logger.info(
                "%s: %d activities failed; their rows stay as loaded, so no ACTIVATE_VERSION this run.",
                self.name,
                failed,
            )
            return
        if skipped:
            self.logger.info("%s: %d closed activities skipped; their rows stay valid.", self.name, skipped)
        self.activate_version()

    def _activity_rows(self, activity: Activity) -> Iterable[dict[str, Any]]:
        """One activity's values, then its export mark."""
        version = self.run.row_version(activity)
        with self.read_activity_file(activity, answers_slot(activity.id)) as (export, fields):
            self.begin_table_version(version)
            started = time.monotonic()
            mapper = AnswerMapper(activity.id, fields, activity.label, self.run.tally)
            count = 0
            for record in export.items("records.item"):
                for row in mapper.rows(record):
                    count += 1
                    yield row
                    if count % DRAIN_EVERY_RECORDS == 0:
                        self.run.plan.drain()
            self.logger.info(
                "%s: %d values from %s in %.2f s.",  # describe() names the activity once
                self.name,
                count,
                export.batch.describe(),
                time.monotonic() - started,
            )
            mark = {**export_mark(export.batch, activity, count, self.run.started), **self.versioned(version)}
            self.when_written(lambda: self.run.ledger.mark_export(self, mark, activity.id))


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

    several_surveys = True

    primary_keys = ("activity_id", "field_id")
    replication_key = None

    def __init__(self, run: Run, schema: dict[str, Any] | None = None) -> None:
        super().__init__(run, schema=schema or ACTIVITY_FIELDS_SCHEMA, name="activity_fields")

    def decision(self, activity: Activity) -> Decision:
        # Row versions only matter where rows carry them (not BATCH, not without ACTIVATE_VERSION).
        return self.run.decide(
            self.name, activity, last_export(self, activity.id), several_surveys=self.activates_versions
        )

    def export_needs(self) -> ExportNeeds:
        """The definitions of the surveys it loads this run: a closed survey already loaded,
        whose rows are still valid, needs none (no export, and no cache either)."""
        return ExportNeeds(
            definitions=tuple(a.id for a in self.run.directory.activities if self.decision(a).export)
        )

    def records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        """Each survey's fields, with the row versions of ``activity_answers`` (same rules):
        a closed survey loaded while closed is skipped while its rows are valid."""
        self.begin_table_version()
        skipped = 0
        for activity in self.run.directory.activities:
            if not self.decision(activity).export:
                skipped += 1
                continue
            version = self.run.row_version(activity)
            fields = self.run.definitions.definition(activity)
            layout = self.run.definitions.layout(activity, fields, self.warn)
            self.begin_table_version(version)
            count = 0
            for row in layout.field_rows(activity.id, activity.stream_name):
                count += 1
                yield row
            # The definition is as of now: a closed survey's cannot change while it stays closed.
            now = dt.datetime.now(dt.UTC).replace(microsecond=0) - CLOCK_MARGIN
            mark = {"created_at": format_datetime(now), "records": count, **self.versioned(version)}
            self.when_written(partial(self.run.ledger.mark_export, self, mark, activity.id))
        if skipped:
            self.logger.info("%s: %d closed activities skipped; their rows stay valid.", self.name, skipped)
        self.activate_version()


ACTIVITIES_SCHEMA = th.PropertiesList(
    th.Property("activity_id", th.StringType, required=True, description="Alida activity id."),
    th.Property("name", th.StringType),
    th.Property("activity_type", th.StringType, description="activityType as listed (Survey, Forum…)."),
    th.Property("status", th.StringType, description="status as listed (open, closed…)."),
    th.Property("create_date", th.DateTimeType),
    th.Property("closed_on", th.DateTimeType, description="closedOn (a future one: a scheduled close)."),
    th.Property("last_update_date", th.DateTimeType, description="lastUpdateDate, when listed."),
    th.Property("stream_name", th.StringType, description="The stream the tap gives the activity."),
    th.Property(
        "in_scope",
        th.BooleanType,
        description="Exported by this tap (activity_ids or every Survey; by any shard).",
    ),
    th.Property(
        "last_exported_at",
        th.DateTimeType,
        description="When Alida created the last export of it that an earlier run loaded (Alida's "
        "clock; streams sync in name order and this one comes first, so this run's exports show "
        "from the next run on).",
    ),
    th.Property("last_export_records", th.IntegerType, description="Records in that export."),
).to_dict()


class ActivitiesStream(AlidaStream):
    """One row per activity as ``/activities`` lists it (every type): the table a warehouse
    joins responses to, and the one that shows which surveys exist and when each was
    last exported (closed surveys are skipped once loaded: ``export.scheduler``)."""

    primary_keys = ("activity_id",)
    replication_key = None
    whole_community = True

    def __init__(self, run: Run, schema: dict[str, Any] | None = None) -> None:
        super().__init__(run, schema=schema or ACTIVITIES_SCHEMA, name="activities")

    def records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        self.begin_table_version()
        in_scope = self.run.directory.in_any_shard
        for activity in self.run.directory.listed:
            mark = self._last_export(activity)
            yield {
                "activity_id": activity.id,
                "name": activity.name,
                "activity_type": activity.activity_type,
                "status": activity.status,
                "create_date": normalize_datetime(activity.created),
                "closed_on": normalize_datetime(activity.closed_on),
                "last_update_date": normalize_datetime(activity.last_update),
                "stream_name": activity.stream_name,
                "in_scope": activity.id in in_scope,
                "last_exported_at": normalize_datetime(mark.get("created_at")) if mark else None,
                "last_export_records": mark.get("records") if mark else None,
            }
        self.activate_version()

    def _last_export(self, activity: Activity) -> Mapping[str, Any] | None:
        """The latest mark any stream keeps of the activity (as STATE holds it when this stream
        syncs: the SDK syncs streams in name order and ``activities`` sorts first)."""
        streams = self.run.tap.streams
        marks = []
        if activity.stream_name in streams:
            marks.append(last_export(streams[activity.stream_name]))
        if "activity_answers" in streams:
            marks.append(last_export(streams["activity_answers"], activity.id))
        usable = [m for m in marks if isinstance(m, Mapping) and m.get("created_at")]
        return max(usable, key=lambda m: str(m["created_at"]), default=None)
