"""tap-alida: survey responses and member profiles from Alida's Batch Data Extract API.

Read from here down: ``TapAlida`` checks settings (``settings``, ``config_schema``)
and discovers streams (``streams``); everything one run shares lives in ``run.Run``
(HTTP client; ``directory``: activities, their field definitions and member variables;
``export.plan``: every export and its files; STATE in ``state``). Each stream's
records come from a batch export (``export``: create → poll → download) read
with ijson (``export.file``) and typed from the file's field definitions
(``modelling``).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import sys
import time
from functools import cached_property
from pathlib import Path, PurePath
from typing import IO, Any, ClassVar

import click
from singer_sdk import Stream
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import TapCapabilities
from singer_sdk.tap_base import CliTestOptionValue

from tap_alida import __version__, probe
from tap_alida.catalog_keys import CatalogKeys, add_keys
from tap_alida.directory import Activity
from tap_alida.errors import STREAM_FAILURES, AlidaError
from tap_alida.http.client import AlidaClient
from tap_alida.input_files import check_config_files, check_state, read_catalog_stream, read_state_stream
from tap_alida.modelling.privacy import SensitiveValues
from tap_alida.modelling.types import WarnOnce
from tap_alida.modelling.width import warn_if_too_wide
from tap_alida.run import Run
from tap_alida.sdk import CheckedConfigTap, CountingWriter, PacedStateWriter
from tap_alida.settings import (
    CONFIG_SCHEMA,
    AlidaSettings,
    plain_schema_error,
    removed_settings,
    unknown_settings,
)
from tap_alida.state import StatePacer, flush_held_state
from tap_alida.streams import (
    ActivitiesStream,
    ActivityAnswersStream,
    ActivityFieldsStream,
    ActivityResponsesStream,
    MemberProfilesStream,
    MemberProfileValuesStream,
    member_profiles_schema,
)

# What click passes for a bare ``--probe`` (no activity id): not a possible id.
PROBE_WITHOUT_ACTIVITY = "\x00"


class _UnsortedNoteFilter(logging.Filter):
    """Drop the SDK's "Stream is assumed to be unsorted" WARNING, deliberately.

    member_profile_values is unsorted within its file, but its bookmark is written
    only after the file's last member (never mid-file), so the SDK's progress
    markers are never needed and the note warns about nothing that can happen.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Stream is assumed to be unsorted")


logging.getLogger("singer_sdk").addFilter(_UnsortedNoteFilter())


class TapAlida(CheckedConfigTap):
    """Singer tap for Alida Communities: activity (survey) responses and member profiles, extracted through the asynchronous Batch Data Extract API and streamed with ijson."""  # noqa: E501

    name = "tap-alida"
    plugin_version = __version__
    package_name = "tap-alida"
    # A copy: the SDK appends its built-in settings (stream_maps, batch_config…) to
    # the tap's schema in place, and CONFIG_SCHEMA is the list of our own settings.
    config_jsonschema = copy.deepcopy(CONFIG_SCHEMA)
    dynamic_catalog = True
    # msgspec encodes a RECORD several times faster than the default simplejson
    # writer, with the same output (benchmarks/bench.py); it also counts bytes per
    # message type, for the STATE pace.
    message_writer_class = CountingWriter
    # The SDK's, plus `test`: `tap-alida --test` checks credentials and scope (meltano.yml
    # and the Hub definition declare the same list; a test compares the three).
    capabilities: ClassVar[list[Any]] = [*CheckedConfigTap.capabilities, TapCapabilities.TEST]

    def __init__(self, *args: Any, catalog: Any = None, **kwargs: Any) -> None:
        """The SDK's, keeping the tap's own catalog keys (``catalog_keys``) before the SDK's
        parse drops them: activity ids and the batches discovery made."""
        given = json.loads(Path(catalog).read_text()) if isinstance(catalog, (str, PurePath)) else catalog
        self.catalog_keys = CatalogKeys.read(given)
        super().__init__(*args, catalog=catalog, **kwargs)

    # -- settings -----------------------------------------------------------------------

    def check_config(self, schema_errors: list[str]) -> list[str]:
        """The SDK's JSON-schema checks plus ours, reported together, before any request."""
        known = self.config_jsonschema.get("properties", {})
        for warning in removed_settings(self.config) + unknown_settings(self.config, known):
            self.logger.warning(warning)
        errors = [plain_schema_error(error, self.config) for error in schema_errors]
        return errors or AlidaSettings.errors(self.config)

    @cached_property
    def settings(self) -> AlidaSettings:
        errors = AlidaSettings.errors(self.config)
        if errors:
            raise ConfigValidationError("Config validation failed", errors=errors)
        return AlidaSettings.from_config(self.config)

    @cached_property
    def run(self) -> Run:
        """What this run knows and shares (client, directory, definitions, exports, STATE
        ledger); streams use it."""
        return Run(self, self.settings, self.catalog_keys, self.state_pacer)

    @cached_property
    def state_pacer(self) -> StatePacer:
        """When STATE is written (``state.StatePacer``): every STATE passes through it."""
        writer = self.message_writer
        assert isinstance(writer, CountingWriter)
        return StatePacer(super().state_writer.write_state, writer)

    @property
    def state_writer(self) -> PacedStateWriter:
        """The SDK's STATE writer, paced: the SDK writes STATE after every stream."""
        return PacedStateWriter(super().state_writer, self.state_pacer.write)

    @property
    def client(self) -> AlidaClient:
        return self.run.client

    # -- the run's lifetime: export workers stop with it ---------------------------------
    # (A failing stream stops them itself: see AlidaStream.get_records.)

    def run_discovery(self) -> str:
        """The SDK's ``--discover``, then the run's workers are stopped."""
        try:
            return super().run_discovery()
        finally:
            self.run.stop()

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
        """The SDK's entry point, with ``--state`` and ``--catalog`` read and checked first
        (``input_files``).

        A file that is not JSON or not shaped like a Singer state or catalog becomes
        one error naming the file, instead of a traceback from the SDK's parse.
        """
        if state is not None:
            state = io.StringIO(json.dumps(read_state_stream(state)))
        if catalog is not None:
            catalog = io.StringIO(json.dumps(read_catalog_stream(catalog)))
        try:
            super().invoke(
                about=about, about_format=about_format, config=config, state=state, catalog=catalog
            )
        finally:
            # The STATE held back is written when the sync ends, failed or not: the last STATE
            # of a run is the tap's state as it is then. Here, not at exit (``sync_all`` is final
            # in the SDK), so a run in a long-lived process (the simulation test) ends with it.
            flush_held_state()

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> Any:
        """The SDK's ``--config`` reading, after each file is checked (``input_files``): a
        missing or broken file is one error naming it, not a traceback."""
        check_config_files(value)
        return super().cb_config(ctx, param, value)

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

    @classmethod
    def get_singer_command(cls) -> click.Command:
        """The SDK's command plus ``--probe`` (``probe``: a JSON report of how the tenant answers)."""
        command = super().get_singer_command()
        help_text = (
            "Probe the API contract with a few real calls; print a JSON report (exit 1: blocking). "
            "With ACTIVITY_ID, one activity is exported too (pick a small survey)."
        )
        option = click.Option(
            ["--probe"],
            metavar="[ACTIVITY_ID]",
            is_flag=False,
            flag_value=PROBE_WITHOUT_ACTIVITY,
            default=None,
            expose_value=False,
            callback=cls.cb_probe,
            help=help_text,
        )
        command.params.append(option)
        return command

    @classmethod
    def cb_probe(cls, ctx: click.Context, param: click.Option, value: str | None) -> None:
        """``--probe [ACTIVITY_ID]``; a bare ``--probe`` uses the removed ``probe_activity_id``."""
        if value is None:
            return
        config = ctx.params.get("config")
        kwargs = {"config": config.config, "parse_env_config": config.parse_env} if config else {}
        client = cls(**kwargs, validate_config=True, catalog={"streams": []}).client
        activity = value.strip() if value != PROBE_WITHOUT_ACTIVITY else client.settings.probe_activity_id
        ctx.exit(probe.run(client, activity or None))

    def check_connection(self) -> None:
        """Token, activities in scope, member variables: raises AlidaError when one fails."""
        started = time.monotonic()
        self.client.authenticator.update_access_token()
        activities = self.run.directory.activities
        variables = self.run.directory.member_variables
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
        try:
            return self._discover()
        except BaseException:
            self.run.stop()  # no export of a failed discovery goes on polling
            raise

    @property
    def catalog_dict(self) -> dict[str, Any]:
        """The SDK's catalog plus, on each activity stream, ``alida-activity-id`` and the batch
        discovery made for it (``catalog_keys``), so that the sync maps streams by id and
        does not export the same survey again."""
        catalog: dict[str, Any] = super().catalog_dict
        activity_ids = {
            s.name: s.activity.id for s in self.streams.values() if isinstance(s, ActivityResponsesStream)
        }
        add_keys(catalog, activity_ids, self.run.definitions.discovery_batches())
        return catalog

    def _discover(self) -> list[Stream]:
        warn = WarnOnce(self.logger)
        streams: list[Stream] = []
        activities = self.run.directory.activities
        # All exports at once (closed surveys' definitions come from the cache instead).
        exports = [a for a in activities if self.run.definitions.start_definition_export(a) is not None]
        self.logger.info(
            "Discovering %d activities: %d exported to read their fields, %d from the definitions cache.",
            len(activities),
            len(exports),
            len(activities) - len(exports),
        )
        failed: list[tuple[Activity, AlidaError]] = []
        for activity in activities:
            try:
                fields = self.run.definitions.definition(activity)
            except STREAM_FAILURES as exc:
                if self.settings.fail_fast:
                    raise
                failed.append((activity, exc))
                continue
            schema = self.run.definitions.layout(activity, fields, warn).schema()
            warn_if_too_wide(activity.stream_name, activity.label, schema, self.settings.set_columns)
            streams.append(ActivityResponsesStream(self.run, activity, schema))
        if failed and not streams:
            raise failed[0][1]  # nothing was discovered: the run cannot go on
        for activity, error in failed:
            # One bad survey does not cost the others their night: it is left out of the
            # catalog (the sync then names it, and activity_answers tries it again).
            self.logger.error(
                "%s is left out of the catalog (discover again later): %s", activity.label, error
            )
        streams.append(ActivityAnswersStream(self.run))
        streams.append(ActivityFieldsStream(self.run))
        variables = self.run.directory.member_variables
        settings = self.settings
        sensitive = SensitiveValues(settings.sensitive_values, settings.sensitive_values_salt)
        schema = member_profiles_schema(variables, warn, settings.column_naming, sensitive)
        streams.append(MemberProfilesStream(self.run, schema))
        streams.append(MemberProfileValuesStream(self.run))
        streams.append(ActivitiesStream(self.run))
        return streams

    def _streams_from_catalog(self) -> list[Stream]:
        assert self.input_catalog is not None
        fixed: list[Stream] = []
        activity_streams: list[Stream] = []
        for name, entry in self.input_catalog.items():
            schema = entry.schema.to_dict()
            if name == "activity_answers":
                fixed.append(ActivityAnswersStream(self.run, schema))
            elif name == "activity_fields":
                fixed.append(ActivityFieldsStream(self.run, schema))
            elif name == "member_profiles":
                fixed.append(MemberProfilesStream(self.run, schema))
            elif name == "member_profile_values":
                fixed.append(MemberProfileValuesStream(self.run, schema))
            elif name == "activities":
                fixed.append(ActivitiesStream(self.run, schema))
            elif activity := self.run.directory.activity_by_stream(name):
                activity_streams.append(ActivityResponsesStream(self.run, activity, schema))
            else:
                self.logger.warning(
                    "The catalog has stream %r, which matches no activity in scope (renamed, "
                    "removed, or outside 'activity_ids'); it is skipped. Run discovery again.",
                    name,
                )
        order = [
            "activity_answers",
            "activity_fields",
            "member_profiles",
            "member_profile_values",
            "activities",
        ]
        fixed.sort(key=lambda s: order.index(s.name))
        return activity_streams + fixed


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: known errors become one ERROR line and exit code 1."""
    try:
        return TapAlida.cli.main(args=argv, prog_name="tap-alida", standalone_mode=True)
    except ConfigValidationError as exc:
        # Raised by an eager option's callback (--test) before the SDK's invoke can
        # report it: name every key and problem, as --discover and a sync do.
        for error in exc.errors or [str(exc)]:
            fatal(f"Config validation error: {error}")
        sys.exit(1)
    except AlidaError as exc:
        fatal(str(exc))
        sys.exit(1)


def fatal(message: str) -> None:
    """Print a fatal error once: as an ERROR log line when the SDK's logging is set up (the
    format every other line has, which Meltano relays), else as ``tap-alida: error: …``.

    Once, not both: the same text twice (a log line, then a plain line) read as two errors.
    """
    log = logging.getLogger("tap-alida")
    if log.hasHandlers():
        log.error("%s", message)
    else:
        print(f"tap-alida: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    main()
