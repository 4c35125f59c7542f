"""The base of every stream: the run it reads from, ACTIVATE_VERSION, shared file reads."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

import singer_sdk.singerlib as singer
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import RemoveRecordTransform
from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE

from tap_alida.errors import STREAM_FAILURES, AlidaError, BatchStorageError, ExportFileError, RunFailedError
from tap_alida.modelling.types import FieldDefinition, WarnOnce
from tap_alida.run import ExportNeeds, Run
from tap_alida.sdk import FastRecordMessages, set_table_version, table_version

# Queued STATE events are applied at least this often while records flow.
DRAIN_EVERY_RECORDS = 5000

if TYPE_CHECKING:
    from tap_alida.directory import Activity
    from tap_alida.export.file import ExportFile


class AlidaStream(FastRecordMessages):
    """Base: access to the tap's run (directory, definitions, exports) and warning de-duplication."""

    # Rows are typed when they are built, from the file's field definitions (see
    # records.ActivityRecordMapper), and carry only schema columns, so the SDK's
    # per-value conformance pass would only re-check them; it was most of the
    # per-record cost (benchmarks/bench.py).
    # Deselected columns are still removed by the SDK.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    # A stream of the whole community (members, the activities list), not of surveys: with
    # ``shard_count`` above 1 only shard 0 loads it (``loaded_by_another_shard``).
    whole_community: bool = False
    # A stream that holds every survey's rows (activity_answers, activity_fields): closed
    # surveys it skips keep theirs by row versions (``scheduler.row_version``).
    several_surveys: bool = False

    def __init__(self, run: Run, schema: dict[str, Any], name: str) -> None:
        super().__init__(run.tap, schema=schema, name=name)
        self.run = run
        self.warn = WarnOnce(self.logger)
        self._after_written: list[Callable[[], None]] = []
        self._failure_after_files: RunFailedError | None = None
        self._activate_with_files = False

    # -- STATE is never ahead of the data ----------------------------------------------------

    @cached_property
    def writes_batch_files(self) -> bool:
        """BATCH mode (``batch_config``): rows go to files the SDK writes after this stream's
        records are read, not to stdout as each is yielded."""
        return bool(self.get_batch_config(self.config))

    def when_written(self, apply: Callable[[], None]) -> None:
        """Run ``apply`` (a mark or bookmark into STATE) once the rows yielded so far are written.

        With RECORD messages they are: the SDK writes each record before asking for the
        next. With BATCH messages the SDK writes the last file only after the records
        are read, so ``apply`` waits until the stream's last BATCH message is out
        (``get_batches``); a run that cannot write its files never advances STATE.
        """
        if self.writes_batch_files:
            self._after_written.append(apply)
        else:
            apply()

    def get_batches(self, batch_config: Any, context: Mapping[str, Any] | None = None) -> Iterable[Any]:
        """The SDK's batch files; after the last one's BATCH message, what ``when_written`` held.

        Every file of the stream is written before the first is announced; the SDK writes
        each BATCH message before asking for the next manifest, so the code after the
        ``yield from`` runs once every file is written and announced. A file that cannot be
        written stops the run with one error naming the storage.
        """
        self._after_written.clear()
        self._activate_with_files = False
        try:
            # Every file first (the SDK writes each before yielding it): a read that fails
            # half-way announces none, and ACTIVATE_VERSION can precede them (``empties_before_files``).
            files = list(super().get_batches(batch_config, context))
        except OSError as exc:
            self.run.stop()
            root = getattr(getattr(batch_config, "storage", None), "root", "?")
            msg = (
                f"Could not write the BATCH files of stream {self.name!r} to {root} ({exc}). Check "
                "batch_config.storage.root (a folder or bucket the tap can write to, and the target "
                "can read) and its credentials; STATE was not advanced past the last written file."
            )
            raise BatchStorageError(msg) from exc
        if self._activate_with_files:
            self._write_activate_version()
        yield from files
        applied, self._after_written = self._after_written, []
        for apply in applied:
            apply()
        if applied:
            self.run.ledger.write()
        if self._failure_after_files is not None:
            raise self._failure_after_files

    def export_needs(self) -> ExportNeeds:
        """What this stream reads in a sync (``Run.plan`` starts it all at once)."""
        return ExportNeeds()

    @property
    def loaded_by_another_shard(self) -> bool:
        """A stream of the whole community in a shard other than 0: shard 0 loads it, so that
        the shards' ACTIVATE_VERSIONs never delete each other's rows."""
        return self.whole_community and self.run.settings.shard_index != 0

    @property
    def selected(self) -> bool:
        """The catalog's selection, except that a stream another shard loads is never selected:
        the SDK then sends no SCHEMA for it, so this shard's target never creates or alters its
        table while shard 0's target does (two targets adding one column at once fail)."""
        return not self.loaded_by_another_shard and super().selected

    @selected.setter
    def selected(self, value: bool | None) -> None:
        FastRecordMessages.selected.fset(self, value)  # type: ignore[attr-defined]

    def records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        """The stream's rows (each stream's own)."""
        raise NotImplementedError

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        """The rows of ``records``; a stream that fails does not stop the others.

        A failure of one export (stuck, failed or cancelled, a bad file, drift under
        ``schema_drift: fail``: ``errors.STREAM_FAILURES``) is logged
        as one ERROR line and kept by the run; the other streams complete and keep
        their STATE, and after the last stream the run fails naming every stream
        that failed (``Run.finish_stream``). With ``fail_fast``, or any other error,
        the run stops at once: export workers still polling or downloading would
        otherwise keep the process alive.
        """
        if self.loaded_by_another_shard:
            return  # a dry run (``--test=…``) syncs every stream, deselected or not
        try:
            self.run.plan  # noqa: B018 - the first stream to sync starts every export of the run
            yield from self.records(context)
        except GeneratorExit:  # closed early (a dry run's record limit): the run goes on
            raise
        except STREAM_FAILURES as exc:
            if self.run.settings.fail_fast:
                self.run.stop()
                raise
            self.run.stream_failed(self.name, exc)
        except BaseException:
            self.run.stop()
            raise
        try:
            self.run.finish_stream(self.name)
        except RunFailedError as exc:
            if not self.writes_batch_files:
                raise
            # The SDK writes this stream's last file after its records are read: fail after it.
            self._failure_after_files = exc

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
    def activates_versions(self) -> bool:
        """Whether this run's records carry a table version that is activated at the end."""
        return (
            self.run.settings.emit_activate_version
            and self.replication_method == REPLICATION_FULL_TABLE
            # Batch files carry no version: activating one would delete what they load.
            and not self.get_batch_config(self.config)
        )

    def begin_table_version(self, version: int | None = None) -> None:
        """Stamp the RECORDs that follow with a table version: the run's (its start in ms,
        always rising), or ``version`` (a survey's rows in a stream of several surveys)."""
        if self.activates_versions:
            set_table_version(self, self.run.table_version if version is None else version)

    def versioned(self, version: int) -> dict[str, int]:
        """The row version a mark keeps, when the rows carry one: rows loaded without it (BATCH
        files, ``emit_activate_version_messages: false``) are not skipped by a later run that
        activates versions, which would delete them (``scheduler.decide``)."""
        return {"version": version} if self.activates_versions else {}

    @cached_property
    def empties_before_files(self) -> bool:
        """BATCH mode, a full-table stream of one survey, the members or the activities list:
        once every file of a complete read is written, ACTIVATE_VERSION goes out *before* the
        BATCH messages (``get_batches``), so the target drops the rows of earlier loads (rows
        deleted in Alida, another survey's rows under a name that moved) and then loads the
        files, whose rows carry no version. Not for streams of several surveys: a closed
        survey skipped tonight keeps its rows there."""
        return (
            bool(self.get_batch_config(self.config))
            and self.run.settings.emit_activate_version
            and self.replication_method == REPLICATION_FULL_TABLE
            and not self.several_surveys
        )

    def activate_version(self) -> None:
        """After the last record of a complete full-table read: rows of older versions left the export."""
        if self.empties_before_files:
            self._activate_with_files = True  # written by get_batches, before the BATCH messages
            return
        if not self.activates_versions or table_version(self) is None:
            return
        self._write_activate_version()

    def _write_activate_version(self) -> None:
        version = self.run.table_version
        for stream_map in self.stream_maps:
            if isinstance(stream_map, RemoveRecordTransform):
                continue
            self.run.tap.write_message(
                singer.ActivateVersionMessage(stream=stream_map.stream_alias, version=version)
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
        self, activity: Activity, slot: str
    ) -> Iterator[tuple[ExportFile, list[FieldDefinition]]]:
        """The activity's downloaded file and its field definitions, for one stream's read.

        ``slot`` is where the batch sits in STATE (``state``). It
        is forgotten once the read completes, and also when the file is malformed
        (the rerun must make a new batch); the file is released in any case (the
        last reader deletes it).
        """
        handle = self.run.plan.file(activity.id)
        export = handle.export
        try:
            fields = self.run.definitions.definition_from(activity, export.first("definition"))
            yield export, fields
        except ExportFileError:
            # Every stream that recorded this batch drops it: a rerun must export afresh.
            self.run.ledger.forget_everywhere(export.batch.id)
            raise
        finally:
            handle.release()
            self.run.tally.flush()
        self.run.ledger.forget(slot)


def _alida_error_in_flight() -> bool:
    return isinstance(sys.exc_info()[1], AlidaError)
