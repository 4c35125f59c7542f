"""Alida's batch export endpoints, one batch at a time: create → poll → resolve the link → download.

Alida's Batch Data Extract is asynchronous (``docs/api.md`` §2-3): a POST
creates a batch, GETs poll its status (``pending → running → succeeded |
failed``), and on success ``data`` holds a link to the file, which usually
redirects to object storage. What Alida really answers is only partly
documented, so each step accepts every plausible shape (§12b): status words in
any case (``status``), create answers with the id in the body or a Location
header, file links that redirect, answer JSON or serve the file (``links``).
Files are spooled to a temporary file while they download (constant memory,
and nothing is emitted from a file that is not complete), then parsed by
``export_file``.

Long waits log a progress line at INFO: batch id, status, elapsed time, bytes.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from tap_alida.errors import (
    APIError,
    BadExportFileError,
    BatchCancelledError,
    BatchFailedError,
    ExportFailedError,
    ExportFileError,
    NotFoundError,
    RateLimitedError,
    StorageLinkError,
    TruncatedFileError,
)
from tap_alida.export.batch import ACTIVITY, MEMBERS, Batch
from tap_alida.export.download import PROGRESS_EVERY_SECONDS, Download
from tap_alida.export.file import read_definition_from_stream
from tap_alida.export.status import BatchState, classify, error_text, status_word
from tap_alida.http.client import AlidaClient
from tap_alida.http.links import LINK_KEYS
from tap_alida.http.policy import STREAM_ERRORS, TRANSIENT_ERRORS, error_detail, parse_retry_after
from tap_alida.http.urls import segment
from tap_alida.modelling.types import format_datetime
from tap_alida.settings import AlidaSettings

logger = logging.getLogger("tap_alida.export.api")

# Alida's other Web APIs answer a create with an empty 201 unless asked for the
# resource (docs/api.md §12b); asking costs nothing where it is not needed.
RETURN_RESOURCE = {"x-webapi-return-resource": "true"}
# Keys that may carry the new batch's id in a create answer (§2: UNKNOWN shape).
ID_KEYS = ("id", "batchId", "jobId")
# A batch may not be visible to status GETs at once (eventual consistency,
# UNKNOWN in §3.2): a 404 this soon after the create is retried, every second.
NEW_BATCH_404_GRACE_SECONDS = 10.0
NEW_BATCH_404_WAIT_SECONDS = 1.0


class BatchExports:
    """Creates and follows batch exports for one community."""

    def __init__(self, client: AlidaClient) -> None:
        self.client = client
        self.settings = client.settings
        self._unknown_words: set[str] = set()  # warned about once per run
        self._lock = threading.Lock()

    def _first_sight(self, word: str) -> bool:
        """True the first time this run meets an unknown status word."""
        with self._lock:
            seen = word in self._unknown_words
            self._unknown_words.add(word)
        return not seen

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
        what = f"create the batch for {batch.label}"
        response = self._post(url, what, body)
        status, batch_id = created_batch(response)
        if batch_id is None and not response.content and "Location" not in response.headers:
            # An empty answer says nothing, not even whether a batch exists: ask once more.
            # (If the first request did create one, Alida keeps an orphan export; one
            # orphan is cheaper than a run that cannot start.)
            logger.warning(
                "Alida answered the request to %s with an empty HTTP %d (no body, no Location); "
                "repeating it once.",
                what,
                response.status_code,
            )
            response = self._post(url, what, body)
            status, batch_id = created_batch(response)
        if batch_id is None:
            names = ", ".join(sorted(response.headers)) or "none"
            msg = (
                f"Alida accepted the export request for {batch.label} but returned no batch id "
                f"(HTTP {response.status_code}, body {len(response.content)} bytes, headers: {names}; "
                f"looked for {', '.join(ID_KEYS)} in a JSON body and a Location header). Report this "
                "answer shape to the tap's maintainers."
            )
            raise APIError(msg, status=response.status_code)
        batch.id = batch_id
        batch.status = status
        batch.created_at = time.monotonic()
        batch.server_created = server_date(response)
        logger.info("Created batch %s for %s.", batch.id, batch.label)
        return batch

    def _post(self, url: str, what: str, body: Any) -> requests.Response:
        """The create request; a 429 is not retried here but raised as RateLimitedError, so
        that the run creates fewer exports at once (``scheduler.Admission``) instead of each knocking."""
        response = self.client.request(
            "POST", url, what=what, json=body, headers=RETURN_RESOURCE, ok_statuses=(429,)
        )
        if response.status_code == 429:
            detail = error_detail(response)
            response.close()
            msg = f"Could not {what}: HTTP 429: {detail}"
            raise RateLimitedError(msg, parse_retry_after(response.headers.get("Retry-After")))
        return response

    # -- poll -----------------------------------------------------------------------

    def refresh(self, batch: Batch) -> dict[str, Any]:
        """Read the batch's status; a 404 right after the create is waited out briefly."""
        what = f"read the status of {batch.describe()}"
        # Not ``retry.attempts``: this wait is bounded by the batch's age, not by a count of
        # tries, waits a fixed second (no backoff, no Retry-After) and gives up by re-raising
        # the 404; the GET inside already runs in the retry loop for 429/5xx.
        while True:
            try:
                status = self.client.get_json(self._status_url(batch), what=what)
                break
            except NotFoundError:
                age = time.monotonic() - batch.created_at
                if batch.resumed or age > NEW_BATCH_404_GRACE_SECONDS:
                    raise
                logger.info(
                    "%s is not visible yet (HTTP 404, %.1f s after it was created); asking again.",
                    batch.describe(),
                    age,
                )
                self.client.stop.sleep(NEW_BATCH_404_WAIT_SECONDS)
        if not isinstance(status, Mapping):
            msg = f"The status of {batch.describe()} is not a JSON object."
            raise APIError(msg)
        batch.status = dict(status)
        return batch.status

    def wait(self, batch: Batch) -> dict[str, Any]:
        """Poll until the batch succeeds; fail clearly when it fails, is cancelled or takes too long."""
        last_word: str | None = None
        last_log = 0.0
        status = batch.status
        while True:
            word = status_word(status) if status else ""
            state = classify(word)
            elapsed = time.monotonic() - batch.created_at
            if state is BatchState.SUCCEEDED:
                logger.info("%s succeeded after %.0f s.", batch.describe(), elapsed)
                return status
            self._check(batch, status, word, state, elapsed)
            now = time.monotonic()
            if word != last_word or now - last_log >= PROGRESS_EVERY_SECONDS:
                logger.info("%s is %s (%.0f s elapsed).", batch.describe(), word or "pending", elapsed)
                last_word, last_log = word, now
            if status:  # the create response may already say succeeded
                wait = poll_wait(elapsed, self.settings)
                left = _time_left(state is not BatchState.RUNNING, elapsed, self.settings)
                self.client.stop.sleep(min(wait, left))
            status = self.refresh(batch)

    def _check(
        self, batch: Batch, status: dict[str, Any], word: str, state: BatchState, elapsed: float
    ) -> None:
        """Raise when a batch not yet succeeded has failed, was cancelled or is past its
        deadline (``max_wait_to_start_seconds`` until it runs, ``max_wait_seconds`` in all);
        warn once about a status word the tap does not know."""
        settings, shown = self.settings, word or "pending"
        if state is BatchState.FAILED:
            reason = error_text(status) or "no error message given"
            msg = f"Alida reports the export failed for {batch.describe()} (status {word!r}): {reason}"
            raise BatchFailedError(msg)
        if state is BatchState.CANCELLED:
            why = error_text(status)
            msg = (
                f"Alida reports the export of {batch.describe()} as {word!r}"
                f"{f': {why}' if why else ''}. A cancelled batch is not created again; "
                "find out who or what cancelled it, then rerun the sync."
            )
            raise BatchCancelledError(msg)
        if state is BatchState.UNKNOWN and self._first_sight(word):
            logger.warning(
                "%s has status %r, a word the tap does not know; treating it as still pending "
                "(until 'max_wait_to_start_seconds'). Please report this word to the tap's maintainers.",
                batch.describe(),
                word,
            )
        unknown = " (a status word the tap does not know)" if state is BatchState.UNKNOWN else ""
        if state is not BatchState.RUNNING and elapsed > settings.max_wait_to_start:
            msg = (
                f"{batch.describe()} is still {shown}{unknown} after {elapsed:.0f} s "
                f"('max_wait_to_start_seconds' = {settings.max_wait_to_start:.0f}). Alida has not "
                "started the export; rerun later or raise the setting."
            )
            raise ExportFailedError(msg)
        if elapsed > settings.max_wait:
            msg = (
                f"{batch.describe()} has not finished after {elapsed:.0f} s (status {shown!r}{unknown}; "
                f"'max_wait_seconds' = {settings.max_wait:.0f}). Rerun later or raise the setting."
            )
            raise ExportFailedError(msg)

    def file_link(self, batch: Batch) -> str:
        """The file URL of a succeeded batch: ``data``, else built from ``message.artifact``."""
        status = batch.status
        link = status.get("data")
        if isinstance(link, Mapping):  # {"url": …} instead of a string: same idea, one level up
            link = next((v for k, v in link.items() if str(k).lower() in LINK_KEYS), None)
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
        retries = self.client.retry.attempts(what)
        for attempt in retries:
            try:
                response = self.client.open_file(link, what=what)
            except StorageLinkError:
                if attempt.number >= self.client.retry.max_attempts:
                    raise
                link = self._fresh_link(batch)
                continue  # a try without a wait
            try:
                return read_definition_from_stream(response.raw, batch, framed=_framed(response))
            except (BadExportFileError, TruncatedFileError):
                raise  # the file itself is bad (or cut by Alida): reading it again cannot help
            except (*TRANSIENT_ERRORS, *STREAM_ERRORS, ExportFileError) as exc:
                # ExportFileError: a body cut short looks like malformed JSON here.
                attempt.failed(type(exc).__name__)
            finally:
                response.close()
        raise retries.gave_up()

    def _fresh_link(self, batch: Batch) -> str:
        """A new file link from the batch status, after the storage host refused one."""
        logger.info(
            "The file link of %s was refused (expired?); fetching a fresh one from the batch status.",
            batch.describe(),
        )
        self.refresh(batch)
        return self.file_link(batch)

    def download(self, batch: Batch, directory: str | None = None) -> Path:
        """Spool the batch's file to disk (``download``): its path, complete and checked."""
        return Download(self.client, batch, self.file_link, self._fresh_link).run(directory)


def created_batch(response: requests.Response) -> tuple[dict[str, Any], str | None]:
    """The status object and batch id a create answer carries (id None when it has none).

    The id comes from a JSON body's ``id``, ``batchId`` or ``jobId``, else from
    the last path segment of a ``Location`` header (§2: the answer is UNKNOWN).
    """
    status: Any = {}
    if response.content:
        try:
            status = response.json()
        except ValueError:
            status = {}
    if not isinstance(status, Mapping):
        status = {}
    batch_id = next((status[k] for k in ID_KEYS if status.get(k) not in (None, "")), None)
    if batch_id is None and response.headers.get("Location"):
        batch_id = urlsplit(response.headers["Location"]).path.rstrip("/").rsplit("/", 1)[-1] or None
    return dict(status), None if batch_id is None else str(batch_id)


def _framed(response: requests.Response) -> bool:
    """Whether the body's length is declared (Content-Length, or chunked): urllib3 then
    raises on a body cut short, so a clean end of the body is the end of the file."""
    headers = response.headers
    return "Content-Length" in headers or "chunked" in headers.get("Transfer-Encoding", "").lower()


# A finished export is noticed within this share of its age (or the first poll interval).
POLL_SHARE_OF_AGE = 0.1


def poll_wait(elapsed: float, settings: AlidaSettings) -> float:
    """Seconds until the next status check: ``POLL_SHARE_OF_AGE`` of the export's age, at least
    ``POLL_INTERVAL_SECONDS`` and at most ``POLL_MAX_INTERVAL_SECONDS`` (``settings``).

    A finished export is noticed within max(poll_interval, 10 % of its age): one
    that takes 45 s within 4.5 s, where doubling waits (5, 10, 20, 40 s) noticed it
    only at 75 s. At the defaults (1 s, 60 s) an export costs 5 GETs in its first
    5 s, 26 in 45 s, 53 in 10 minutes and then one a minute (about 100 in an hour).
    """
    return min(max(settings.poll_interval, POLL_SHARE_OF_AGE * elapsed), settings.poll_max_interval)


def _time_left(not_started: bool, elapsed: float, settings: AlidaSettings) -> float:
    """Seconds until the nearest deadline that applies (a little past it, so the next check fails).

    A poll sleeps at most this long: a long poll interval must not
    carry a wait past ``max_wait_seconds`` (or, while pending,
    ``max_wait_to_start_seconds``).
    """
    deadline = settings.max_wait
    if not_started:
        deadline = min(deadline, settings.max_wait_to_start)
    return max(0.0, deadline - elapsed) + 0.05


def server_date(response: requests.Response) -> str | None:
    """The answer's ``Date`` header as RFC 3339 UTC: Alida's clock, not this machine's."""
    try:
        moment = email.utils.parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return format_datetime(moment.astimezone(dt.UTC))
