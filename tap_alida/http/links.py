"""Telling a file link apart from a file, and how many fresh links a download may use.

The files route of a succeeded batch (``docs/api.md`` §3.3) redirects to
storage. Alida's member-export docs say to take the link from the answer's
``Location`` header and to "skip this step if the download link is
automatically redirected": so a ``Location`` on *any* answer of the files route
(200, 201, 202 with an empty or a JSON body, as well as a 3xx) is the link to
follow, not an empty file. Alida's sibling export API answers ``200`` with JSON
``{"url": "<pre-signed URL>"}`` instead (§12b), and the route might also serve
the file itself. Both the link answer and an export file are JSON objects that
start with ``{"``, so neither the Content-Type nor the first bytes decide it:
a small body is parsed, and it is a link only when its keys are link keys (and
harmless metadata) with an http(s) URL. A body too big to be a link is the file.
Bytes read to decide are handed back (``Replay``), so nothing is fetched twice.

Pre-signed links may expire 30 s after issue (§12b), so a download of an hour
needs many of them: fresh links are bounded by progress (``FreshLinks``), not
by count.
"""

from __future__ import annotations

import io
import json
from typing import Any

import requests

# A link answer is a URL of a few KB at most; a body beyond this is the file.
PEEK_BYTES = 16 * 1024
# Keys (compared lower-case) that may hold the file URL, in order of preference.
LINK_KEYS = ("url", "downloadurl", "download_url", "link", "signedurl", "presignedurl")
# Other keys a link answer may carry without being mistaken for an export file
# (whose top-level keys are definition/records/members/exportOptions/lastSyncDate, §4).
LINK_METADATA_KEYS = frozenset(
    {"expires", "expiresat", "expiresin", "expiration", "expiry", "contenttype", "filename", "size", "method"}
)
# A download gives up after this many fresh links in a row that did not let it
# advance a single byte (a clock far off, a storage host that refuses every link).
MAX_FRESH_LINKS_WITHOUT_PROGRESS = 3


def link_in(body: bytes) -> str | None:
    """The file URL when ``body`` is a link answer (``{"url": "https://…"}``), else None."""
    if len(body) > PEEK_BYTES or not body.lstrip().startswith(b"{"):
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not parsed:
        return None
    keys = {str(k).lower(): v for k, v in parsed.items()}
    if not set(keys) <= set(LINK_KEYS) | LINK_METADATA_KEYS:
        return None
    for key in LINK_KEYS:
        value = keys.get(key)
        if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://", "/")):
            return value.strip()
    return None


def files_route_location(response: requests.Response) -> str | None:
    """The ``Location`` of a files-route answer, whatever its status (see the module docstring).

    A 416 (the files route serving the file itself, asked for a Range past its
    end) is an answer about the file, so its ``Location``, if any, is not followed.
    """
    location = response.headers.get("Location", "").strip()
    if not location or response.status_code == 416:
        return None
    return location


def may_be_link(response: requests.Response) -> bool:
    """Whether a files-route answer could be a JSON link answer worth peeking at."""
    if response.status_code != 200:
        return False
    content_type = response.headers.get("Content-Type", "").lower()
    return not content_type or "json" in content_type or content_type.startswith("text/")


def peek_link(response: requests.Response) -> str | None:
    """Read the start of a streamed 200 answer: the link it holds, or None.

    When it is not a link the bytes read are put back in front of the body, so
    the caller streams the response as if nothing had been read.
    """
    raw = response.raw
    head = b""
    while len(head) <= PEEK_BYTES:
        chunk = raw.read(PEEK_BYTES + 1 - len(head), decode_content=True)
        if not chunk:
            break
        head += chunk
        if not head.lstrip().startswith(b"{") and head.strip():
            break  # not a JSON object: a file, whatever the Content-Type says
    link = link_in(head)
    if link is None:
        response.raw = Replay(head, raw)
    return link


class Replay(io.RawIOBase):
    """A response body whose first bytes were already read (decoded) by ``peek_link``.

    ``requests`` reads it with ``read`` (it has no ``stream``), and so does the
    definition reader; errors of the underlying body pass through unchanged.
    """

    def __init__(self, head: bytes, raw: Any) -> None:
        super().__init__()
        self._head = head
        self._raw = raw
        raw.auto_close = False  # EOF is an empty read, not a closed file

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = len(buffer)
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
        else:
            data = self._raw.read(size, decode_content=True)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()

    def release_conn(self) -> None:
        self._raw.release_conn()


class FreshLinks:
    """Fresh links bounded by progress: a link that lets the download advance resets the count.

    ``refused(received)`` is called when the storage host refuses a link, with
    the bytes on disk; it says whether one more fresh link may be tried.
    """

    def __init__(self, limit: int = MAX_FRESH_LINKS_WITHOUT_PROGRESS) -> None:
        self.limit = limit
        self.without_progress = 0
        self._issued_at: int | None = None  # bytes on disk when the last fresh link was issued

    def refused(self, received: int) -> bool:
        if self._issued_at is not None and received <= self._issued_at:
            self.without_progress += 1
        else:
            self.without_progress = 0
        if self.without_progress >= self.limit:
            return False
        self._issued_at = received
        return True
