"""The files the tap is given (``--config``, ``--catalog``, ``--state``): read and shape-checked
before the SDK sees them.

Why: the SDK reads them with a bare ``json.loads`` and then walks them assuming
the right shapes, so a missing, truncated or hand-broken file ends in a Python
traceback that names neither the file nor the way out. Here each such file is
one error (``InputFileError``, ``StateFileError``) naming the file, what is
wrong and what to do. What JSON Schema checks in the settings is the SDK's
(``settings`` only re-words ranges); unknown keys pass.

Of a STATE only what the tap reads is checked: ``bookmarks`` is an object of
objects, ``alida_batches`` and ``alida_last_exports`` (activity_answers'
per-activity entries) are objects, and a bookmark value
(``replication_key_value``) is an ISO-8601 date-time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from tap_alida.errors import AlidaError
from tap_alida.modelling.types import parse_datetime

logger = logging.getLogger("tap_alida.input_files")

CATALOG_REMEDY = (
    "Give the tap the catalog `tap-alida --discover` prints (under Meltano: `meltano run "
    "--refresh-catalog …`, or `meltano invoke --dump=catalog tap-alida`)."
)
CONFIG_REMEDY = "Write the settings as one JSON object (see config.sample.json and `tap-alida --about`)."


class InputFileError(AlidaError):
    """A config or catalog file that is missing, not JSON, or not of the expected shape."""


def _reject_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def parse_json(
    text: str,
    kind: str,
    source: str,
    remedy: str,
    error: type[AlidaError] = InputFileError,
    *,
    strict: bool = True,
) -> Any:
    """The JSON in ``text`` (the contents of ``kind`` file ``source``), or ``error`` naming the file.

    ``strict``: NaN and Infinity are errors, as the JSON spec has it (Python's
    parser accepts them; STATE files are read as they always were, not strict).
    """
    try:
        return json.loads(text, parse_constant=_reject_constant) if strict else json.loads(text)
    except ValueError as exc:
        msg = f"The {kind} file {source} is not valid JSON ({exc}). {remedy}"
        raise error(msg) from None


def read_stream(
    stream: IO[str], kind: str, remedy: str, error: type[AlidaError] = InputFileError
) -> tuple[str, str]:
    """The text of an open ``--<kind>`` file and its name, or ``error`` naming the file."""
    source = str(getattr(stream, "name", f"given with --{kind.lower()}"))
    try:
        return stream.read(), source
    except (UnicodeDecodeError, OSError) as exc:
        msg = f"The {kind} file {source} could not be read as UTF-8 text ({type(exc).__name__}). {remedy}"
        raise error(msg) from None


def check_config_files(paths: Iterable[str]) -> None:
    """Each ``--config`` file exists, is JSON and holds an object; raises InputFileError."""
    for path in paths:
        if path == "ENV":
            continue
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            msg = f"The config file {path} does not exist. {CONFIG_REMEDY}"
            raise InputFileError(msg) from None
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"The config file {path} could not be read ({type(exc).__name__}). {CONFIG_REMEDY}"
            raise InputFileError(msg) from None
        value = parse_json(text, "config", path, CONFIG_REMEDY)
        if not isinstance(value, Mapping):
            msg = f"The config file {path} holds a JSON {json_kind(value)}, not an object. {CONFIG_REMEDY}"
            raise InputFileError(msg)


def read_catalog_stream(stream: IO[str]) -> dict[str, Any]:
    """The catalog in an open ``--catalog`` file, checked; raises InputFileError."""
    text, source = read_stream(stream, "catalog", CATALOG_REMEDY)
    value = parse_json(text, "catalog", source, CATALOG_REMEDY)
    problem = _catalog_problem(value)
    if problem is not None:
        msg = f"The catalog file {source} is not a Singer catalog: {problem}. {CATALOG_REMEDY}"
        raise InputFileError(msg)
    catalog: dict[str, Any] = value
    if not catalog["streams"]:
        logger.warning("The catalog file %s has no streams: nothing is synced. %s", source, CATALOG_REMEDY)
    return catalog


def _catalog_problem(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return f"it holds a JSON {json_kind(value)}, not an object"
    streams = value.get("streams")
    if not isinstance(streams, list):
        return "'streams' is missing or not an array"
    for n, entry in enumerate(streams):
        where = f"streams[{n}]"
        if not isinstance(entry, Mapping):
            return f"{where} is not an object"
        if not isinstance(entry.get("tap_stream_id"), str):
            return f"{where} has no 'tap_stream_id' string"
        where = f"stream {entry['tap_stream_id']!r}"
        if not isinstance(entry.get("schema"), Mapping):
            return f"{where} has no 'schema' object"
        metadata = entry.get("metadata", [])
        if not isinstance(metadata, list):
            return f"{where}: 'metadata' is not an array"
        for item in metadata:
            if (
                not isinstance(item, Mapping)
                or not isinstance(item.get("breadcrumb"), list)
                or not isinstance(item.get("metadata"), Mapping)
            ):
                return f"{where}: a 'metadata' entry is not {{'breadcrumb': [...], 'metadata': {{...}}}}"
    return None


def json_kind(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return "object"


# -- --state ---------------------------------------------------------------------------

STATE_REMEDY = (
    "Give the tap the value of the last STATE message of a run (Meltano keeps it: `meltano state "
    "get <state id>`), or remove the file to start afresh (member profiles are then exported from "
    "'start_date', or in full)."
)


class StateFileError(AlidaError):
    """The STATE given to the tap is not JSON or not of the shape of a Singer state."""


def read_state_stream(stream: IO[str]) -> dict[str, Any]:
    """The state in an open ``--state`` file, checked (an empty file is an empty state);
    raises StateFileError."""
    text, source = read_stream(stream, "STATE", STATE_REMEDY, StateFileError)
    value = (
        parse_json(text, "STATE", source, STATE_REMEDY, StateFileError, strict=False) if text.strip() else {}
    )
    return check_state(value, source)


def check_state(value: Any, source: str) -> dict[str, Any]:
    """``value`` when it has the shape of a Singer state the tap can read; raises StateFileError.

    ``meltano state get`` prints the state wrapped in ``{"singer_state": …}`` (and the
    tap's own messages point there): that wrapper is taken off, with one INFO line,
    rather than read as a state without bookmarks (which would export everything).
    """
    if (
        isinstance(value, Mapping)
        and "bookmarks" not in value
        and isinstance(value.get("singer_state"), Mapping)
    ):
        logger.info(
            "The STATE file %s is as `meltano state get` prints it: its 'singer_state' is used.", source
        )
        value = value["singer_state"]
    problem = _state_problem(value)
    if problem is None:
        state: dict[str, Any] = value
        return state
    msg = f"The STATE file {source} is not a Singer state the tap can read: {problem}. {STATE_REMEDY}"
    raise StateFileError(msg)


def _state_problem(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return f"it holds a JSON {json_kind(value)}, not an object"
    bookmarks = value.get("bookmarks", {})
    if bookmarks is None:
        return None
    if not isinstance(bookmarks, Mapping):
        return f"'bookmarks' is a JSON {json_kind(bookmarks)}, not an object of stream name → object"
    for stream, entry in bookmarks.items():
        if not isinstance(entry, Mapping):
            return f"bookmarks[{stream!r}] is a JSON {json_kind(entry)}, not an object"
        for key in ("alida_batches", "alida_last_exports"):  # per activity id
            per_activity = entry.get(key)
            if per_activity is not None and not isinstance(per_activity, Mapping):
                return f"bookmarks[{stream!r}][{key!r}] is a JSON {json_kind(per_activity)}, not an object"
        bookmark = entry.get("replication_key_value")
        if bookmark is not None and parse_datetime(bookmark) is None:
            return (
                f"bookmarks[{stream!r}]['replication_key_value'] is {bookmark!r}, not an ISO-8601 date-time"
            )
    return None
