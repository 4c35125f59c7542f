"""Admission: all exports at once, fewer after a 429, and never a create refused forever."""

from __future__ import annotations

import threading
import time

import pytest

from tap_alida.errors import APIError, ExportFailedError, RateLimitedError
from tap_alida.export.admission import Admission
from tap_alida.export.batch import ACTIVITY, Batch
from tap_alida.stop import RunStop


class CappedAlida:
    """Accepts a create while fewer than ``cap`` exports are in progress, else 429."""

    def __init__(self, cap: int, retry_after: float | None = 0.01) -> None:
        self.cap = cap
        self.retry_after = retry_after
        self.in_progress = 0
        self.most = 0
        self.refused = 0
        self.lock = threading.Lock()

    def create(self) -> Batch:
        with self.lock:
            if self.in_progress >= self.cap:
                self.refused += 1
                raise RateLimitedError("Could not create: HTTP 429", self.retry_after)
            self.in_progress += 1
            self.most = max(self.most, self.in_progress)
        return Batch(ACTIVITY, "b", "activity 'A' (a1)", activity_id="a1")

    def finish(self) -> None:
        with self.lock:
            self.in_progress -= 1


def export(admission: Admission, alida: CappedAlida, seconds: float) -> None:
    batch = admission.create(alida.create, "activity 'A' (a1)")
    time.sleep(seconds)  # Alida works on it
    alida.finish()
    admission.finished(batch)


def test_unbounded_until_alida_refuses():
    admission, alida = Admission(RunStop(), 60, 60), CappedAlida(cap=100)
    threads = [threading.Thread(target=export, args=(admission, alida, 0.05)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (alida.most, alida.refused, admission.limit) == (20, 0, None)


def test_a_cap_is_learnt_and_every_export_completes(caplog):
    admission, alida = Admission(RunStop(), 60, 60), CappedAlida(cap=3)
    threads = [threading.Thread(target=export, args=(admission, alida, 0.02)) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert alida.in_progress == 0 and alida.most == 3
    # Creates sent at once before the first 429 are refused once each (21); after that,
    # about one probe per `limit` accepted creates is refused, not one per retry.
    assert alida.refused <= 21 + 24 // 3 + 2, alida.refused
    assert admission.limit is not None and admission.limit >= 3  # learnt, and probing upwards
    lowered = [r for r in caplog.records if "refused a new export with HTTP 429" in r.getMessage()]
    assert len(lowered) == 1  # one WARNING per run, not one per refusal


def test_a_create_refused_for_too_long_fails_naming_the_export():
    admission, alida = Admission(RunStop(), max_wait_to_start=0.2, max_retry_after=60), CappedAlida(cap=0)
    with pytest.raises(ExportFailedError, match=r"refused to start the export of activity 'A' \(a1\) for"):
        admission.create(alida.create, "activity 'A' (a1)")
    assert alida.refused >= 2


def test_a_retry_after_above_the_ceiling_fails_at_once():
    admission, alida = Admission(RunStop(), 60, max_retry_after=5), CappedAlida(cap=0, retry_after=600)
    with pytest.raises(APIError, match="asked to wait 600 s, more than 'max_retry_after_seconds'"):
        admission.create(alida.create, "activity 'A' (a1)")
    assert alida.refused == 1


def test_other_errors_give_the_place_back():
    admission = Admission(RunStop(), 60, 60)
    admission.limit = 1

    def broken() -> Batch:
        raise APIError("Could not create: HTTP 400")

    with pytest.raises(APIError):
        admission.create(broken, "activity 'A' (a1)")
    batch = admission.create(CappedAlida(cap=1).create, "activity 'A' (a1)")  # the place is free
    assert batch.id == "b"


def test_waiting_creates_are_reported_in_one_line_a_while(caplog, monkeypatch):
    monkeypatch.setattr("tap_alida.export.admission.PROGRESS_EVERY_SECONDS", 0.05)
    caplog.set_level("INFO", logger="tap_alida.export.admission")
    admission, alida = Admission(RunStop(), 60, 60), CappedAlida(cap=1)
    threads = [threading.Thread(target=export, args=(admission, alida, 0.1)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    lines = [r.getMessage() for r in caplog.records if "exports wait to be created" in r.getMessage()]
    assert lines, "no progress line while creates waited"
    assert len(lines) <= 10  # one per interval for all waiting creates, not one per create per wake
    assert "Alida takes at most 1 at once (HTTP 429)" in lines[0]
