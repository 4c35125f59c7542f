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
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from tap_alida.client import TRANSIENT_ERRORS, AlidaClient, safe_url
from tap_alida.errors import APIError, ExportFailedError, ExportFileError
from tap_alida.export_file import read_definition_from_stream

logger = logging.getLogger("tap_alida.export")

ACTIVITY = "activity"
MEMBERS = "members"
PROGRESS_EVERY_SECONDS = 15.0
CHUNK_BYTES = 1 << 20


@dataclass
class Batch:
    """One batch export on Alida's side, as far as the tap knows it."""

    kind: str  # ACTIVITY or MEMBERS
    id: str
    label: str  # e.g. "activity 'Brand tracker' (9b2e…)" or "member profiles"
    activity_id: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.monotonic)

    def describe(self) -> str:
        return f"{self.label}, batch {self.id}"


class BatchExports:
    """Creates and follows batch exports for one community."""

    def __init__(self, client: AlidaClient) -> None:
        self.client = client
        self.settings = client.settings

    # -- paths (note the asymmetry: create is per activity, status/files are not) ----

    def _status_url(self, batch: Batch) -> str:
        if batch.kind == ACTIVITY:
            return self.client.url("v2", f"data/activities/responses/batch/{batch.id}")
        return self.client.url("v2", f"data/members/profiles/batch/{batch.id}")

    def _files_url(self, batch: Batch, file_id: str) -> str:
        if batch.kind == ACTIVITY:
            return self.client.url("v2", f"data/activities/responses/files/{file_id}")
        return self.client.url("v2", f"data/members/profiles/files/{file_id}")

    # -- create ---------------------------------------------------------------------

    def create_activity_batch(self, activity_id: str, label: str) -> Batch:
        url = self.client.url("v2", f"data/activities/{activity_id}/responses/batch")
        return self._create(url, None, Batch(ACTIVITY, "", label, activity_id=activity_id))

    def create_member_batch(self, since: str | None) -> Batch:
        url = self.client.url("v2", "data/members/profiles/batch")
        body = {"sinceDatetime": since} if since else None
        label = f"member profiles (since {since})" if since else "member profiles (full)"
        return self._create(url, body, Batch(MEMBERS, "", label))

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
                msg = (
                    f"Alida reports the export failed for {batch.describe()}: {reason}. "
                    "Rerun the sync; if it keeps failing, give Alida support the batch id."
                )
                raise ExportFailedError(msg)
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
                time.sleep(interval)
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
        kilobytes of a file that may be gigabytes long.
        """
        link = self.file_link(batch)
        response = self.client.open_file(link, what=f"download the export file of {batch.describe()}")
        try:
            return read_definition_from_stream(response.raw, batch)
        finally:
            response.close()

    def download(self, batch: Batch, directory: str | None = None) -> Path:
        """Spool the batch's file to a temporary file and return its path.

        The caller removes the file. Bytes are written as they arrive, so memory
        stays flat whatever the export size.
        """
        link = self.file_link(batch)
        fd, name = tempfile.mkstemp(prefix=f"tap-alida-{batch.id}-", suffix=".json", dir=directory)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                self._download_into(batch, link, out)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def _download_into(self, batch: Batch, link: str, out: Any) -> None:
        what = f"download the export file of {batch.describe()}"
        response = self.client.open_file(link, what=what)
        total = response.headers.get("Content-Length")
        expected = (
            int(total) if total and total.isdigit() and "Content-Encoding" not in response.headers else None
        )
        started = time.monotonic()
        last_log = started
        received = 0
        logger.info(
            "Downloading %s from %s%s.",
            batch.describe(),
            safe_url(response.url or link),
            f" ({expected / 1e6:.1f} MB)" if expected else "",
        )
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                now = time.monotonic()
                if now - last_log >= PROGRESS_EVERY_SECONDS:
                    last_log = now
                    logger.info(
                        "%s: downloaded %.1f MB%s, %.0f s elapsed, %.1f MB/s.",
                        batch.describe(),
                        received / 1e6,
                        f" of {expected / 1e6:.1f} MB" if expected else "",
                        now - started,
                        received / 1e6 / max(now - started, 1e-6),
                    )
        except (*TRANSIENT_ERRORS, requests.exceptions.ContentDecodingError) as exc:
            msg = (
                f"The download of {batch.describe()} broke off after {received} bytes "
                f"({type(exc).__name__}). Nothing from this file was emitted; rerun the sync."
            )
            raise ExportFileError(msg) from exc
        finally:
            response.close()
        elapsed = time.monotonic() - started
        logger.info("%s: downloaded %.1f MB in %.1f s.", batch.describe(), received / 1e6, elapsed)
