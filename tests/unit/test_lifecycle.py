"""The export lifecycle against a fake batch API: re-use, re-creation, cancellation, timeouts."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tap_alida.errors import (
    BadExportFileError,
    BatchCancelledError,
    BatchFailedError,
    ExportFailedError,
    ExportFileError,
    NotFoundError,
)
from tap_alida.export.batch import ACTIVITY, MEMBERS, Batch
from tap_alida.export.plan import RESUME_MAX_AGE_SECONDS, BatchLifecycle
from tap_alida.settings import AlidaSettings
from tap_alida.stop import RunStop

SETTINGS = AlidaSettings.from_config(
    {
        "community_api_key_name": "c",
        "client_id": "i",
        "client_secret": "s",
        "api_url": "http://127.0.0.1:1",
    }
)


class FakeExports:
    """Answers ``wait`` and ``refresh`` from scripts, one entry per batch id."""

    def __init__(self, waits: dict[str, Any], statuses: dict[str, Any] | None = None) -> None:
        self.waits = waits
        self.statuses = statuses or {}
        self.waited: list[str] = []

    def wait(self, batch: Batch) -> dict[str, Any]:
        self.waited.append(batch.id)
        outcome = self.waits.get(batch.id, {"status": "succeeded"})
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def refresh(self, batch: Batch) -> dict[str, Any]:
        status = self.statuses.get(batch.id, {"status": "running"})
        if isinstance(status, Exception):
            raise status
        return status


class Creator:
    def __init__(self) -> None:
        self.created = 0

    def __call__(self) -> Batch:
        self.created += 1
        return Batch(ACTIVITY, f"b{self.created}", "activity 'A' (a1)", activity_id="a1")


def lifecycle(exports: FakeExports) -> BatchLifecycle:
    return BatchLifecycle(exports, SETTINGS, RunStop())  # type: ignore[arg-type]


def run(exports: FakeExports, resumed: Batch | None = None) -> tuple[str, Creator, list[Any]]:
    create, reports = Creator(), []
    result = lifecycle(exports).run(
        create, [resumed] if resumed else [], reports.append, lambda batch: batch.id, "activity 'A' (a1)"
    )
    return result, create, reports


def test_a_new_batch_is_created_awaited_fetched_and_reported():
    result, create, reports = run(FakeExports({}))
    assert result == "b1" and create.created == 1
    assert reports[0]["id"] == "b1" and reports[0]["activity_id"] == "a1"


def test_a_failed_batch_is_created_again_up_to_the_limit():
    failed = BatchFailedError("Alida reports the export failed")
    result, create, _ = run(FakeExports({"b1": failed, "b2": failed}))
    assert result == "b3" and create.created == 3
    tried = r"failed\. 3 batches were tried\. Rerun the sync later; if it keeps failing"
    with pytest.raises(BatchFailedError, match=tried):
        run(FakeExports({"b1": failed, "b2": failed, "b3": failed}))


def test_a_batch_this_process_made_counts_as_one_of_the_attempts():
    """Discovery's definition export, re-used by the sync in the same process, is the first of
    the three batches: two more are made, and the error counts three."""
    own = Batch(ACTIVITY, "b0", "activity 'A' (a1)", activity_id="a1")
    failed = BatchFailedError("Alida reports the export failed")
    create, reports = Creator(), []
    exports = FakeExports({"b0": failed, "b1": failed, "b2": failed})
    with pytest.raises(BatchFailedError, match=r"failed\. 3 batches were tried\. Rerun"):
        lifecycle(exports).run(create, [own], reports.append, lambda b: b.id, "activity 'A' (a1)")
    assert exports.waited == ["b0", "b1", "b2"] and create.created == 2
    assert reports[-1] is None


def test_a_batch_this_process_made_whose_file_is_gone_is_replaced():
    own = Batch(ACTIVITY, "b0", "activity 'A' (a1)", activity_id="a1")
    create, reports = Creator(), []
    exports = FakeExports({"b0": NotFoundError("gone", status=404)})
    result = lifecycle(exports).run(create, [own], reports.append, lambda b: b.id, "activity 'A' (a1)")
    assert result == "b1" and create.created == 1
    assert [r and r["id"] for r in reports] == ["b0", None, "b1"]


def test_a_cancelled_batch_is_not_created_again():
    exports = FakeExports({"b1": BatchCancelledError("cancelled")})
    with pytest.raises(BatchCancelledError):
        run(exports)
    assert exports.waited == ["b1"]


def test_a_timeout_forgets_the_batch_and_fails():
    exports = FakeExports({"b1": ExportFailedError("still pending")})
    reports: list[Any] = []
    with pytest.raises(ExportFailedError):
        lifecycle(exports).run(Creator(), [], reports.append, lambda b: b.id, "activity 'A' (a1)")
    assert reports[-1] is None  # the rerun starts with a new batch


def bad_file(bad: set[str]) -> Any:
    """A fetch whose file is bad (``BadExportFileError``) for the batches in ``bad``."""

    def fetch(batch: Batch) -> str:
        if batch.id in bad:
            raise BadExportFileError(f"The export file of batch {batch.id} is not valid JSON")
        return batch.id

    return fetch


def test_a_bad_file_fails_at_once_and_forgets_the_batch():
    create, reports = Creator(), []
    with pytest.raises(BadExportFileError, match="batch b1 is not valid JSON"):
        lifecycle(FakeExports({})).run(create, [], reports.append, bad_file({"b1"}), "activity 'A' (a1)")
    assert create.created == 1  # re-reading it cannot help: no second batch
    assert [r and r["id"] for r in reports] == ["b1", None]  # the rerun starts with a new batch


def recorded(batch_id: str = "old", age: float = 60, **extra: Any) -> Batch:
    entry = {"id": batch_id, "kind": ACTIVITY, "created_at": time.time() - age, "activity_id": "a1", **extra}
    batch = lifecycle(FakeExports({})).resumable(entry, "activity 'A' (a1)", "a1")
    assert batch is not None
    return batch


def test_a_recorded_batch_is_reused_when_usable():
    result, create, _ = run(FakeExports({}), recorded())
    assert result == "old" and create.created == 0


@pytest.mark.parametrize(
    "status",
    [NotFoundError("gone", status=404), {"status": "Failed"}, {"status": "CANCELLED"}, {"datasetId": "a2"}],
)
def test_a_recorded_batch_that_is_gone_failed_cancelled_or_foreign_is_replaced(status):
    result, create, _ = run(FakeExports({}, {"old": status}), recorded())
    assert result == "b1" and create.created == 1


def test_a_recorded_batch_that_fails_later_is_replaced_without_counting():
    failed = BatchFailedError("failed")
    result, create, _ = run(FakeExports({"old": failed, "b1": failed, "b2": failed}), recorded())
    assert result == "b3" and create.created == 3


def test_a_recorded_batch_whose_file_is_bad_is_replaced():
    create, reports = Creator(), []
    result = lifecycle(FakeExports({})).run(
        create, [recorded()], reports.append, bad_file({"old"}), "activity 'A' (a1)"
    )
    assert result == "b1" and create.created == 1
    assert [r and r["id"] for r in reports] == ["old", None, "b1"]  # given up at once


def test_a_recorded_batch_given_up_leaves_state_even_when_the_new_create_fails():
    """Else every rerun within 6 h would download the bad file again before passing it over."""
    reports: list[Any] = []

    def refused() -> Batch:
        raise ExportFailedError("Alida refused to start the export")

    with pytest.raises(ExportFailedError):
        lifecycle(FakeExports({})).run(
            refused, [recorded()], reports.append, bad_file({"old"}), "activity 'A' (a1)"
        )
    assert [r and r["id"] for r in reports] == ["old", None]


def test_a_download_that_keeps_breaking_keeps_the_batch_for_the_rerun():
    """The file is not known to be bad (the network broke): a rerun may re-use the batch."""
    reports: list[Any] = []

    def broken(batch: Batch) -> str:
        raise ExportFileError(f"The download of {batch.describe()} broke off 5 times")

    with pytest.raises(ExportFileError, match="broke off"):
        lifecycle(FakeExports({})).run(Creator(), [], reports.append, broken, "activity 'A' (a1)")
    assert [r and r["id"] for r in reports] == ["b1"]


def test_recorded_entries_that_may_not_be_reused():
    life = lifecycle(FakeExports({}))
    now = time.time()
    assert life.resumable(None, "x", "a1") is None
    assert life.resumable({"id": "b"}, "x", "a1") is None  # no kind, no time
    old = {"id": "b", "kind": ACTIVITY, "created_at": now - RESUME_MAX_AGE_SECONDS - 60, "activity_id": "a1"}
    assert life.resumable(old, "x", "a1") is None
    other = {"id": "b", "kind": ACTIVITY, "created_at": now, "activity_id": "a2"}
    assert life.resumable(other, "x", "a1") is None
    ahead = {"id": "b", "kind": ACTIVITY, "created_at": now + 3600, "activity_id": "a1"}
    assert life.resumable(ahead, "x", "a1") is None  # a time ahead of this clock: age unknown
    nan = {"id": "b", "kind": ACTIVITY, "created_at": float("nan"), "activity_id": "a1"}
    assert life.resumable(nan, "x", "a1") is None
    members = {"id": "b", "kind": MEMBERS, "created_at": now, "since": None}
    assert life.resumable(members, "x", "a1") is None
    assert life.resumable(members, "member profiles", None) is not None


def test_the_next_candidate_is_tried_when_the_first_is_gone():
    gone, usable = recorded("gone"), recorded("usable", age=120)
    exports = FakeExports({}, {"gone": NotFoundError("gone", status=404)})
    create, reports = Creator(), []
    result = lifecycle(exports).run(
        create, [gone, usable], reports.append, lambda b: b.id, "activity 'A' (a1)"
    )
    assert result == "usable" and create.created == 0
