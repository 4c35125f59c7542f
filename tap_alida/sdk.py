"""The wall around singer-sdk's private parts: every private SDK name the tap uses is here.

Each use says why no public hook does the job. ``tests/test_sdk_wall.py`` fails
loudly when the pinned SDK changes any of them, and checks that no other module
reaches past this wall. Everything else uses public hooks (``get_records``,
``apply_catalog``, ``get_batch_config``, ``write_message``, ``stream_maps``…).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Generator
from functools import cached_property
from typing import Any

import singer_sdk.singerlib as singer
from singer_sdk import Stream, Tap
from singer_sdk.authenticators import OAuthAuthenticator
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers._state import StateWriter


def table_version(stream: Stream) -> int | None:
    """The version the stream's RECORDs carry (``Stream._stream_version``).

    Why private: the SDK sets it only when it emits ACTIVATE_VERSION itself, which
    it does *before* the first record (see streams.base); there is no public setter.
    """
    return stream._stream_version


def set_table_version(stream: Stream, version: int) -> None:
    """Stamp the stream's coming RECORDs with ``version`` (see ``table_version``)."""
    stream._stream_version = version


def replace_schema(stream: Stream, tap: Tap, schema: dict[str, Any]) -> None:
    """Make ``schema`` the stream's schema mid-sync and emit its SCHEMA message.

    Why private: schema drift is found only when the export file is read, after
    the SDK wrote the catalog's SCHEMA; the SDK has no public way to change a
    stream's schema (and its stream maps) during a sync.
    """
    stream._schema = schema
    tap.mapper.register_raw_stream_schema(stream.name, schema, stream.primary_keys)
    stream._stream_maps = tap.mapper.stream_maps[stream.name]
    stream._write_schema_message()


def oauth_headers(authenticator: OAuthAuthenticator) -> dict[str, str]:
    """The extra headers the token request carries (``OAuthAuthenticator._oauth_headers``).

    Why private: the tap sends its own token request (the SDK's logs the response
    body and retries https only) with the headers given to the SDK's constructor.
    """
    return dict(authenticator._oauth_headers)


class CheckedConfigTap(Tap):
    """A tap that reports the SDK's JSON-schema errors and its own together
    (``Tap._validate_config``).

    Why private: it is where the SDK validates config for every entry point
    (sync, ``--discover``, ``--test``); overriding it is the only way to add
    checks JSON Schema cannot express before any request is made.
    """

    def check_config(self, schema_errors: list[str]) -> list[str]:
        """All config errors, given the SDK's (override to add the tap's own)."""
        return schema_errors

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        errors = self.check_config(list(super()._validate_config(raise_errors=False)))
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors)
        return errors


class FastRecordMessages(Stream):
    """A stream base whose RECORD messages skip the SDK's per-record deselection walk
    when every column is selected (``Stream._generate_record_messages``).

    Why private: the walk copies each row and looks up each column in the
    selection mask, about 10% of the per-record cost of a 30-question survey and
    20% of an activity_answers row, and removes nothing then. With any column
    deselected the SDK's version runs as is. No public hook replaces it.
    """

    @cached_property
    def _every_column_selected(self) -> bool:
        return all(self.mask[("properties", name)] for name in self.schema.get("properties", {}))

    def columns_changed(self) -> None:
        """The schema changed (drift): selection is worked out again."""
        self.__dict__.pop("_every_column_selected", None)

    def _generate_record_messages(
        self, record: dict[str, Any]
    ) -> Generator[singer.RecordMessage, None, None]:
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
                    time_extracted=dt.datetime.now(dt.UTC),
                )


class CountingWriter(MsgSpecWriter):
    """The msgspec message writer (several times faster than the default one), counting the
    bytes it writes by message type: the STATE pace (``state.StatePacer``) keeps STATE a
    small share of the output. Public API: ``MsgSpecWriter.write_message`` is the hook."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bytes: dict[str, int] = {}

    def write_message(self, message: singer.Message) -> None:
        data = self.format_message(message)
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        kind = str(getattr(message.type, "value", message.type))  # an enum: str() would name the class
        self._bytes[kind] = self._bytes.get(kind, 0) + len(data)

    def written(self, message_type: str) -> int:
        """Bytes of messages of this type (``RECORD``, ``STATE``…) written so far."""
        return self._bytes.get(message_type, 0)


class PacedStateWriter(StateWriter):
    """``Tap.state_writer`` handing every STATE the SDK writes to ``pace`` instead of
    writing it at once (``StateWriter`` lives in the private ``helpers._state``).

    Why private: the SDK writes STATE at the end of every stream, and a STATE holds
    every stream's bookmark; with a stream per survey that is quadratic in the number
    of surveys. ``Tap.state_writer`` is the one place every STATE passes, and the
    class it must return is private. ``pace`` calls ``emit`` (the SDK's own writer,
    which drops a STATE equal to the last) when it is time.
    """

    def __init__(self, inner: StateWriter, pace: Callable[[dict[str, Any]], None]) -> None:
        self.inner = inner
        self._pace = pace

    def write_state(self, state: Any) -> None:
        self._pace(state)
