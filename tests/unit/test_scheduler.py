"""Which activities a run exports: the skip rule for closed surveys, case by case."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from tap_alida.export.scheduler import decide, row_version

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
FOREIGN = "the stream's last export was of another activity (or is unattributed)"


@dataclass
class Listed:
    id: str = "A-1"
    status: str | None = "closed"
    closed_on: str | None = "2026-11-01T00:00:00Z"

    @property
    def is_closed(self) -> bool:
        return str(self.status or "").lower() == "closed"


def mark(**changes: object) -> dict[str, object]:
    base = {"created_at": "2026-11-02T00:00:00Z", "server_time": True, "batch_id": "b", "activity_id": "a-1"}
    return {**base, **changes}


def run(activity: Listed, last: object, *, mode: str = "skip", days: float = 30) -> tuple[bool, str]:
    decision = decide(activity, last, closed_activities=mode, refresh_days=days, now=NOW)  # type: ignore[arg-type]
    return decision.export, decision.why


def test_a_closed_survey_exported_after_it_closed_is_skipped():
    assert run(Listed(), mark()) == (False, "closed 2026-11-01T00:00:00Z, exported 2026-11-02T00:00:00Z")


@pytest.mark.parametrize(
    ("activity", "last", "why"),
    [
        (Listed(status="open"), mark(), "status open"),
        (Listed(closed_on=None), mark(), "closed without a closedOn date"),
        (Listed(), None, "never exported"),
        (Listed(), mark(created_at="2026-10-30T00:00:00Z"), "closed since its last export"),
        (Listed(), mark(created_at="not a time"), "no usable time of its last export"),
        (
            Listed(),
            mark(activity_id="A-2"),
            "the stream's last export was of another activity (or is unattributed)",
        ),
        (
            Listed(),
            mark(activity_id=None),
            "the stream's last export was of another activity (or is unattributed)",
        ),
        (Listed(), mark(created_at="2026-10-01T00:00:00Z"), "closed since its last export"),
    ],
)
def test_everything_else_is_exported(activity, last, why):
    assert run(activity, last) == (True, why)


def test_a_mark_of_this_machine_s_clock_is_trusted_only_ten_minutes_earlier():
    close_call = mark(created_at="2026-11-01T00:05:00Z", server_time=False)
    assert run(Listed(), close_call)[0] is True


def test_refresh_days_and_the_export_setting():
    old = mark(created_at="2026-10-02T00:00:00Z")
    assert run(Listed(closed_on="2026-10-01T00:00:00Z"), old, days=30)[0] is True
    assert run(Listed(closed_on="2026-10-01T00:00:00Z"), old, days=0)[0] is False  # 0: never refreshed
    assert run(Listed(), mark(), mode="export") == (True, "closed_activities is 'export'")


# --------------------------------------------------------------------------- row versions


RUN = 1_800_000_000_000  # a run's version: its start in ms
DAY_MS = 86_400_000


def test_rows_of_a_closed_survey_stay_valid_for_the_refresh_days_open_ones_for_this_run():
    assert row_version(Listed(status="open"), RUN, refresh_days=30, now=NOW) == RUN
    assert row_version(Listed(), RUN, refresh_days=30, now=NOW) == RUN + 30 * DAY_MS
    assert row_version(Listed(closed_on="2099-01-01T00:00:00Z"), RUN, refresh_days=30, now=NOW) == RUN
    assert row_version(Listed(), RUN, refresh_days=0, now=NOW) > RUN + 36_000 * DAY_MS  # never refreshed
    # with closed_activities: export nothing is skipped, so no row needs to outlive the run
    assert row_version(Listed(), RUN, refresh_days=30, now=NOW, closed_activities="export") == RUN


def test_a_stream_of_several_surveys_skips_only_while_the_rows_are_valid():
    def skip(last: object) -> tuple[bool, str]:
        decision = decide(
            Listed(), last, closed_activities="skip", refresh_days=30, now=NOW, version_floor=RUN
        )  # type: ignore[arg-type]
        return decision.export, decision.why

    assert skip(mark(version=RUN + 1))[0] is False
    assert skip(mark(version=RUN)) == (True, "its rows' version has expired (closed_activity_refresh_days)")
    assert skip(mark()) == (True, "its rows were loaded without a row version (before tap-alida kept one)")
    assert skip(mark(version=True))[0] is True  # not a version
