"""Hostile STATE and settings (issue 17): one clear ERROR line, or a correct load; never a traceback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from harness import FIXTURES, discover, run_tap, select_all, without_batches

from tap_alida.settings import MAXIMUMS, AlidaSettings

PF = "9b2e61d0-7c11-4a53-8e0f-a62c0059ca52"  # Product Feedback — Q4
QP = "5f3c2a10-1111-4b2c-9d3e-a62c0059cb00"  # Quick Poll
TRACEBACK = "Traceback (most recent call last)"


def errors(run: Any) -> list[str]:
    return [line for line in run.stderr.splitlines() if "| ERROR" in line]


def api_requests(sandbox: Any) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests() if not r["path"].startswith("/_sandbox")]


# --------------------------------------------------------------------------- 6. a hostile STATE file


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "is not valid JSON"),
        ("[]", "it holds a JSON array, not an object"),
        ('{"bookmarks": []}', "'bookmarks' is a JSON array"),
        ('{"bookmarks": {"member_profiles": "x"}}', "bookmarks['member_profiles'] is a JSON string"),
        ('{"bookmarks": {"activity_answers": {"alida_batches": [1]}}}', "['alida_batches'] is a JSON array"),
        (
            '{"bookmarks": {"activity_answers": {"alida_last_exports": [1, 2]}}}',
            "['alida_last_exports'] is a JSON array",
        ),
        (
            '{"singer_state": {"bookmarks": []}}',
            "'bookmarks' is a JSON array",
        ),  # Meltano's wrapper, checked inside
        (
            '{"bookmarks": {"member_profiles": {"replication_key_value": "yesterday"}}}',
            "'yesterday', not an ISO-8601 date-time",
        ),
    ],
)
def test_a_hostile_state_file_is_one_error_naming_the_file(fixture_sandbox, tmp_path, text, problem):
    state = tmp_path / "broken-state.json"
    state.write_text(text)
    run = run_tap(tmp_path, fixture_sandbox.config(), "--state", str(state))
    assert run.returncode == 1
    assert TRACEBACK not in run.stderr, run.stderr
    first = errors(run)[0]
    assert f"The STATE file {state}" in first and problem in first, run.stderr
    assert "last STATE message" in first and "remove the file" in first
    assert api_requests(fixture_sandbox) == []  # checked before any request
    assert run.messages == []


def test_an_empty_state_file_is_an_empty_state(fixture_sandbox, tmp_path):
    state = tmp_path / "empty-state.json"
    state.write_text("")
    run = run_tap(tmp_path, fixture_sandbox.config(activity_ids=[QP]), "--state", str(state))
    assert run.returncode == 0, run.stderr[-3000:]
    assert [r["response_id"] for r in run.records["quick_poll"]] == ["resp-001", "resp-002"]


def test_meltano_s_state_get_output_is_read_as_its_singer_state(start_sandbox, tmp_path):
    """`meltano state get` prints {"singer_state": …}; given as is, the bookmarks still count."""
    sandbox = start_sandbox("--activities", "2", "--members", "5", "--responses", "4")
    first = run_tap(tmp_path, sandbox.config())
    assert first.returncode == 0, first.stderr[-3000:]
    wrapped = tmp_path / "meltano-state.json"
    wrapped.write_text(json.dumps({"singer_state": first.state}))
    second = run_tap(tmp_path, sandbox.config(), "--state", str(wrapped))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "is as `meltano state get` prints it: its 'singer_state' is used." in second.stderr
    assert "skips 1 closed" in second.stderr  # the closed survey's mark was read
    assert second.state["bookmarks"]["member_profile_values"]["replication_key_value"]


# --------------------------------------------------------------------------- 7. huge settings, long polls


@pytest.mark.parametrize(
    "setting", ["max_wait_to_start_seconds", "request_timeout_seconds", "max_wait_seconds"]
)
def test_a_huge_time_setting_is_a_clear_error(fixture_sandbox, tmp_path, setting):
    run = run_tap(tmp_path, fixture_sandbox.config(**{setting: 1e12}))
    assert run.returncode == 1
    assert TRACEBACK not in run.stderr, run.stderr
    # the first ERROR line names the setting, its value and the bound in plain words
    assert errors(run)[0].endswith(
        f"Setting '{setting}' is 1e+12; it must be at most {MAXIMUMS[setting]}."
    ), run.stderr
    assert api_requests(fixture_sandbox) == []


def test_settings_checks_name_the_maximum():
    config = {"region": "na1", "client_id": "a", "client_secret": "b", "community_api_key_name": "c"}
    assert AlidaSettings.errors({**config, "request_timeout_seconds": 1e12}) == [
        "Setting 'request_timeout_seconds' is 1e+12; it must be at most 3600."
    ]
    assert AlidaSettings.errors({**config, "max_concurrent_exports": 64}) == []


def test_a_poll_interval_longer_than_the_deadline_stops_at_the_deadline(start_sandbox, tmp_path):
    sandbox = start_sandbox("--fixtures", str(FIXTURES), "--job-delay", "120")
    config = sandbox.config(
        activity_ids=[QP],
        max_wait_to_start_seconds=600,
        max_wait_seconds=2,
    )
    started = time.monotonic()
    # A day between status checks (the test-only poll knob, settings.TEST_POLL_ENV).
    run = run_tap(tmp_path, config, "--discover", timeout=60, env={"ALIDA_TEST_POLL_SECONDS": "86400,86400"})
    assert time.monotonic() - started < 30
    assert run.returncode == 1 and TRACEBACK not in run.stderr, run.stderr
    assert "has not finished after 2 s" in errors(run)[0] and "'max_wait_seconds' = 2" in errors(run)[0]


# --------------------------------------------------------------------------- 8. reserved characters in ids


def catalog_without_batches(tmp_path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """A discovered catalog without discovery's batches: the sync's only candidate is STATE's.

    (Without a catalog, the run's own discovery batch, made seconds ago, is used first.)
    """
    folder = tmp_path / "discovery"
    folder.mkdir(exist_ok=True)
    return select_all(without_batches(discover(folder, config)))


def test_a_batch_id_from_state_is_quoted_in_urls(fixture_sandbox, tmp_path):
    hostile = "a/b?c#d"
    entry = {"id": hostile, "kind": "activity", "created_at": time.time(), "activity_id": QP}
    state = {"bookmarks": {"quick_poll": {"alida_batch": entry}}}
    config = fixture_sandbox.config(activity_ids=[QP])
    run = run_tap(tmp_path, config, state=state, catalog=catalog_without_batches(tmp_path, config))
    assert run.returncode == 0, run.stderr[-3000:]
    paths = [r["path"] for r in api_requests(fixture_sandbox)]
    assert "/v2/applications/sandbox/data/activities/responses/batch/a%2Fb%3Fc%23d" in paths
    assert not [p for p in paths if p.endswith("/batch/a")]  # the id was not cut at '/'
    assert "no longer exists" in run.stderr
    assert [r["response_id"] for r in run.records["quick_poll"]] == ["resp-001", "resp-002"]


# --------------------------------------------------------------------------- 9. a batch of another activity


@pytest.fixture
def product_feedback_batch(fixture_sandbox, tmp_path) -> str:
    """The id of a succeeded batch of Product Feedback on the sandbox."""
    first = tmp_path / "first"
    first.mkdir()
    run = run_tap(first, fixture_sandbox.config(activity_ids=[PF]))
    assert run.returncode == 0, run.stderr[-3000:]
    return run.records["product_feedback_q4"][0]["batch_id"]


@pytest.mark.parametrize(
    ("recorded_activity", "message"),
    [
        (PF, f"it belongs to activity {PF}"),  # STATE says so
        (QP, f"Alida says it exports activity {PF}"),  # STATE lies; the status's datasetId says so
    ],
)
def test_a_batch_of_another_activity_is_not_reused(
    fixture_sandbox, tmp_path, product_feedback_batch, recorded_activity, message
):
    entry = {"id": product_feedback_batch, "kind": "activity", "created_at": time.time()}
    entry["activity_id"] = recorded_activity
    state = {"bookmarks": {"quick_poll": {"alida_batch": entry}}}
    config = fixture_sandbox.config(activity_ids=[QP])
    run = run_tap(tmp_path, config, state=state, catalog=catalog_without_batches(tmp_path, config))
    assert run.returncode == 0, run.stderr[-3000:]
    assert TRACEBACK not in run.stderr
    info = [line for line in run.stderr.splitlines() if "| INFO" in line and message in line]
    assert len(info) == 1 and product_feedback_batch in info[0], run.stderr
    rows = run.records["quick_poll"]
    assert [(r["activity_id"], r["response_id"]) for r in rows] == [(QP, "resp-001"), (QP, "resp-002")]
    assert {r["batch_id"] for r in rows} != {product_feedback_batch}
    assert {r["activity_id"] for r in run.records["activity_answers"]} == {QP}
    assert "alida_batch" not in str(run.state)


def test_a_batch_recorded_without_its_activity_is_not_reused(
    fixture_sandbox, tmp_path, product_feedback_batch
):
    entry = {"id": product_feedback_batch, "kind": "activity", "created_at": time.time()}
    state = {"bookmarks": {"quick_poll": {"alida_batch": entry}}}
    run = run_tap(tmp_path, fixture_sandbox.config(activity_ids=[QP]), state=state)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "STATE does not record which activity it belongs to" in run.stderr
    assert [r["activity_id"] for r in run.records["quick_poll"]] == [QP, QP]


def test_state_records_the_activity_of_a_batch(fixture_sandbox, tmp_path):
    run = run_tap(tmp_path, fixture_sandbox.config(activity_ids=[QP]))
    assert run.returncode == 0, run.stderr[-3000:]
    bookmarks = [s.get("bookmarks", {}).get("quick_poll", {}) for s in run.states]
    recorded = [b["alida_batch"] for b in bookmarks if "alida_batch" in b]
    assert recorded and all(e["activity_id"] == QP and e["kind"] == "activity" for e in recorded)
