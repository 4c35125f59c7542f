"""The lifecycle of one batch export: create → poll → resolve the link → download.

Alida's Batch Data Extract is asynchronous (``alida-api.md`` §2-3): a POST
creates a batch, GETs poll its status (``pending → running → succeeded |
failed``), and on success ``data`` holds a link to the file, which usually
redirects to object storage. Files are spooled to a temporary file while they
download (constant memory, and nothing is emitted from a file that is not
complete), then parsed by ``export_file``.

Long waits log a progress line at INFO: batch id, status, elapsed time, bytes.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests
import urllib3

from tap_alida.client import STOP, TRANSIENT_ERRORS, AlidaClient, safe_url, sleep
from tap_alida.errors import (
    APIError,
    BadExportFileError,
    BatchFailedError,
    ExportFailedError,
    ExportFileError,
    StoppedError,
    StorageLinkError,
    TruncatedFileError,
)
from tap_alida.export_file import check_complete, read_definition_from_stream
from tap_alida.settings import AlidaSettings
from tap_alida.spool import disk_full

logger = logging.getLogger("tap_alida.export")

ACTIVITY = "activity"
MEMBERS = "members"
PROGRESS_EVERY_SECONDS = 15.0
CHUNK_BYTES = 16 * 1024  # small: a dropped download resumes from the last chunk on disk
# Raised while a body is being read (urllib3 raises its own when read directly,
# requests wraps them in iter_content): all mean "the connection broke".
STREAM_ERRORS = (
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    urllib3.exceptions.DecodeError,
)
MAX_LINK_REFRESHES = 3


@dataclass
class Batch:
    """One batch export on Alida's side, as far as the tap knows it."""

    kind: str  # ACTIVITY or MEMBERS
    id: str
    label: str  # e.g. "activity 'Brand tracker' (9b2e…)" or "member profiles"
    activity_id: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.monotonic)
    since: str | None = None  # member exports: the sinceDatetime sent
    resumed: bool = False

    def describe(self) -> str:
        return f"{self.label}, batch {self.id}"

    def to_state(self) -> dict[str, Any]:
        """What STATE keeps so that a rerun after a crash can re-use this batch.

        The activity id (activity batches) and ``sinceDatetime`` (member batches)
        are kept so that a rerun re-uses a batch only for the export it was made
        for (``matches``): a stream renamed to another activity, or a STATE file
        copied between projects, must not load one survey's file as another's.
        """
        created = time.time() - (time.monotonic() - self.created_at)
        entry: dict[str, Any] = {"id": self.id, "kind": self.kind, "created_at": round(created, 3)}
        if self.kind == MEMBERS:
            entry["since"] = self.since
        else:
            entry["activity_id"] = self.activity_id
        return entry

    @staticmethod
    def mismatch(entry: Mapping[str, Any], kind: str, activity_id: str | None) -> str | None:
        """Why a STATE entry was not made for this export (None: it was)."""
        if entry.get("kind") != kind:
            return f"it is a {entry.get('kind')!r} batch, not an {kind!r} one"
        if kind == ACTIVITY:
            recorded = entry.get("activity_id")
            if recorded is None:
                return "STATE does not record which activity it belongs to"
            if str(recorded).lower() != str(activity_id).lower():
                return f"it belongs to activity {recorded}"
        return None

    @classmethod
    def from_state(cls, entry: Mapping[str, Any], label: str, activity_id: str | None) -> Batch | None:
        """The batch a previous run recorded, or None when the entry is unusable."""
        try:
            batch_id, kind, created = str(entry["id"]), str(entry["kind"]), float(entry["created_at"])
        except (KeyError, TypeError, ValueError):
            return None
        return cls(
            kind=kind,
            id=batch_id,
            label=label,
            activity_id=activity_id,
            created_at=time.monotonic() - max(0.0, time.time() - created),
            since=entry.get("since"),
            resumed=True,
        )


class BatchExports:
    """Creates and follows batch exports for one community."""

    def __init__(self, client: AlidaClient) -> None:
        self.client = client
        self.settings = client.settings

    # -- paths (note the asymmetry: create is per activity, status/files are not) ----
    # Ids are quoted as one path segment each: an id from STATE or a response may
    # hold '/', '?' or '#', which would otherwise change the route or the query.

    def _status_url(self, batch: Batch) -> str:
        if batch.kind == ACTIVITY:
            return self.client.url("v2", f"data/activities/responses/batch/{segment(batch.id)}")
        return self.client.url("v2", f"data/members/profiles/batch/{segment(batch.id)}")

    def _files_url(self, batch: Batch, file_id: str) -> str:
        if batch.kind == ACTIVITY:
            return self.client.url("v2", f"data/activities/responses/files/{segment(file_id)}")
        return self.client.url("v2", f"data/members/profiles/files/{segment(file_id)}")

    # -- create ---------------------------------------------------------------------

    def create_activity_batch(self, activity_id: str, label: str) -> Batch:
        url = self.client.url("v2", f"data/activities/{segment(activity_id)}/responses/batch")
        return self._create(url, None, Batch(ACTIVITY, "", label, activity_id=activity_id))

    def create_member_batch(self, since: str | None) -> Batch:
        url = self.client.url("v2", "data/members/profiles/batch")
        body = {"sinceDatetime": since} if since else None
        label = f"member profiles (since {since})" if since else "member profiles (full)"
        return self._create(url, body, Batch(MEMBERS, "", label, since=since))

    def _create(self, url: str, body: Any, batch: Batch) -> Batch:
        response = self.client.request("POST", url, what=f"create the batch for {batch.label}", json=body)
        status: Any = {}
        if response.content:
            try:
                status = response.json()
            except ValueError:
                status = {}
        batch_id = None
        if isinstance(status, Mapping):
            batch_id = status.get("id") or status.get("batchId")
        if not batch_id and response.headers.get("Location"):
            batch_id = urlsplit(response.headers["Location"]).path.rstrip("/").rsplit("/", 1)[-1]
        if not batch_id:
            msg = (
                f"Alida accepted the export request for {batch.label} (HTTP "
                f"{response.status_code}) but returned no batch id."
            )
            raise APIError(msg)
        batch.id = str(batch_id)
        batch.status = dict(status) if isinstance(status, Mapping) else {}
        batch.created_at = time.monotonic()
        logger.info("Created batch %s for %s.", batch.id, batch.label)
        return batch

    # -- poll -----------------------------------------------------------------------

    def refresh(self, batch: Batch) -> dict[str, Any]:
        status = self.client.get_json(self._status_url(batch), what=f"read the status of {batch.describe()}")
        if not isinstance(status, Mapping):
            msg = f"The status of {batch.describe()} is not a JSON object."
            raise APIError(msg)
        batch.status = dict(status)
        return batch.status

    def wait(self, batch: Batch) -> dict[str, Any]:
        """Poll until the batch succeeds; fail clearly when it fails or takes too long."""
        settings = self.settings
        interval = settings.poll_interval
        started = batch.created_at
        last_status = None
        last_log = 0.0
        status = batch.status
        while True:
            state = str(status.get("status") or "pending").lower() if status else "pending"
            elapsed = time.monotonic() - started
            if state == "succeeded":
                logger.info("%s succeeded after %.0f s.", batch.describe(), elapsed)
                return status
            if state == "failed":
                reason = status.get("errorMessage") or "no errorMessage given"
                msg = f"Alida reports the export failed for {batch.describe()}: {reason}"
                raise BatchFailedError(msg)
            if state == "pending" and elapsed > settings.max_wait_to_start:
                msg = (
                    f"{batch.describe()} is still pending after {elapsed:.0f} s "
                    f"('max_wait_to_start_seconds' = {settings.max_wait_to_start:.0f}). Alida has not "
                    "started the export; rerun later or raise the setting."
                )
                raise ExportFailedError(msg)
            if elapsed > settings.max_wait:
                msg = (
                    f"{batch.describe()} has not finished after {elapsed:.0f} s (status {state}; "
                    f"'max_wait_seconds' = {settings.max_wait:.0f}). Rerun later or raise the setting."
                )
                raise ExportFailedError(msg)
            now = time.monotonic()
            if state != last_status or now - last_log >= PROGRESS_EVERY_SECONDS:
                logger.info("%s is %s (%.0f s elapsed).", batch.describe(), state, elapsed)
                last_status, last_log = state, now
            if status:  # the create response may already say succeeded
                sleep(min(interval, _time_left(state, elapsed, settings)))
                interval = min(interval * 2, settings.poll_max_interval)
            status = self.refresh(batch)

    def file_link(self, batch: Batch) -> str:
        """The file URL of a succeeded batch: ``data``, else built from ``message.artifact``."""
        status = batch.status
        link = status.get("data")
        if isinstance(link, str) and link.strip():
            return urljoin(self.settings.base_url + "/", link.strip())
        message = status.get("message")
        if isinstance(message, Mapping) and message.get("artifact"):
            return self._files_url(batch, str(message["artifact"]))
        msg = f"{batch.describe()} succeeded but its status has no download link ('data')."
        raise APIError(msg)

    # -- download -------------------------------------------------------------------

    def read_definition(self, batch: Batch) -> dict[str, Any]:
        """Only the ``definition`` of an activity export: stream until it is parsed.

        When ``definition`` comes first (the documented order) this reads a few
        kilobytes of a file that may be gigabytes long. A dropped connection or
        an expired link starts the (cheap) read over, like any retried request.
        """
        what = f"read the definition in the export file of {batch.describe()}"
        link = self.file_link(batch)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.client.open_file(link, what=what)
            except StorageLinkError:
                if attempt >= self.settings.max_attempts:
                    raise
                link = self._fresh_link(batch)
                continue
            try:
                return read_definition_from_stream(response.raw, batch, framed=_framed(response))
            except (BadExportFileError, TruncatedFileError):
                raise  # the file itself is bad (or cut by Alida): reading it again cannot help
            except (*TRANSIENT_ERRORS, *STREAM_ERRORS, ExportFileError) as exc:
                # ExportFileError: a body cut short looks like malformed JSON here.
                self.client.retry.pause(attempt, what, type(exc).__name__, None)
            finally:
                response.close()

    def _fresh_link(self, batch: Batch) -> str:
        """A new file link from the batch status, after the storage host refused one."""
        logger.info(
            "The file link of %s was refused (expired?); fetching a fresh one from the batch status.",
            batch.describe(),
        )
        self.refresh(batch)
        return self.file_link(batch)

    def download(self, batch: Batch, directory: str | None = None) -> Path:
        """Spool the batch's file to a temporary file, check it is complete, return its path.

        Bytes are written as they arrive (flat memory whatever the export size)
        and nothing is parsed before the whole file is on disk, so a retried or
        resumed download can never emit a record twice. The caller removes the file.
        """
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
                self._download_into(batch, out)
            check_complete(path, batch)
        except BaseException as exc:
            path.unlink(missing_ok=True)
            full = disk_full(exc, folder, what)
            if full is not None:
                raise full from None
            raise
        return path

    def _download_into(self, batch: Batch, out: Any) -> None:
        """Download with resume: a dropped connection continues with ``Range`` from
        the last byte on disk; an expired link is replaced by a fresh one from the
        batch status; a server that ignores ``Range`` makes the download start over.

        The file on disk is the decoded body (gzip ``Content-Encoding`` is undone
        as it arrives), so resume offsets are offsets of the identity body, and a
        resumed request asks for ``identity``: a 206 that is still encoded, or
        starts elsewhere, is not trusted.
        """
        what = f"download the export file of {batch.describe()}"
        link = self.file_link(batch)
        progress = _Progress(batch)
        received = 0
        drops = 0
        link_refreshes = 0
        etag: str | None = None
        while True:
            if received:
                headers = {"Accept-Encoding": "identity", "Range": f"bytes={received}-"}
                if etag:
                    headers["If-Range"] = etag
            else:
                headers = {"Accept-Encoding": "gzip"}
            try:
                response = self.client.open_file(link, what=what, headers=headers)
            except StorageLinkError as exc:
                link_refreshes += 1
                if link_refreshes > MAX_LINK_REFRESHES:
                    msg = (
                        f"The storage host keeps refusing the file link of {batch.describe()} ({exc}) "
                        f"after {MAX_LINK_REFRESHES} fresh links. Check the machine's clock (signed "
                        "links expire), then rerun the sync."
                    )
                    raise ExportFileError(msg) from exc
                link = self._fresh_link(batch)
                continue
            if received and not _continues(response, received):
                logger.warning(
                    "%s: the storage host did not resume at byte %d (HTTP %d); starting the download over.",
                    batch.describe(),
                    received,
                    response.status_code,
                )
                out.seek(0)
                out.truncate()
                received = 0
                progress.restarted()
                if response.status_code != 200:
                    response.close()
                    continue
            if response.status_code == 416:
                response.close()
                msg = f"Could not {what}: the storage host answered 416 to a request without Range."
                raise ExportFileError(msg)
            if not received:
                progress.started(response, link)
                tag = response.headers.get("ETag")
                etag = tag if tag and not tag.startswith("W/") else None
            try:
                for chunk in response.iter_content(CHUNK_BYTES):
                    if STOP.is_set():
                        raise StoppedError("The run is stopping.")
                    out.write(chunk)
                    received += len(chunk)
                    progress.update(received)
            except (*TRANSIENT_ERRORS, *STREAM_ERRORS) as exc:
                drops += 1
                if drops >= self.settings.max_attempts:
                    msg = (
                        f"The download of {batch.describe()} broke off {drops} times (last after "
                        f"{received} bytes, {type(exc).__name__}). Nothing from this file was "
                        "emitted; rerun the sync, or raise 'max_request_attempts'."
                    )
                    raise ExportFileError(msg) from exc
                wait = self.client.retry.backoff(drops)
                logger.warning(
                    "The download of %s broke off after %d bytes (%s); resuming from there in "
                    "%.1f s (retry %d of %d).",
                    batch.describe(),
                    received,
                    type(exc).__name__,
                    wait,
                    drops,
                    self.settings.max_attempts - 1,
                )
                sleep(wait)
                continue
            finally:
                response.close()
            progress.done(received)
            return


def _framed(response: requests.Response) -> bool:
    """Whether the body's length is declared (Content-Length, or chunked): urllib3 then
    raises on a body cut short, so a clean end of the body is the end of the file."""
    headers = response.headers
    return "Content-Length" in headers or "chunked" in headers.get("Transfer-Encoding", "").lower()


def segment(value: str) -> str:
    """``value`` quoted as one URL path segment (every reserved character escaped)."""
    return quote(str(value), safe="")


def _time_left(state: str, elapsed: float, settings: AlidaSettings) -> float:
    """Seconds until the nearest deadline that applies (a little past it, so the next check fails).

    A poll sleeps at most this long: a long ``poll_interval_seconds`` must not
    carry a wait past ``max_wait_seconds`` (or, while pending,
    ``max_wait_to_start_seconds``).
    """
    deadline = settings.max_wait
    if state == "pending":
        deadline = min(deadline, settings.max_wait_to_start)
    return max(0.0, deadline - elapsed) + 0.05


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
