"""Download an export file to disk: Range resume, fresh links, progress lines.

Why not a plain GET: export files can be gigabytes, pre-signed links expire
(Alida's sibling API: after 30 s, ``docs/api.md`` §12b), and connections drop.
Bytes are spooled to a temporary file as they arrive; a dropped connection
continues with ``Range`` from the last byte on disk; a refused link is replaced
by a fresh one from the batch status (bounded by progress, ``links.FreshLinks``).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tap_alida.errors import ExportFileError, StorageLinkError
from tap_alida.export.batch import Batch
from tap_alida.export.file import check_complete
from tap_alida.export.spool import disk_full
from tap_alida.http.client import AlidaClient
from tap_alida.http.links import FreshLinks
from tap_alida.http.policy import STREAM_ERRORS, TRANSIENT_ERRORS
from tap_alida.http.urls import safe_url, segment

logger = logging.getLogger("tap_alida.export.download")

PROGRESS_EVERY_SECONDS = 15.0
CHUNK_BYTES = 16 * 1024  # small: a dropped download resumes from the last chunk on disk


class Download:
    """One batch's file, downloaded to disk."""

    def __init__(
        self,
        client: AlidaClient,
        batch: Batch,
        link: Callable[[Batch], str],
        fresh_link: Callable[[Batch], str],
    ) -> None:
        self.client = client
        self.batch = batch
        self._link = link  # the file link of the batch's last status
        self._fresh = fresh_link  # a new link from a new status (after a refusal)

    def run(self, directory: str | None = None) -> Path:
        """Spool the batch's file to a temporary file, check it is complete, return its path.

        Bytes are written as they arrive (flat memory whatever the export size)
        and nothing is parsed before the whole file is on disk, so a retried or
        resumed download can never emit a record twice. The caller removes the file.
        """
        batch = self.batch
        folder = directory or tempfile.gettempdir()
        what = f"download the export file of {batch.describe()}"
        try:
            fd, name = tempfile.mkstemp(
                prefix=f"tap-alida-{segment(batch.id)}-", suffix=".json", dir=directory
            )
        except OSError as exc:
            raise (disk_full(exc, folder, what) or exc) from None
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                self._into(out)
            check_complete(path, batch)
        except BaseException as exc:
            path.unlink(missing_ok=True)
            full = disk_full(exc, folder, what)
            if full is not None:
                raise full from None
            raise
        return path

    def _into(self, out: Any) -> None:
        """Download with resume: a dropped connection continues with ``Range`` from
        the last byte on disk; an expired link is replaced by a fresh one from the
        batch status; a server that ignores ``Range`` makes the download start over.

        The file on disk is the decoded body (gzip ``Content-Encoding`` is undone
        as it arrives), so resume offsets are offsets of the identity body, and a
        resumed request asks for ``identity``: a 206 that is still encoded, or
        starts elsewhere, is not trusted.
        """
        self.what = f"download the export file of {self.batch.describe()}"
        self.link = self._link(self.batch)
        self.progress = _Progress(self.batch)
        self.received = 0
        self.fresh_links = FreshLinks()
        self.etag: str | None = None
        retries = self.client.retry.attempts(self.what)
        broke: BaseException | None = None
        for attempt in retries:  # one pass per connection that broke off
            response = self._open()
            while response is None or not self._usable(response, out):
                response = self._open()  # a fresh link, or a start over: not a broken connection
            broke = self._copy(response, out)
            if broke is None:
                self.progress.done(self.received)
                return
            attempt.failed(f"{type(broke).__name__} after {self.received} bytes; it resumes at that byte")
        msg = (
            f"The download of {self.batch.describe()} broke off {retries.last.number} times (last after "
            f"{self.received} bytes, {type(broke).__name__}). Nothing from this file was "
            "emitted; rerun the sync, or raise 'max_request_attempts'."
        )
        raise ExportFileError(msg) from broke

    def _open(self) -> requests.Response | None:
        """A GET of the file from the last byte on disk; None after a refused link (renewed)."""
        if self.received:
            headers = {"Accept-Encoding": "identity", "Range": f"bytes={self.received}-"}
            if self.etag:
                headers["If-Range"] = self.etag
        else:
            headers = {"Accept-Encoding": "gzip"}
        try:
            return self.client.open_file(self.link, what=self.what, headers=headers)
        except StorageLinkError as exc:
            if not self.fresh_links.refused(self.received):
                limit = self.fresh_links.limit
                msg = (
                    f"The storage host keeps refusing the file link of {self.batch.describe()} ({exc}): "
                    f"{limit} fresh links in a row did not let the download advance past byte "
                    f"{self.received} (MAX_FRESH_LINKS_WITHOUT_PROGRESS = {limit}). Check the machine's "
                    "clock (signed links expire), then rerun the sync."
                )
                raise ExportFileError(msg) from exc
            self.link = self._fresh(self.batch)
            return None

    def _usable(self, response: requests.Response, out: Any) -> bool:
        """Whether the response continues the file on disk (a resume that is not one starts over)."""
        if self.received and not _continues(response, self.received):
            logger.warning(
                "%s: the storage host did not resume at byte %d (HTTP %d); starting the download over.",
                self.batch.describe(),
                self.received,
                response.status_code,
            )
            out.seek(0)
            out.truncate()
            self.received = 0
            self.progress.restarted()
            if response.status_code != 200:
                response.close()
                return False
        if response.status_code == 416:
            response.close()
            msg = f"Could not {self.what}: the storage host answered 416 to a request without Range."
            raise ExportFileError(msg)
        if not self.received:
            self.progress.started(response, self.link)
            tag = response.headers.get("ETag")
            self.etag = tag if tag and not tag.startswith("W/") else None
        return True

    def _copy(self, response: requests.Response, out: Any) -> BaseException | None:
        """Write the body to disk; the error when the connection broke off (to resume from there)."""
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                self.client.stop.check()
                out.write(chunk)
                self.received += len(chunk)
                self.progress.update(self.received)
            return None
        except (*TRANSIENT_ERRORS, *STREAM_ERRORS) as exc:
            return exc
        finally:
            response.close()


def _continues(response: requests.Response, offset: int) -> bool:
    """Whether a response to ``Range: bytes=offset-`` continues the identity body."""
    if response.status_code != 206:
        return False
    if response.headers.get("Content-Encoding", "identity").lower() not in ("identity", ""):
        return False
    content_range = response.headers.get("Content-Range", "")
    match = re.match(r"bytes (\d+)-", content_range)
    return match is not None and int(match.group(1)) == offset


class _Progress:
    """INFO lines for long downloads: batch, bytes, elapsed, rate (never the URL's query)."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.started_at = time.monotonic()
        self.last_log = self.started_at
        self.expected: int | None = None

    def started(self, response: requests.Response, link: str) -> None:
        total = response.headers.get("Content-Length")
        encoded = "Content-Encoding" in response.headers
        self.expected = int(total) if total and total.isdigit() and not encoded else None
        logger.info(
            "Downloading %s from %s%s.",
            self.batch.describe(),
            safe_url(response.url or link),
            f" ({self.expected / 1e6:.1f} MB)" if self.expected else "",
        )

    def restarted(self) -> None:
        self.expected = None

    def update(self, received: int) -> None:
        now = time.monotonic()
        if now - self.last_log >= PROGRESS_EVERY_SECONDS:
            self.last_log = now
            elapsed = now - self.started_at
            logger.info(
                "%s: downloaded %.1f MB%s, %.0f s elapsed, %.1f MB/s.",
                self.batch.describe(),
                received / 1e6,
                f" of {self.expected / 1e6:.1f} MB" if self.expected else "",
                elapsed,
                received / 1e6 / max(elapsed, 1e-6),
            )

    def done(self, received: int) -> None:
        elapsed = time.monotonic() - self.started_at
        logger.info("%s: downloaded %.1f MB in %.1f s.", self.batch.describe(), received / 1e6, elapsed)
