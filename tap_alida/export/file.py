"""Incremental parsing of export files with ijson (C backend): never a whole file in memory.

Activity files hold ``definition.fields[]`` and ``records[]``; member files hold
top-level scalars (``lastSyncDate``…) and ``members[]`` (``docs/api.md`` §4).
Key order is not documented, so every reader works whatever comes first: it
takes a separate pass per part (instant when the part comes first). Bodies that
are gzip bytes without a ``Content-Encoding`` header are detected by their magic
number. A truncated or malformed file raises ``ExportFileError`` with the byte
offset where parsing stopped.

Numbers: records are parsed with ``use_float=True`` (C doubles, the fast path).
yajl cannot hold a number beyond a double (``1e400``) or an integer beyond 64
bits (``1180591620717411303424``) that way and stops with "overflow"; a valid
file must not fail for that, so ``items`` then parses the file again with
exact numbers (``Decimal``/``int``) and goes on after the records it already
gave. Only files with such numbers pay for the second pass. Definitions and
single values (``first``) are small and always parsed exactly.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import ijson

from tap_alida.errors import BadExportFileError, ExportFileError, TruncatedFileError

if TYPE_CHECKING:
    from tap_alida.export.batch import Batch

logger = logging.getLogger("tap_alida.export.file")

try:
    _ijson: Any = ijson.get_backend("yajl2_c")
except ImportError:  # pragma: no cover - the wheel ships it on every supported platform
    _ijson = ijson
    logger.warning("ijson's C backend is not available; parsing will be about 20x slower.")

BACKEND = _ijson.backend
GZIP_MAGIC = b"\x1f\x8b"
# RFC 8259 §8.1: a parser MAY ignore a byte-order mark in front of UTF-8 JSON text. yajl
# does not (it fails on the first byte), so the readers drop it before parsing.
UTF8_BOM = b"\xef\xbb\xbf"
# What a broken gzip stream raises while it is read (a cut, a corrupt block, bytes after it):
# reported like malformed JSON, never as a traceback.
GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
# ijson decodes yajl's UTF-8 strictly: an escaped lone surrogate ("\udc00", which yajl
# writes as CESU-8 bytes) fails as UnicodeDecodeError. Such a string cannot be written
# as UTF-8 output either (RFC 8259 §8.2: not interoperable), so the file is malformed.
PARSE_ERRORS = (ijson.JSONError, UnicodeDecodeError, *GZIP_ERRORS)
# yajl takes a vertical tab or a form feed for whitespace (RFC 8259 §2 allows only space,
# tab, LF, CR; raw control characters are not allowed in strings either): the fuzz test
# found a file that json.loads rejects and the tap read. No valid JSON text holds them.
NOT_JSON_WHITESPACE = (b"\x0b", b"\x0c")
# An escaped high surrogate not followed by an escaped low one (whether its backslash is
# itself escaped is checked on the rare match: a literal prefix keeps the search fast).
LONE_HIGH = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def maybe_gunzip(stream: Any) -> IO[bytes]:
    """A readable binary stream of the JSON text: gunzipped when it starts with gzip's
    magic number, and without a UTF-8 byte-order mark at its start.

    The first bytes are *read* (``BufferedReader.peek`` makes at most one raw read,
    which may return a single byte of a trickled network body) and handed back in
    front of the rest (``_Prefixed``), so the decision never depends on chunk sizes.
    """
    head = _read_exactly(stream, len(UTF8_BOM))
    if head[:2] == GZIP_MAGIC:
        gunzipped = gzip.GzipFile(fileobj=io.BufferedReader(_Prefixed(head, stream)))
        return _without_bom(gunzipped, _read_exactly(gunzipped, len(UTF8_BOM)))
    return _without_bom(stream, head)


def _without_bom(stream: Any, head: bytes) -> IO[bytes]:
    """``stream`` whose first bytes ``head`` were read: handed back unless they are a BOM."""
    return io.BufferedReader(_Prefixed(b"" if head == UTF8_BOM else head, stream))


def _read_exactly(stream: Any, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only at the end of the stream (a raw read may return less)."""
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read: ``head``, then the rest of ``raw``."""

    def __init__(self, head: bytes, raw: Any) -> None:
        super().__init__()
        self._head = head
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._raw.readinto(buffer) or 0


def parse_problem(exc: Exception) -> str:
    """The first line of a parse error: yajl's next lines quote the file's text (member data)."""
    return str(exc).split("\n", 1)[0].strip()


def _malformed(batch: Batch, offset: int | None, exc: Exception) -> ExportFileError:
    where = f" near byte {offset}" if offset is not None else ""
    return ExportFileError(
        f"The export file of {batch.describe()} is truncated or malformed{where} ({parse_problem(exc)}). "
        "The bookmark was not advanced; rerun the sync. If it recurs, give Alida support the batch id."
    )


class _Counting(io.RawIOBase):
    """A readable stream that counts the bytes read through it and sees the end of the body."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.bytes_read = 0
        self.at_end = False
        self.head = b""  # the first bytes, and the last: enough to tell a cut from garbage
        self.tail = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer) or 0
        if not n:
            self.at_end = True
        elif len(self.head) < 16:
            self.head += bytes(memoryview(buffer)[: 16 - len(self.head)])
        if n:
            self.tail = (self.tail + bytes(memoryview(buffer)[max(0, n - 64) : n]))[-64:]
        self.bytes_read += n
        return n

    @property
    def cut_short(self) -> bool:
        """Whether the body read so far starts like an export file but stops before its JSON ends."""
        head, tail = self.head.removeprefix(UTF8_BOM).lstrip(), self.tail.rstrip()
        return (head[:1] == b"{" and not tail.endswith(b"}")) or head[:2] == GZIP_MAGIC


def check_complete(path: Path, batch: Batch) -> None:
    """Raise TruncatedFileError unless the file's JSON text ends (its last byte is ``}``),
    BadExportFileError for a broken gzip stream, a lone surrogate escape or a byte JSON
    never allows that yajl would let through (``NOT_JSON_WHITESPACE``).

    A cheap check before anything is emitted: a body cut short with valid HTTP
    (or a close-delimited body whose connection dropped) is caught here, where
    the whole export can still be retried, instead of mid-stream. gzip files are
    decompressed once to reach their end (about 10x faster than parsing them).

    The same pass looks for an escaped high surrogate without its low half
    (``"\\ud800"``): yajl turns it into ``?``, or merges it with the next ``\\u``
    escape into another character, silently (the fuzz test found it); a lone low
    surrogate fails in ijson. Both are malformed text (RFC 8259 §8.2), so both
    refuse the file. The scan is a literal search, far faster than the parse.
    """
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        inflater = zlib.decompressobj(wbits=31) if gzipped else None
        tail, size = b"", 0
        while chunk := raw.read(1 << 20):
            if inflater is None:
                data = chunk
            else:
                try:
                    data = inflater.decompress(chunk)
                except zlib.error as exc:
                    msg = (
                        f"The export file of {batch.describe()} is gzip-compressed but broken after "
                        f"{size} bytes ({exc}). Nothing from it was emitted and the bookmark was not "
                        "advanced; rerun the sync. If it recurs, give Alida support the batch id."
                    )
                    raise BadExportFileError(msg) from None
            for stray in NOT_JSON_WHITESPACE:
                at = data.find(stray)
                if at >= 0:
                    msg = (
                        f"The export file of {batch.describe()} is not valid JSON: byte {size + at} "
                        f"is {stray!r}, which JSON allows neither between values nor in a string. "
                        "Nothing from it was emitted; give Alida support the batch id."
                    )
                    raise BadExportFileError(msg)
            window = tail + data
            lone = _lone_high_surrogate(window, final=False)
            if lone is not None:
                raise _half_surrogate(batch, size - len(tail) + lone)
            size += len(data)
            tail = window[-64:]
        lone = _lone_high_surrogate(tail, final=True)
        if lone is not None:
            raise _half_surrogate(batch, size - len(tail) + lone)
        complete_stream = inflater is None or inflater.eof
    if complete_stream and tail.rstrip().endswith(b"}"):
        return
    msg = (
        f"The export file of {batch.describe()} is truncated: it ends at byte {size} before its "
        "JSON does. Nothing from it was emitted and the bookmark was not advanced."
    )
    raise TruncatedFileError(msg)  # a new batch is made; BatchLifecycle adds what to do at the end


def _half_surrogate(batch: Batch, offset: int) -> BadExportFileError:
    return BadExportFileError(
        f"The export file of {batch.describe()} has a string with half a UTF-16 surrogate pair "
        f"(an escaped \\uD800-\\uDBFF without its low half) near byte {offset}: not valid "
        "Unicode, so it cannot be read faithfully. Nothing from it was emitted; give Alida "
        "support the batch id."
    )


def _lone_high_surrogate(data: bytes, *, final: bool) -> int | None:
    """Where an escaped high surrogate without its low half starts in ``data``, or None.

    Unless ``final``, ``data`` ends where the file read so far ends: an escape
    near its end is judged on the next window (which starts with the last 64
    bytes of this one).
    """
    for match in LONE_HIGH.finditer(data):
        start = before = match.start()
        while before > 0 and data[before - 1] == 0x5C:  # backslashes in front of this one
            before -= 1
        if (start - before) % 2:
            continue  # "\\\\ud800": an escaped backslash, then the text "ud800"
        if final or match.end() + 6 <= len(data):
            return start
    return None


def read_definition_from_stream(raw: Any, batch: Batch, *, framed: bool = True) -> dict[str, Any]:
    """The ``definition`` object from a (network) stream; stops reading once parsed.

    Which failures are worth another try:

    * a close-delimited body (length not declared, not ``framed``) that ends
      before its JSON may be a dropped connection: plain ExportFileError, the
      caller reads again (urllib3 raises its own error when a framed body is cut);
    * a complete body that starts like an export file (``{``) but stops before
      its JSON does is a file Alida cut short: TruncatedFileError, a new batch
      may fix it (as after a download, see ``check_complete``).

    Anything else is wrong whatever the network does and raises
    BadExportFileError at once: an empty body, a body that is not JSON, JSON
    broken before the end of the body, no ``definition`` object.
    """
    if hasattr(raw, "decode_content"):
        raw.decode_content = True  # gzip Content-Encoding
        # Reading to the end (``records`` first) must not close the body under
        # the buffered reader: EOF is then an empty read, not "closed file".
        raw.auto_close = False
    counting = _Counting(raw)
    try:
        stream = maybe_gunzip(counting)
        definition = next(_ijson.items(stream, "definition", use_float=False), None)
    except PARSE_ERRORS as exc:
        if counting.at_end and counting.bytes_read == 0:
            msg = (
                f"The export file of {batch.describe()} is empty (0 bytes): Alida produced no "
                "content. Rerun the sync later; if it recurs, give Alida support the batch id."
            )
            raise BadExportFileError(msg) from None
        if counting.at_end and not framed:
            raise _malformed(batch, None, exc) from exc  # maybe cut short: read it again
        if counting.at_end and counting.cut_short:
            msg = (
                f"The export file of {batch.describe()} is truncated: its JSON stops at byte "
                f"{counting.bytes_read}, where the body ends ({parse_problem(exc)})."
            )
            raise TruncatedFileError(msg) from None
        msg = (
            f"The export file of {batch.describe()} is not valid JSON ({parse_problem(exc)}, within "
            f"its first {counting.bytes_read} bytes). Rerun the sync later; if it recurs, give Alida "
            "support the batch id."
        )
        raise BadExportFileError(msg) from None
    if not isinstance(definition, dict):
        msg = (
            f"The export file of {batch.describe()} has no 'definition' object (the field "
            "definitions), so its columns cannot be known. Rerun the sync later; if it recurs, give "
            "Alida support the batch id."
        )
        raise BadExportFileError(msg)
    return definition


class ExportFile:
    """A downloaded export file on disk."""

    def __init__(self, path: Path, batch: Batch) -> None:
        self.path = path
        self.batch = batch

    @contextmanager
    def _open(self) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
        with open(self.path, "rb") as raw:
            try:
                stream = maybe_gunzip(raw)
            except GZIP_ERRORS as exc:
                raise _malformed(self.batch, raw.tell(), exc) from exc
            yield raw, stream

    def first(self, prefix: str) -> Any:
        """The first value at ``prefix`` (e.g. ``lastSyncDate``), None when absent."""
        with self._open() as (raw, stream):
            try:
                return next(_ijson.items(stream, prefix, use_float=False), None)
            except PARSE_ERRORS as exc:
                raise _malformed(self.batch, raw.tell(), exc) from exc

    def items(self, prefix: str) -> Iterator[Any]:
        """Every value at ``prefix`` (e.g. ``records.item``), parsed incrementally.

        Fast doubles first; on a number too big for them, the exact pass takes
        over after the values already given (see the module docstring).
        """
        given = 0
        with self._open() as (raw, stream):
            try:
                for value in _ijson.items(stream, prefix, use_float=True):
                    given += 1
                    yield value
                return
            except PARSE_ERRORS as exc:
                if not is_number_overflow(exc):
                    raise _malformed(self.batch, raw.tell(), exc) from exc
        logger.info(
            "%s: the export file has a number too big for a double; reading it with exact "
            "numbers from item %d on.",
            self.batch.describe(),
            given,
        )
        with self._open() as (raw, stream):
            try:
                for index, value in enumerate(_ijson.items(stream, prefix, use_float=False)):
                    if index >= given:
                        yield value
            except PARSE_ERRORS as exc:
                raise _malformed(self.batch, raw.tell(), exc) from exc


def is_number_overflow(exc: Exception) -> bool:
    """Whether yajl stopped at a valid number it cannot hold as a double or a 64-bit integer."""
    return "overflow" in str(exc).split("\n", 1)[0]
