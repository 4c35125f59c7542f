"""One export from creation to its file: re-use a recorded batch, create, wait, fetch, re-create.

The rules (``docs/api.md`` §3, §12b; the tap's own where Alida is silent):

* a batch a crashed run left in STATE is re-used when it was made for this very
  export (kind, activity), is under 24 h old, and its status is not failed or
  cancelled (nor 404: gone); so is the batch discovery made for an activity
  (``catalog_keys``), under the same checks but only while under an hour old;
* a batch Alida reports ``failed``, or whose file is truncated, is created again,
  up to ``EXPORT_ATTEMPTS`` (3) batches; a cancelled one is not (someone meant it);
* a wait past ``max_wait_to_start_seconds`` / ``max_wait_seconds`` fails the export.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from tap_alida.catalog_keys import DISCOVERY_BATCH_MAX_AGE_SECONDS
from tap_alida.errors import BatchFailedError, ExportFailedError, NotFoundError, TruncatedFileError
from tap_alida.export.admission import Admission
from tap_alida.export.api import BatchExports
from tap_alida.export.batch import ACTIVITY, MEMBERS, Batch
from tap_alida.export.status import BatchState, classify, status_word
from tap_alida.settings import EXPORT_ATTEMPTS, AlidaSettings
from tap_alida.stop import RunStop

logger = logging.getLogger("tap_alida.export.lifecycle")

T = TypeVar("T")

# A batch left in STATE by a crashed run is re-used only while it is this young: a rerun
# soon after a crash saves Alida the export again, but a rerun loads Alida as it was at that
# export, so a snapshot from the night before must not stand in for tonight's (nights are
# hours apart; the simulation test ages STATE by a day between nights). Alida documents no
# file retention either.
RESUME_MAX_AGE_SECONDS = 6 * 3600
PREVIOUS_RUN = "the previous run"
DISCOVERY = "discovery"
_MAX_AGE = {PREVIOUS_RUN: RESUME_MAX_AGE_SECONDS, DISCOVERY: DISCOVERY_BATCH_MAX_AGE_SECONDS}

# An export reports each batch it creates or re-uses through this (None: forget it).
Report = Callable[[dict[str, Any] | None], None]


class BatchLifecycle:
    """Creates, re-uses, awaits and fetches batches through ``BatchExports``."""

    def __init__(self, exports: BatchExports, settings: AlidaSettings, stop: RunStop) -> None:
        self.exports = exports
        self.settings = settings
        self.admission = Admission(stop, settings.max_wait_to_start, settings.max_retry_after)

    def resumable(
        self, entry: Any, label: str, activity_id: str | None, source: str = PREVIOUS_RUN
    ) -> Batch | None:
        """The batch a crashed run left in STATE (or discovery in the catalog), if it may be
        re-used: made for this very export (kind and activity, see ``Batch.mismatch``) and
        young enough."""
        if not isinstance(entry, Mapping):
            return None
        batch = Batch.from_state(entry, label, activity_id, source)
        if batch is None:
            return None
        reason = Batch.mismatch(entry, MEMBERS if activity_id is None else ACTIVITY, activity_id)
        if reason is not None:
            logger.info(
                "Not re-using batch %s from %s for %s: %s.",
                batch.id,
                source,
                label,
                reason,
            )
            return None
        age = time.monotonic() - batch.created_at
        if age > _MAX_AGE[source]:
            logger.info("Not re-using %s from %s: it is %.1f h old.", batch.describe(), source, age / 3600)
            return None
        return batch

    def run(
        self,
        create: Callable[[], Batch],
        candidates: Sequence[Batch],
        report: Report,
        fetch: Callable[[Batch], T],
        label: str,
    ) -> T:
        """Await and fetch a batch: the first of ``candidates`` (batches to re-use, best
        first) that is still usable, else a new one; make a new one when Alida reports it
        ``failed`` or its file is truncated, up to ``EXPORT_ATTEMPTS`` (3) batches.
        Creates wait for a place when Alida limits exports in progress (``admission``)."""
        limit = EXPORT_ATTEMPTS
        created = 0
        queue = list(candidates)
        while True:
            batch = self._next_usable(queue)
            if batch is None:
                created += 1
                batch = self.admission.create(create, label)
            report(batch.to_state())
            try:
                try:
                    self.exports.wait(batch)
                finally:
                    self.admission.finished(batch)
                return fetch(batch)
            except NotFoundError:
                if not batch.resumed:
                    raise
                logger.info("%s from %s is gone; not re-using it.", batch.describe(), batch.source)
            except (BatchFailedError, TruncatedFileError) as exc:
                if batch.resumed:
                    logger.info("%s from %s is not usable (%s).", batch.describe(), batch.source, exc)
                elif created >= limit:
                    report(None)  # a rerun starts with a new batch
                    msg = f"{str(exc).rstrip('.')}. {created} batches were tried."
                    if "Alida support" not in msg:  # (most file errors say it already)
                        msg += " Rerun the sync later; if it keeps failing, give Alida support the batch id."
                    raise type(exc)(msg) from exc
                else:
                    logger.warning("%s; creating a new batch (attempt %d of %d).", exc, created + 1, limit)
            except ExportFailedError as exc:  # waited too long: pending or unfinished
                if not batch.resumed:
                    report(None)
                    raise
                logger.info("%s from %s is not usable (%s).", batch.describe(), batch.source, exc)

    def _next_usable(self, queue: list[Batch]) -> Batch | None:
        """The first candidate that can still be used (taken off ``queue``), or None.

        A re-used batch Alida is still working on holds a place (``admission``)."""
        while queue:
            batch = queue.pop(0)
            if not batch.resumed:
                return batch  # made by this process (discovery's definition export)
            status = self._still_usable(batch)
            if status is not None:
                if classify(status_word(status)) is not BatchState.SUCCEEDED:
                    self.admission.hold(batch)
                return batch
        return None

    def _still_usable(self, batch: Batch) -> dict[str, Any] | None:
        """The status of a batch recorded by a previous run (or discovery) when it can still be
        awaited or downloaded; None when it cannot (gone, another activity's, failed, cancelled)."""
        try:
            status = self.exports.refresh(batch)
        except NotFoundError:
            logger.info("%s from %s no longer exists.", batch.describe(), batch.source)
            return None
        dataset = status.get("datasetId")
        if (
            batch.kind == ACTIVITY
            and dataset is not None
            and str(dataset).lower() != str(batch.activity_id).lower()
        ):
            logger.info(
                "Not re-using %s from %s: Alida says it exports activity %s.",
                batch.describe(),
                batch.source,
                dataset,
            )
            return None
        word = status_word(status)
        if classify(word) in (BatchState.FAILED, BatchState.CANCELLED):
            logger.info("%s from %s ended %r; not re-using it.", batch.describe(), batch.source, word)
            return None
        logger.info("Re-using %s from %s (status %s).", batch.describe(), batch.source, word or "unknown")
        return status
