"""Differential fuzz test of the export-file readers (``tap_alida.export.file``).

Hypothesis generates export documents (activity and member files) with what the
docs leave open or a tool may do: key order (``records`` before ``definition``),
extra keys anywhere, whitespace, a byte-order mark, escapes and surrogate pairs,
every JSON number form, nulls where lists or objects are expected, objects or
nested lists as values, empty and long strings, duplicate keys; serialises them
several ways (compact, indented, odd whitespace, gzip or not) and sometimes breaks
them (cut, garbage, a flipped byte). The tap's streaming readers, exactly as a
sync and discovery use them (``check_complete`` + ``ExportFile.first``/``items``
on disk, ``read_definition_from_stream`` over a body delivered in odd chunk
sizes), must give what a reference reader built on ``json.loads`` of the whole
document gives, or both must reject the file, the tap with one clear
``ExportFileError`` line naming the batch.

Where the two may legitimately differ the reference states the tap's rule (RFC
8259 leaves it open): a name repeated at the top level counts once per
occurrence for arrays read item by item (``records``, ``members``: every
occurrence, in order) and the first occurrence for a value read whole
(``definition``, ``lastSyncDate``); deeper down the last occurrence wins, as in
``json.loads``. A number no double holds (``1e400``) is exact (``Decimal``).

Budget: ``ALIDA_FUZZ_EXAMPLES`` examples per test (default ``UNIT_EXAMPLES``, a
few seconds, derandomised); ``python3 dev.py soak`` runs it with a big random
budget. Every difference found on the way is a case of ``test_reader_regressions``.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import tempfile
import zlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_alida.errors import ExportFileError
from tap_alida.export.batch import ACTIVITY, MEMBERS, Batch
from tap_alida.export.file import ExportFile, check_complete, read_definition_from_stream

UNIT_EXAMPLES = 60
EXAMPLES = int(os.environ.get("ALIDA_FUZZ_EXAMPLES", UNIT_EXAMPLES))
SOAK = "ALIDA_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not SOAK,  # the unit tier runs the same examples every time
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
BATCH = {
    ACTIVITY: Batch(ACTIVITY, "fuzz-batch", "activity 'Fuzz' (a1)", activity_id="a1"),
    MEMBERS: Batch(MEMBERS, "fuzz-batch", "member profiles"),
}
# What each kind of file is read for: (value read whole, array read item by item).
PARTS = {ACTIVITY: ("definition", "records"), MEMBERS: ("lastSyncDate", "members")}
BOM = b"\xef\xbb\xbf"


# -- documents: a tree that keeps key order and duplicates, and raw tokens ------------------


@dataclass(frozen=True)
class Obj:
    pairs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Raw:
    """A token written as is: a number form, or a string with chosen escapes."""

    text: str


NUMBER_FORMS = [
    "0", "-0", "0.0", "-0.0", "1e2", "1E2", "1e+2", "1E-2", "0e0", "-1.5e-3", "1e400", "-1e400",
    "1e-400", "123456789012345678901234567890", "-9223372036854775809", "9223372036854775807",
    "18446744073709551616", "0.1000000000000000055511151231257827", "1.7976931348623157e308",
    "2.2250738585072014e-308", "4.9e-324", "5e-324", "12.50", "100",
]  # fmt: skip
STRING_TOKENS = [
    '"\\ud83d\\ude00"', '"\\uD83D\\uDE00"', '"\\u00e9t\\u00E9"', '"\\/\\b\\f\\n\\r\\t\\"\\\\"',
    '"\\u0000"', '""', '"caf\\u00e9 \\ud834\\udd1e"',
]  # fmt: skip


def number_tokens() -> st.SearchStrategy[Raw]:
    built = st.builds(
        lambda i, frac, exp: f"{i}{frac}{exp}",
        st.integers(-(10**30), 10**30),
        st.sampled_from(["", ".0", ".5", ".125", ".000001", ".99999999999999999999"]),
        st.sampled_from(["", "e0", "E+1", "e-7", "e308", "e-308", "e309", "E-330"]),
    )
    floats = st.floats(allow_nan=False, allow_infinity=False).map(repr)
    return st.one_of(st.sampled_from(NUMBER_FORMS), built, floats, st.integers().map(str)).map(Raw)


TEXT = st.text(max_size=12)
LONG_TEXT = st.sampled_from(["", "x" * 70_000, "é" * 40_000])  # empty, and past one 64 KiB read
SCALARS = st.one_of(st.none(), st.booleans(), number_tokens(), TEXT, st.sampled_from(STRING_TOKENS).map(Raw))


def objects(values: st.SearchStrategy[Any], keys: st.SearchStrategy[str] = TEXT) -> st.SearchStrategy[Obj]:
    """Objects whose keys may repeat (a short alphabet of keys makes repeats likely)."""
    key = st.one_of(keys, st.sampled_from(["id", "value", "a", "a"]))
    return st.lists(st.tuples(key, values), max_size=5).map(lambda pairs: Obj(tuple(pairs)))


JSON = st.recursive(
    SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), objects(inner)), max_leaves=8
)


@st.composite
def documents(draw: st.DrawFn, kind: str) -> Obj | Any:
    """An export document of ``kind`` as a tree: its parts in any order, maybe repeated."""
    whole, array = PARTS[kind]
    if kind == ACTIVITY:
        field = objects(JSON, st.sampled_from(["id", "name", "type", "meta", "extra"]))
        whole_value = st.one_of(
            objects(st.one_of(JSON, st.lists(field, max_size=3)), st.sampled_from(["fields", "id", "x"])),
            JSON,
        )
    else:
        whole_value = st.one_of(TEXT, JSON)
    record = st.one_of(objects(JSON), JSON)
    array_value = st.one_of(
        st.lists(record, max_size=6), st.none(), objects(JSON), st.lists(st.lists(record))
    )
    pairs = [(whole, draw(whole_value)), (array, draw(array_value))]
    pairs += draw(
        st.lists(st.tuples(st.sampled_from(["id", "datasetId", "exportOptions", "x"]), JSON), max_size=3)
    )
    if draw(st.integers(0, 9)) == 0:  # a long string at the top, and in a record
        long = draw(LONG_TEXT)
        pairs += [("note", long), (array, [Obj((("comment", long),))])]
    repeats = draw(st.lists(st.sampled_from([whole, array]), max_size=2))
    pairs += [(name, draw(whole_value if name == whole else array_value)) for name in repeats]
    pairs = draw(st.permutations(pairs))
    if draw(st.integers(0, 30)) == 0:
        return draw(JSON)  # not an object at the top
    return Obj(tuple(pairs))


# -- serialising ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    indent: int | None
    space: str  # between tokens: "", " ", or odd JSON whitespace
    ascii_only: bool  # \\uXXXX (surrogate pairs beyond the BMP) instead of UTF-8
    escape_slash: bool


STYLES = st.builds(
    Style,
    st.sampled_from([None, 0, 2]),
    st.sampled_from(["", " ", "\t", "\r\n", " \n\t "]),
    st.booleans(),
    st.booleans(),
)


def string(text: str, style: Style) -> str:
    """A JSON string: UTF-8 or \\u escapes (surrogate pairs beyond the BMP), maybe \\/."""
    out = json.dumps(text, ensure_ascii=style.ascii_only)
    return out.replace("/", "\\/") if style.escape_slash else out


def serialise(value: Any, style: Style, depth: int = 0) -> str:
    if isinstance(value, Raw):
        return value.text
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):
        return string(value, style)
    if isinstance(value, Obj):
        items = [
            f"{string(k, style)}{style.space}:{style.space}{serialise(v, style, depth + 1)}"
            for k, v in value.pairs
        ]
        return _container("{", items, "}", style, depth)
    return _container("[", [serialise(v, style, depth + 1) for v in value], "]", style, depth)


def _container(open_: str, items: list[str], close: str, style: Style, depth: int) -> str:
    if style.indent is None or not items:
        return open_ + style.space + ("," + style.space).join(items) + style.space + close
    pad = "\n" + " " * (style.indent * (depth + 1))
    return open_ + pad + ("," + pad).join(items) + "\n" + " " * (style.indent * depth) + close


@dataclass(frozen=True)
class Damage:
    """How a file is broken (or not): a cut, trailing garbage, a byte replaced."""

    kind: str  # none | cut | garbage | flip
    at: float  # where, as a share of the length
    byte: int


DAMAGE = st.one_of(
    st.just(Damage("none", 0, 0)),
    st.builds(Damage, st.sampled_from(["cut", "garbage", "flip"]), st.floats(0, 1), st.integers(0, 255)),
)


def damaged(data: bytes, damage: Damage) -> bytes:
    at = min(len(data), int(damage.at * len(data)))
    if damage.kind == "cut":
        return data[:at]
    if damage.kind == "garbage":
        return data + bytes([damage.byte])
    if damage.kind == "flip" and data:
        at = min(at, len(data) - 1)
        return data[:at] + bytes([damage.byte]) + data[at + 1 :]
    return data


@st.composite
def files(draw: st.DrawFn, kind: str) -> tuple[bytes, list[int]]:
    """The bytes of a file of ``kind`` and the chunk sizes its body arrives in."""
    text = serialise(draw(documents(kind)), draw(STYLES))
    data = draw(st.sampled_from([b"", BOM])) + text.encode("utf-8", "surrogatepass")
    damage_text, damage_gzip = draw(DAMAGE), draw(DAMAGE)
    data = damaged(data, damage_text)
    if draw(st.booleans()):
        data = damaged(gzip.compress(data, compresslevel=1, mtime=0), damage_gzip)
    chunks = draw(st.lists(st.sampled_from([1, 2, 3, 7, 4096, 65536, 65537]), min_size=1, max_size=4))
    return data, chunks


# -- the reference reader: json.loads of the whole document ----------------------------------


class RejectedError(Exception):
    pass


class _Pairs(list):
    """An object's (key, value) pairs as ``json.loads`` met them."""


def _exact_float(text: str) -> Any:
    value = float(text)
    return Decimal(text) if math.isinf(value) else value


def _reject_constant(name: str) -> Any:
    raise RejectedError(f"{name} is not JSON")


def _objects(value: Any) -> Any:
    """Nested objects as dicts: the last of repeated names wins (``json.loads``'s rule)."""
    if isinstance(value, _Pairs):
        return {k: _objects(v) for k, v in value}
    if isinstance(value, list):
        return [_objects(v) for v in value]
    return value


def reference(data: bytes, kind: str) -> tuple[Any, list[Any]]:
    """(the value read whole, the items of the array) as the tap's rule says, or Rejected."""
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        text = data.decode("utf-8").removeprefix("\ufeff")
        doc = json.loads(
            text, object_pairs_hook=_Pairs, parse_float=_exact_float, parse_constant=_reject_constant
        )
    except (ValueError, EOFError, zlib.error, gzip.BadGzipFile, RecursionError) as exc:
        raise RejectedError(str(exc)) from exc
    try:
        json.dumps(doc, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escape: not interoperable (RFC 8259 §8.2)
        raise RejectedError(str(exc)) from exc
    whole_name, array_name = PARTS[kind]
    if not isinstance(doc, _Pairs):
        raise RejectedError("an export file is a JSON object (docs/api.md §4)")
    whole = next((_objects(v) for k, v in doc if k == whole_name), None)
    arrays = [v for k, v in doc if k == array_name and isinstance(v, list) and not isinstance(v, _Pairs)]
    items = [_objects(item) for v in arrays for item in v]
    return whole, items


# -- the tap's readers -------------------------------------------------------------------------


def tap_read(path: Path, kind: str) -> tuple[Any, list[Any]]:
    """What a sync reads from a downloaded file: completeness check, the whole value, the items."""
    batch = BATCH[kind]
    check_complete(path, batch)
    file = ExportFile(path, batch)
    whole_name, array_name = PARTS[kind]
    return file.first(whole_name), list(file.items(f"{array_name}.item"))


class Trickle(io.RawIOBase):
    """A network body that arrives in the given chunk sizes (cycled)."""

    def __init__(self, data: bytes, chunks: list[int]) -> None:
        super().__init__()
        self._data, self._chunks, self._at, self._n = data, chunks, 0, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self._chunks[self._n % len(self._chunks)], len(self._data) - self._at)
        self._n += 1
        buffer[:size] = self._data[self._at : self._at + size]
        self._at += size
        return size


# -- comparing ---------------------------------------------------------------------------------


def canonical(value: Any) -> Any:
    """Numbers by value (float, int or an exact Decimal beyond doubles), booleans kept apart."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float, Decimal)):
        if isinstance(value, Decimal) and not math.isinf(float(value)):
            value = float(value)
        return ("number", value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def assert_one_clear_error(exc: BaseException, kind: str) -> None:
    assert isinstance(exc, ExportFileError), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert message.startswith(f"The export file of {BATCH[kind].describe()} ")
    assert "\n" not in message


def check(data: bytes, chunks: list[int], kind: str) -> None:
    try:
        expected: tuple[Any, list[Any]] | None = reference(data, kind)
    except RejectedError:
        expected = None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.json"
        path.write_bytes(data)
        try:
            got = tap_read(path, kind)
        except Exception as exc:
            assert expected is None, f"the tap rejected a file json.loads reads: {exc!r}"
            assert_one_clear_error(exc, kind)
        else:
            assert expected is not None, "the tap read a file json.loads rejects"
            assert canonical(got[0]) == canonical(expected[0])
            assert canonical(got[1]) == canonical(expected[1])
    if kind != ACTIVITY:
        return
    # Discovery streams only the definition: it must agree whenever the file is valid.
    try:
        streamed = read_definition_from_stream(Trickle(data, chunks), BATCH[kind], framed=True)
    except Exception as exc:
        assert_one_clear_error(exc, kind)
        if expected is not None:
            assert not isinstance(expected[0], dict), f"a valid definition was refused: {exc}"
    else:
        if expected is not None:
            assert canonical(streamed) == canonical(expected[0])


# Every difference between the tap's readers and the reference that the fuzz test found
# (each failed before the fix in tap_alida/export/file.py), plus the BOM cases of issue #22.
GOOD = b'{"definition":{"fields":[{"id":"f1"}]},"records":[{"f1":1.5},{"f1":"\\u00e9"}]}'
GOOD_GZ = gzip.compress(GOOD, mtime=0)
REGRESSIONS = {
    # found: a trickled body shows one byte to BufferedReader.peek, so gzip went unnoticed
    "gzip body trickled a byte at a time": (GOOD_GZ, [1]),
    # found: EOFError (traceback) instead of ExportFileError
    "gzip header cut short": (GOOD_GZ[:6], [1]),
    "gzip cut mid-stream": (GOOD_GZ[: len(GOOD_GZ) // 2], [7]),
    # found: zlib.error from check_complete ("invalid distance too far back")
    "gzip stream corrupt": (
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\xabVJIM\xcb\xcc\xcb,\xc9\xcc\xcfS\xb2\xaa\x00"
        b"\xd5Q*JM\xce/J)V\xb2\x8a\x8e\xad\x05\x000V5\x8a\x1e\x00\x00\x00",
        [1],
    ),
    # found: gzip.BadGzipFile from ExportFile.first
    "bytes after the gzip stream": (GOOD_GZ + b"\x01", [65536]),
    # found: UnicodeDecodeError (yajl writes a lone surrogate escape as CESU-8)
    "lone low surrogate escape": (b'{"definition":{"name":"a\\udc00"},"records":[]}', [3]),
    "lone high surrogate escape": (b'{"definition":{},"records":[{"x":"\\ud800 "}]}', [65536]),
    # found: yajl reads a lone high surrogate as "?" and merges "\\ud800\\u0041" into U+10041
    "high surrogate merged with the next escape": (
        b'{"definition":{},"records":[{"x":"\\ud800\\u0041"}]}',
        [1],
    ),
    "lone high surrogate at the end": (b'{"records":[],"definition":{"name":"\\ud800"}}', [65536]),
    "escaped backslash before u": (b'{"definition":{"name":"\\\\ud800"},"records":[]}', [4]),
    "surrogate pair escape": (b'{"definition":{"name":"\\ud83d\\ude00"},"records":["\\uD834\\uDD1E"]}', [2]),
    # found by the soak (3000 examples): yajl takes \v and \f for whitespace, json.loads does not
    "vertical tab after the document": (b'{"lastSyncDate":"","members":[]}\x0b', [1]),
    "form feed between values": (b'{"definition":{},\x0c"records":[1]}', [65536]),
    # issue #22: a UTF-8 byte-order mark (RFC 8259 section 8.1)
    "BOM": (BOM + GOOD, [65536]),
    "BOM trickled": (BOM + GOOD, [1]),
    "BOM inside gzip": (gzip.compress(BOM + GOOD, mtime=0), [1, 2]),
    "BOM only": (BOM, [1]),
    "half a BOM": (BOM[:2] + GOOD, [1]),
    "records before definition, repeated": (
        b'{"records":[1],"x":{"a":1,"a":2},"definition":{"k":1,"k":[2]},"records":[null,[3]],'
        b'"definition":{"other":true}}',
        [5],
    ),
}


@pytest.mark.parametrize("kind", [ACTIVITY, MEMBERS])
@pytest.mark.parametrize("case", REGRESSIONS)
def test_reader_regressions(case: str, kind: str) -> None:
    data, chunks = REGRESSIONS[case]
    if kind == MEMBERS:
        data = data.replace(b"definition", b"lastSyncDate").replace(b"records", b"members")
        if data[:2] == b"\x1f\x8b" and case != "gzip stream corrupt":
            return  # the gzip cases are built from the activity bytes; one kind is enough
    check(data, chunks, kind)


@FUZZ
@given(files(ACTIVITY))
def test_activity_files_read_as_json_loads_reads_them(file: tuple[bytes, list[int]]) -> None:
    check(*file, ACTIVITY)


@FUZZ
@given(files(MEMBERS))
def test_member_files_read_as_json_loads_reads_them(file: tuple[bytes, list[int]]) -> None:
    check(*file, MEMBERS)
