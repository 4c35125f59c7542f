"""tap-alida: survey responses and member profiles from Alida's Batch Data Extract API.

Read from here down: ``TapAlida`` validates settings (``settings``), builds one
``AlidaClient`` (``client``: token, retries) and one per-run ``Community``
(``community``: activities, definitions, batches, files), and discovers streams
(``streams``). Each stream's records come from a batch export (``export``:
create → poll → download) parsed with ijson (``export_file``) and typed from the
file's field definitions (``schema``).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import sys
import time
from functools import cached_property
from typing import IO, Any

import click
from singer_sdk import Stream, Tap
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.tap_base import CliTestOptionValue

from tap_alida import __version__
from tap_alida.client import STOP, AlidaClient
from tap_alida.community import Community
from tap_alida.errors import AlidaError
from tap_alida.privacy import SensitiveValues
from tap_alida.schema import WarnOnce, format_datetime, parse_datetime
from tap_alida.settings import CONFIG_SCHEMA, AlidaSettings, unknown_settings
from tap_alida.state_file import check_state, read_state_stream
from tap_alida.streams import (
    BATCH_STATE_KEY,
    BATCHES_STATE_KEY,
    ActivityAnswersStream,
    ActivityFieldsStream,
    ActivityResponsesStream,
    MemberProfilesStream,
    MemberProfileValuesStream,
    MemberStream,
    answers_slot,
    member_profiles_schema,
)
from tap_alida.width import warn_if_too_wide


class _UnsortedNoteFilter(logging.Filter):
    """Drop the SDK's "Stream is assumed to be unsorted" WARNING, deliberately.

    member_profile_values is unsorted within its file, but its bookmark is written
    only after the file's last member (never mid-file), so the SDK's progress
    markers are never needed and the note warns about nothing that can happen.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Stream is assumed to be unsorted")


logging.getLogger("singer_sdk").addFilter(_UnsortedNoteFilter())


class TapAlida(Tap):
    """Singer tap for Alida Communities: activity (survey) responses and member profiles, extracted through the asynchronous Batch Data Extract API and streamed with ijson."""  # noqa: E501

    name = "tap-alida"
    plugin_version = __version__
    package_name = "tap-alida"
    # A copy: the SDK appends its built-in settings (stream_maps, batch_config…) to
    # the tap's schema in place, and CONFIG_SCHEMA is the list of our own settings.
    config_jsonschema = copy.deepcopy(CONFIG_SCHEMA)
    dynamic_catalog = True
    # msgspec encodes a RECORD several times faster than the default simplejson
    # writer, with the same output (benchmarks/bench.py).
    message_writer_class = MsgSpecWriter

    # -- settings -----------------------------------------------------------------------

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """The SDK's JSON-schema checks plus ours, reported together, before any request."""
        errors = super()._validate_config(raise_errors=False)
        for warning in unknown_settings(self.config, self.config_jsonschema.get("properties", {})):
            self.logger.warning(warning)
        if not errors:
            errors = AlidaSettings.errors(self.config)
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors)
        return errors

    @cached_property
    def settings(self) -> AlidaSettings:
        errors = AlidaSettings.errors(self.config)
        if errors:
            raise ConfigValidationError("Config validation failed", errors=errors)
        return AlidaSettings.from_config(self.config)

    @cached_property
    def client(self) -> AlidaClient:
        return AlidaClient(self.settings)

    @cached_property
    def community(self) -> Community:
        return Community(self.client)

    # -- --state ------------------------------------------------------------------------

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        state: IO[str] | None = None,
        catalog: IO[str] | None = None,
    ) -> None:
        """The SDK's entry point, with ``--state`` read and checked first (``state_file``).

        A STATE file that is not JSON or not shaped like a Singer state becomes
        one error naming the file, instead of a traceback from the SDK's parse.
        """
        if state is not None:
            state = io.StringIO(json.dumps(read_state_stream(state)))
        super().invoke(about=about, about_format=about_format, config=config, state=state, catalog=catalog)

    def load_state(self, state: dict[str, Any]) -> None:
        """The SDK's, after the same shape check (for a state passed as a dict, not a file)."""
        super().load_state(check_state(state, "given to the tap"))

    # -- --test ------------------------------------------------------------------------

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """``--test``: credentials and reachability in seconds, without exporting anything.

        The SDK's default (``run_connection_test``) syncs one record of every
        stream, which for a batch-export API means a full export of every
        activity, and building the tap discovers (exports) them all first. Here
        the tap is built with an empty catalog and only checks what a first run
        needs: a token, the activities in scope and the member variables.
        ``--test=schema`` keeps the SDK's behaviour.
        """
        if value != CliTestOptionValue.All.value:
            super().cb_test(ctx, param, value)
            return
        config = ctx.params.get("config")
        tap = cls(
            config=config.config if config else None,
            parse_env_config=bool(config and config.parse_env),
            validate_config=True,
            catalog={"streams": []},
        )
        tap.check_connection()
        ctx.exit()

    def check_connection(self) -> None:
        """Token, activities in scope, member variables: raises AlidaError when one fails."""
        started = time.monotonic()
        self.client.authenticator.update_access_token()
        activities = self.community.activities
        variables = self.community.member_variables
        names = ", ".join(a.stream_name for a in activities[:5]) + (", …" if len(activities) > 5 else "")
        self.logger.info(
            "Connection test passed in %.1f s: the token endpoint accepted the credentials, "
            "community %r at %s has %d activities in scope (%s) and %d member variables.",
            time.monotonic() - started,
            self.settings.community,
            self.settings.base_url,
            len(activities),
            names,
            len(variables),
        )

    # -- discovery --------------------------------------------------------------------

    def discover_streams(self) -> list[Stream]:
        """Streams from the input catalog when one is given, else by running discovery.

        Discovery exports every activity in scope once to read its field
        definitions (only the ``definition`` part of each file is downloaded).
        With a catalog (``meltano run``), no export is made here: schemas come
        from the catalog and activities are matched by their stream names,
        which are deterministic.
        """
        if self.input_catalog is not None:
            return self._streams_from_catalog()
        warn = WarnOnce(self.logger)
        streams: list[Stream] = []
        activities = self.community.activities
        self.logger.info("Discovering %d activities.", len(activities))
        for activity in activities:  # all exports run at once, up to max_concurrent_exports
            self.community.start_definition_export(activity)
        for activity in activities:
            fields = self.community.definition(activity)
            schema = self.community.layout(activity, fields, warn).schema()
            warn_if_too_wide(activity.stream_name, activity.label, schema, self.settings.set_columns)
            streams.append(ActivityResponsesStream(self, activity, schema))
        streams.append(ActivityAnswersStream(self))
        streams.append(ActivityFieldsStream(self))
        variables = self.community.member_variables
        settings = self.settings
        sensitive = SensitiveValues(settings.sensitive_values, settings.sensitive_values_salt)
        schema = member_profiles_schema(variables, warn, settings.column_naming, sensitive)
        streams.append(MemberProfilesStream(self, schema))
        streams.append(MemberProfileValuesStream(self))
        return streams

    def _streams_from_catalog(self) -> list[Stream]:
        assert self.input_catalog is not None
        fixed: list[Stream] = []
        activity_streams: list[Stream] = []
        for name, entry in self.input_catalog.items():
            schema = entry.schema.to_dict()
            if name == "activity_answers":
                fixed.append(ActivityAnswersStream(self, schema))
            elif name == "activity_fields":
                fixed.append(ActivityFieldsStream(self, schema))
            elif name == "member_profiles":
                fixed.append(MemberProfilesStream(self, schema))
            elif name == "member_profile_values":
                fixed.append(MemberProfileValuesStream(self, schema))
            elif activity := self.community.activity_by_stream(name):
                activity_streams.append(ActivityResponsesStream(self, activity, schema))
            else:
                self.logger.warning(
                    "The catalog has stream %r, which matches no activity in scope (renamed, "
                    "removed, or outside 'activity_ids'); it is skipped. Run discovery again.",
                    name,
                )
        order = ["activity_answers", "activity_fields", "member_profiles", "member_profile_values"]
        fixed.sort(key=lambda s: order.index(s.name))
        return activity_streams + fixed

    # -- exports and their STATE -------------------------------------------------------

    def start_exports(self) -> None:
        """Start the export job of every selected stream, once, when the sync begins.

        Jobs resume a batch a crashed run recorded in STATE when it is still
        usable. Activity streams get their file; ``activity_fields`` needs only the
        definitions of activities whose streams are not selected; both member
        streams share one member export.
        """
        if getattr(self, "_exports_started", False):
            return
        self._exports_started = True
        community = self.community
        community.workdir  # noqa: B018 - made now: dead runs' spool folders are removed at start
        community.runner.listener = self._record_batch
        selected = [s for s in self.streams.values() if s.selected]
        answers = next((s for s in selected if isinstance(s, ActivityAnswersStream)), None)
        readers: dict[str, list[str]] = {}  # activity id → STATE slots of the streams reading its file
        resumes: dict[str, Any] = {}
        for stream in selected:
            if isinstance(stream, ActivityResponsesStream):
                readers.setdefault(stream.activity.id, []).append(stream.name)
                resumes[stream.activity.id] = stream.stream_state.get(BATCH_STATE_KEY)
        if answers is not None:
            recorded = answers.stream_state.get(BATCHES_STATE_KEY) or {}
            for activity in community.activities:
                readers.setdefault(activity.id, []).append(answers_slot(activity.id))
                resumes[activity.id] = resumes.get(activity.id) or recorded.get(activity.id)
        for activity in community.activities:
            if activity.id in readers:
                slots = tuple(readers[activity.id])
                community.expect_reads(activity, len(slots))
                community.start_activity_export(activity, slots, resumes.get(activity.id))
        member_streams = [s for s in selected if isinstance(s, MemberStream)]
        if member_streams:
            resume = next(
                (
                    s.stream_state[BATCH_STATE_KEY]
                    for s in member_streams
                    if s.stream_state.get(BATCH_STATE_KEY)
                ),
                None,
            )
            names = tuple(s.name for s in member_streams)
            community.start_member_export(self.member_since(), names, resume)
        if any(isinstance(s, ActivityFieldsStream) for s in selected):
            for activity in community.activities:
                if activity.id not in readers:
                    community.start_definition_export(activity)

    def _record_batch(self, slots: tuple[str, ...], entry: dict[str, Any] | None) -> None:
        """Put a batch into (or take it out of) STATE and emit STATE now.

        A slot is a stream name, or ``activity_answers:<activity id>`` for the
        batch activity_answers reads of one activity (kept under ``alida_batches``).
        """
        for slot in slots:
            name, _, activity_id = slot.partition(":")
            state = self.streams[name].stream_state
            if activity_id:
                batches = state.setdefault(BATCHES_STATE_KEY, {})
                if entry is None:
                    batches.pop(activity_id, None)
                else:
                    batches[activity_id] = entry
                if not batches:
                    state.pop(BATCHES_STATE_KEY, None)
            elif entry is None:
                state.pop(BATCH_STATE_KEY, None)
            else:
                state[BATCH_STATE_KEY] = entry
        self.state_writer.write_state(self.state)

    def forget_batch(self, slot: str) -> None:
        """A stream is done with its batch: a rerun must not re-use it."""
        name, _, activity_id = slot.partition(":")
        state = self.streams[name].stream_state
        if (activity_id and activity_id in (state.get(BATCHES_STATE_KEY) or {})) or (
            not activity_id and BATCH_STATE_KEY in state
        ):
            self._record_batch((slot,), None)

    def forget_batch_everywhere(self, batch_id: str) -> None:
        """Drop a batch from every stream's STATE (its file is malformed: no stream may re-use it).

        The activity stream and ``activity_answers`` record the same batch under
        their own slots; forgetting only the failing stream's slot would leave the
        other to re-use the bad file on the rerun.
        """
        for name, stream in self.streams.items():
            state = stream.stream_state
            entry = state.get(BATCH_STATE_KEY)
            if isinstance(entry, dict) and str(entry.get("id")) == batch_id:
                self._record_batch((name,), None)
            batches = state.get(BATCHES_STATE_KEY)
            if isinstance(batches, dict):
                for activity_id, entry in list(batches.items()):
                    if isinstance(entry, dict) and str(entry.get("id")) == batch_id:
                        self._record_batch((f"{name}:{activity_id}",), None)

    # -- state shared by the member streams ----------------------------------------------

    def member_since(self) -> str | None:
        """``sinceDatetime`` for this run's member export (None: a full export).

        ``member_profiles`` needs a full export unless ``member_profiles_incremental``
        (an incremental one carries only changed variables: partial rows). Otherwise
        both member streams read the same file, so the export starts from the
        *older* of their bookmarks: a stream whose last run died mid-file is not
        skipped past. Any selected stream without a bookmark means ``start_date``
        (or a full export).
        """
        selected = [s for s in self.streams.values() if isinstance(s, MemberStream) and s.selected]
        if any(not s.replication_key for s in selected):
            return None
        # Read bookmarks from state directly: the SDK's get_starting_timestamp() only
        # answers once that stream's own sync has begun, and the other may not have.
        starts = [s.stream_state.get("replication_key_value") or self.settings.start_date for s in selected]
        parsed = [parse_datetime(start) for start in starts]
        if not parsed or any(start is None for start in parsed):
            return None
        return format_datetime(min(start for start in parsed if start is not None))


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: known errors become one ERROR line and exit code 1."""
    try:
        return TapAlida.cli.main(args=argv, prog_name="tap-alida", standalone_mode=True)
    except ConfigValidationError as exc:
        # Raised by an eager option's callback (--test) before the SDK's invoke can
        # report it: name every key and problem, as --discover and a sync do.
        for error in exc.errors or [str(exc)]:
            logging.getLogger("tap-alida").error("Config validation error: %s", error)
            print(f"tap-alida: error: config: {error}", file=sys.stderr)
        sys.exit(1)
    except AlidaError as exc:
        logging.getLogger("tap-alida").error("%s", exc)
        print(f"tap-alida: error: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        STOP.set()  # wake export workers so the process exits without waiting for them


if __name__ == "__main__":
    main()
