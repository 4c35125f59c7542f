"""The STATE the tap is given (``--state``): read and shape-checked before the SDK sees it.

Why: the SDK parses the file with a bare ``json.loads`` and walks
``bookmarks`` assuming objects, so a hand-edited or truncated file (not JSON,
``[]``, ``{"bookmarks": []}``, a stream whose entry is a string) ends in a
Python traceback that names neither the file nor the way out. Here each such
file is one ``StateFileError`` naming the file, what is wrong and what to do.

Only what the tap reads is checked: ``bookmarks`` is an object of objects,
``alida_batches`` and ``alida_last_exports`` (activity_answers' per-activity
entries) are objects, and a bookmark value (``replication_key_value``) is an
ISO-8601 date-time. Unknown keys pass.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import IO, Any

from tap_alida.errors import AlidaError
from tap_alida.input_files import json_kind, parse_json, read_stream
from tap_alida.modelling.types import parse_datetime

logger = logging.getLogger("tap_alida.state_file")

REMEDY = (
    "Give the tap the value of the last STATE message of a run (Meltano keeps it: `meltano state "
    "get <state id>`), or remove the file to start afresh (member profiles are then exported from "
    "'start_date', or in full)."
)


class StateFileError(AlidaError):
    """The STATE given to the tap is not JSON or not of the shape of a Singer state."""


def read_state_stream(stream: IO[str]) -> dict[str, Any]:
    """The state in an open ``--state`` file, checked; raises StateFileError."""
    text, source = read_stream(stream, "STATE", REMEDY, StateFileError)
    return read_state(text, source)


def read_state(text: str, source: str) -> dict[str, Any]:
    """The state in ``text`` (the contents of ``source``), checked; raises StateFileError."""
    value = parse_json(text, "STATE", source, REMEDY, StateFileError, strict=False) if text.strip() else {}
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
    problem = _problem(value)
    if problem is None:
        state: dict[str, Any] = value
        return state
    msg = f"The STATE file {source} is not a Singer state the tap can read: {problem}. {REMEDY}"
    raise StateFileError(msg)


def _problem(value: Any) -> str | None:
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
