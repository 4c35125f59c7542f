"""Errors the tap raises on purpose.

Every error here carries a message written for the data engineer who reads the
log of a failed nightly run: it names the activity, batch or setting involved and
says what to do. The CLI entry point (``tap_alida.tap.main``) prints these as a
single ERROR line and exits non-zero, without a traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class AlidaError(Exception):
    """Base class for every error tap-alida raises deliberately."""


class AuthenticationError(AlidaError):
    """The token endpoint refused the credentials or could not be reached."""


class APIError(AlidaError):
    """An Alida API call answered with an error that retrying will not fix."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimitedError(APIError):
    """Alida answered a batch create with 429: no more exports at once just now
    (``export.scheduler.Admission`` waits and creates fewer at once)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class NotFoundError(APIError):
    """A 404 from Alida (unknown activity, batch or file)."""


class ExportFailedError(AlidaError):
    """A batch export ended as ``failed`` (or never finished in time)."""


class ExportFileError(AlidaError):
    """An export file could not be downloaded or parsed completely."""


class BatchFailedError(ExportFailedError):
    """Alida reported the batch ``failed``: a new batch may succeed."""


class BatchCancelledError(ExportFailedError):
    """Alida reports the batch cancelled (or aborted, expired, deleted): terminal.

    Not a BatchFailedError on purpose: someone or something ended the export,
    and creating it again in a loop would fight that decision. The run fails at
    once with the word Alida used; a rerun creates a new batch.
    """


class StorageLinkError(APIError):
    """The storage host refused a file link (400/401/403: expired or not valid any more)."""


class BadExportFileError(ExportFileError):
    """The file's content is wrong the same way on every read (empty, not JSON, no definition):
    re-reading it cannot help, so the run fails at once naming the batch and the cause."""


class TruncatedFileError(ExportFileError):
    """A downloaded file ends before its JSON does: a new batch may fix it."""


class StoppedError(AlidaError):
    """The run is stopping (another export failed, or the process is exiting)."""


class SchemaDriftError(AlidaError):
    """An export's fields differ from the catalog and ``schema_drift`` is ``fail``."""


class BatchStorageError(AlidaError):
    """BATCH files could not be written (``batch_config.storage``): every stream would fail alike."""


class RunFailedError(AlidaError):
    """Some streams failed; the others completed (``fail_fast: false``)."""


# What fails one stream (one export, one survey) but not the run: the other streams
# still complete (``fail_fast: false``). Anything else (credentials, the network, a
# full disk) would fail every stream the same way, so it stops the run at once.
STREAM_FAILURES: tuple[type[AlidaError], ...] = (
    ExportFailedError,
    ExportFileError,
    SchemaDriftError,
    NotFoundError,
)
