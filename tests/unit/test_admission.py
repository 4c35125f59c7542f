"""Admission: all exports at once, fewer after a 429, and never a create refused forever."""

from __future__ import annotations

import threading
import time

import pytest

from tap_alida.errors import APIError, ExportFailedError, RateLimitedError
from tap_alida.export import scheduler
from tap_alida.export.batch import ACTIVITY, Batch
from tap_alida.export.scheduler import Admission
from tap_alida.stop import RunStop

LABEL = "activity 'A' (a1)"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    """Backoffs of 10 ms instead of 1 s, so the tests take well under a second each."""
    monkeypatch.setattr(scheduler, "BACKOFF_FIRST_SECONDS", 0.01)


class CappedAlida:
    """Accepts a create while fewer than ``cap`` exports are in progress, else 429."""

    def __init__(self, cap: int, retry_after: float | None = 0.01, refuse_first: int = 0) -> None:
        self.cap = cap
        self.retry_after = retry_after
        self.refuse_first = refuse_first  # a passing rate limit: the first N creates are refused
        self.in_progress = 0
        self.most = 0
        self.refused = 0
        self.lock = threading.Lock()

    def create(self) -> Batch:
        with self.lock:
            if self.in_progress >= self.cap or self.refused < self.refuse_first:
                self.refused += 1
                raise RateLimitedError("Could not create: HTTP 429", self.retry_after)
            self.in_progress += 1
            self.most = max(self.most, self.in_progress)
        return Batch(ACTIVITY, "b", LABEL, activity_id="a1")

    def finish(self) -> None:
        with self.lock:
            self.in_progress -= 1


def export(admission: Admission, alida: CappedAlida, seconds: float, start: threading.Barrier | None = None):
    batch = admission.create(alida.create, LABEL)
    if start is not None:
        start.wait(timeout=10)  # every create has returned before any export finishes
    time.sleep(seconds)  # Alida works on it
    alida.finish()
    admission.finished(batch)


def run_all(admission: Admission, alida: CappedAlida, n: int, seconds: float, together: bool = False) -> None:
    start = threading.Barrier(n) if together else None
    threads = [threading.Thread(target=export, args=(admission, alida, seconds, start)) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert alida.in_progress == 0, "an export never completed"


def test_unbounded_until_alida_refuses():
    admission, alida = Admission(RunStop(), 60, 60), CappedAlida(cap=100)
    run_all(admission, alida, 20, 0.01, together=True)
    assert (alida.most, alida.refused, admission.limit) == (20, 0, None)


def test_a_cap_is_learnt_and_every_export_completes(caplog):
    admission, alida = Admission(RunStop(), 60, 60), CappedAlida(cap=3)
    run_all(admission, alida, 24, 0.02)
    assert alida.most == 3
    # The creates sent at once before the first 429 are refused (at most 21), each
    # maybe once more while the limit settles; after that about one probe per
    # `limit` accepted creates is refused: not one knock per create per backoff.
    assert alida.refused <= 2 * 21 + 24, alida.refused
    assert admission.limit is not None and admission.limit >= 3  # learnt, and probing upwards
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "refused a new export with HTTP 429" in warnings[0]


def test_waiting_for_a_place_is_not_counted_as_being_refused():
    # Queued behind our own exports far longer than max_wait_to_start: nothing fails.
    admission, alida = Admission(RunStop(), max_wait_to_start=0.1, max_retry_after=60), CappedAlida(cap=2)
    run_all(admission, alida, 8, 0.08)
    assert alida.most == 2 and alida.refused >= 1


def test_a_create_refused_while_none_of_ours_runs_fails_after_max_wait_to_start():
    admission, alida = Admission(RunStop(), max_wait_to_start=0.3, max_retry_after=60), CappedAlida(cap=0)
    started = time.monotonic()
    with pytest.raises(ExportFailedError, match=r"refused to start the export of activity 'A' \(a1\) for"):
        admission.create(alida.create, LABEL)
    assert time.monotonic() - started < 5


def test_retry_after_zero_backs_off_instead_of_looping(monkeypatch):
    monkeypatch.setattr(scheduler, "BACKOFF_FIRST_SECONDS", 0.03)
    admission = Admission(RunStop(), max_wait_to_start=0.3, max_retry_after=60)
    alida = CappedAlida(cap=0, retry_after=0.0)
    with pytest.raises(ExportFailedError):
        admission.create(alida.create, LABEL)
    assert 2 <= alida.refused <= 8  # 0.03, 0.06, 0.12, 0.24 s backoffs (with jitter), not thousands


def test_a_retry_after_above_the_ceiling_fails_at_once():
    admission, alida = Admission(RunStop(), 60, max_retry_after=5), CappedAlida(cap=0, retry_after=600)
    with pytest.raises(
        APIError, match=r"asked to wait 600 s, more than the tap waits \(5 s, MAX_RETRY_AFTER_SECONDS\)"
    ):
        admission.create(alida.create, LABEL)
    assert alida.refused == 1


def test_a_passing_rate_limit_does_not_slow_the_rest_of_the_run(monkeypatch):
    monkeypatch.setattr(scheduler, "QUIET_SECONDS", 0.03)
    admission = Admission(RunStop(), 60, 60)
    alida = CappedAlida(cap=100, retry_after=0.0, refuse_first=1)  # one 429, with nothing in progress
    first = admission.create(alida.create, LABEL)
    assert admission.limit == 2  # 1 after the refusal, +1 once that one create was accepted
    time.sleep(0.1)  # quiet: the limit doubles while creates wait
    alida.finish()
    admission.finished(first)
    run_all(admission, alida, 16, 0.15)
    assert alida.most >= 8, alida.most  # not one at a time, nor one more per round


def limited(admission: Admission, limit: int) -> Admission:
    """As if Alida had just refused a create with ``limit`` of ours in progress."""
    admission.limit = limit
    admission._calm_since = time.monotonic()
    return admission


def test_a_reused_batch_holds_a_place_until_it_finishes():
    admission = limited(Admission(RunStop(), 60, 60), 1)
    reused = Batch(ACTIVITY, "old", LABEL, activity_id="a1")
    admission.hold(reused)
    created: list[Batch] = []
    thread = threading.Thread(
        target=lambda: created.append(admission.create(CappedAlida(cap=5).create, LABEL))
    )
    thread.start()
    time.sleep(0.2)
    assert created == []  # the re-used batch takes the only place
    admission.finished(reused)
    thread.join(timeout=5)
    assert len(created) == 1


def test_other_errors_give_the_place_back():
    admission = limited(Admission(RunStop(), 60, 60), 1)

    def broken() -> Batch:
        raise APIError("Could not create: HTTP 400")

    with pytest.raises(APIError):
        admission.create(broken, LABEL)
    batch = admission.create(CappedAlida(cap=1).create, LABEL)  # the place is free
    assert batch.id == "b"


def test_waiting_creates_are_reported_in_one_line_a_while(caplog, monkeypatch):
    monkeypatch.setattr(scheduler, "PROGRESS_EVERY_SECONDS", 0.05)
    caplog.set_level("INFO", logger="tap_alida.export.scheduler")
    admission, alida = Admission(RunStop(), 60, 60), CappedAlida(cap=1)
    run_all(admission, alida, 4, 0.1)
    lines = [r.getMessage() for r in caplog.records if "exports wait to be created" in r.getMessage()]
    assert lines, "no progress line while creates waited"
    assert len(lines) <= 12  # one per interval for all waiting creates, not one per create per wake
    assert "Alida takes at most 1 at once (HTTP 429)" in lines[0]
