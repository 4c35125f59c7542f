"""Shapes without values, for the contract probe (``probe``): what a report may show.

A report goes into bug reports, so it holds names and types only: JSON key paths
with the types of their values (``items[].id: string``), a file's top-level keys
and the ``dataType`` words of its definitions, and a storage link's lifetime as a
number. Never a value, a URL query string or a header value. Keys that do not
look like field names (an id used as a key could be member data) show as ``<key>``.
``Call`` collects what the responses of one probe step looked like.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ijson
import requests

from tap_alida.export.file import maybe_gunzip, parse_problem
from tap_alida.modelling.types import parse_datetime

MAX_PATHS = 300  # distinct key paths kept per call
SCAN_BYTES = 64 * 1024 * 1024  # a file is scanned this far (decoded), then the scan stops
SCAN_SECONDS = 120.0
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9 _-]{0,31}$")
# Where the data-type words of a file's definitions sit (§4.1, §4.2).
DATATYPE_PATHS = ("definition.fields[].type.dataType", "members[].variables[].dataType")
# Query parameters of pre-signed URLs that bound a link's life: seconds from issue, or a moment.
RELATIVE_EXPIRY = ("x-amz-expires", "x-goog-expires")
ABSOLUTE_EXPIRY = ("expires", "se", "expiry", "exp")


def safe_key(key: Any) -> str:
    return str(key) if _NAME.match(str(key)) else "<key>"


def safe_word(word: Any) -> str:
    """A vocabulary word (status, dataType, encoding) as is; anything else as ``<other>``."""
    return str(word) if _WORD.match(str(word)) else "<other>"


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def key_types(value: Any, out: dict[str, set[str]], path: str = "") -> dict[str, set[str]]:
    """Every key path of a parsed JSON value with the types seen there."""
    if path and (path in out or len(out) < MAX_PATHS):
        out.setdefault(path, set()).add(type_name(value))
    if isinstance(value, Mapping):
        for key, item in value.items():
            key_types(item, out, join(path, safe_key(key)))
    elif isinstance(value, list):
        for item in value:
            key_types(item, out, f"{path}[]")
    return out


def render(paths: Mapping[str, set[str]]) -> list[str]:
    return [f"{path}: {'|'.join(sorted(types))}" for path, types in sorted(paths.items())]


@dataclass
class Call:
    """What the responses of one step looked like."""

    name: str
    requests: int = 0
    statuses: list[int] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    headers: set[str] = field(default_factory=set)
    keys: dict[str, set[str]] = field(default_factory=dict)  # of 2xx/3xx JSON bodies
    error_keys: dict[str, set[str]] = field(default_factory=dict)  # of 4xx/5xx JSON bodies
    top_keys: set[str] = field(default_factory=set)  # of JSON object bodies
    words: list[str] = field(default_factory=list)  # status words, in order of first sight
    hops: list[tuple[bool, int]] = field(default_factory=list)  # (API host?, HTTP status)
    links: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # storage URL, headers: not shown
    located: list[int] = field(default_factory=list)  # statuses of API answers with Location, not 3xx
    extra: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"call": self.name, "requests": self.requests, "http_statuses": self.statuses}
        out.update(urls=self.urls, header_names=sorted(self.headers, key=str.lower), keys=render(self.keys))
        if self.error_keys:
            out["error_keys"] = render(self.error_keys)
        if self.words:
            out["status_words"] = self.words
        return {**out, **self.extra}


class _Capped(io.RawIOBase):
    """A response body read up to a number of bytes or a moment, then an early end."""

    def __init__(self, raw: Any, limit: int, deadline: float) -> None:
        self._raw, self._limit, self._deadline = raw, limit, deadline
        self.bytes_read = 0
        self.capped = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.bytes_read >= self._limit or time.monotonic() > self._deadline:
            self.capped = True
            return 0
        n = self._raw.readinto(buffer) or 0
        self.bytes_read += n
        return n


def scan_file(response: requests.Response) -> dict[str, Any]:
    """Top-level keys, key paths with types and dataType words of an export file, streamed.

    Reads at most ``SCAN_BYTES`` (decoded) or ``SCAN_SECONDS``; ``complete`` says
    whether the whole file was seen. ``json`` is False when the body is not JSON.
    """
    raw = response.raw
    if hasattr(raw, "decode_content"):
        raw.decode_content = True  # gzip Content-Encoding
        raw.auto_close = False
    capped = _Capped(raw, SCAN_BYTES, time.monotonic() + SCAN_SECONDS)
    top: list[str] = []
    paths: dict[str, set[str]] = {}
    data_types: set[str] = set()
    segments: list[str] = []  # the path to the current value; '' while a map awaits its key
    result: dict[str, Any] = {"json": True}
    try:
        for event, value in ijson.basic_parse(maybe_gunzip(capped), use_float=True):
            if event == "map_key":
                segments[-1] = safe_key(value)
                if len(segments) == 1:
                    top.append(safe_key(value))
                continue
            if event in ("end_map", "end_array"):
                segments.pop()
                continue
            path = ""
            for segment in segments:
                path = path + segment if segment == "[]" else join(path, segment)
            if path and (path in paths or len(paths) < MAX_PATHS):
                kind = {"start_map": "object", "start_array": "array"}.get(event)
                paths.setdefault(path, set()).add(kind or type_name(value))
            if path in DATATYPE_PATHS and event == "string":
                data_types.add(safe_word(value))
            if event == "start_map":
                segments.append("")
            elif event == "start_array":
                segments.append("[]")
    except ijson.JSONError as exc:
        if not capped.capped:
            result = {"json": False, "problem": parse_problem(exc).split(":")[0][:80]}
    result.update(
        complete=not capped.capped and result["json"],
        bytes_scanned=capped.bytes_read,
        top_level_keys=top,
        keys=render(paths),
        data_types=sorted(data_types),
    )
    return result


def link_lifetime(url: str, headers: Mapping[str, str]) -> tuple[int | None, str | None]:
    """Seconds a storage link lives (from its query or an ``Expires`` header) and where that came from."""
    now = time.time()
    query = {k.lower(): (k, v) for k, v in parse_qsl(urlsplit(url).query)}
    for key in RELATIVE_EXPIRY:
        if key in query and query[key][1].strip().isdigit():
            return int(query[key][1]), f"query parameter {safe_key(query[key][0])}"
    for key in ABSOLUTE_EXPIRY:
        if key in query:
            name, value = query[key]
            moment = _moment(value)
            if moment is not None:
                return math.ceil(moment - now), f"query parameter {safe_key(name)} (a moment)"
    if headers.get("Expires"):
        try:
            expires = email.utils.parsedate_to_datetime(headers["Expires"]).timestamp()
        except (TypeError, ValueError):
            return None, None
        return math.ceil(expires - now), "Expires header"
    return None, None


def _moment(value: str) -> float | None:
    """Epoch seconds of ``1767225600`` or an ISO-8601 date-time."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    parsed = parse_datetime(value)
    return parsed.timestamp() if isinstance(parsed, dt.datetime) else None
