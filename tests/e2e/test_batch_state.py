"""BATCH mode: STATE is never ahead of the files. A mark or bookmark reaches STATE only after
the BATCH message of the stream's last file, so a run whose files cannot be written leaves
STATE where it was (issue 21, case 3: the old tap advanced it before the last file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import discover, run_tap, select_all

TRACEBACK = "Traceback (most recent call last)"
BOOKMARK = "2026-01-01T00:00:00Z"


def batch_config(root: Path) -> dict[str, Any]:
    return {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": f"file://{root}", "prefix": "alida-"},
    }


def errors(run: Any) -> list[str]:
    return [line for line in run.stderr.splitlines() if "| ERROR" in line]


def test_member_bookmark_waits_for_the_batch_files(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "1", "--members", "10", "--responses", "2")
    sandbox.post("/_sandbox/members/touch", {"count": 4, "effectiveDate": "2026-11-21T00:00:00Z"})
    config = sandbox.config()
    catalog = select_all(discover(tmp_path, config), only={"member_profile_values"})
    state = {
        "bookmarks": {
            "member_profile_values": {"replication_key": "last_sync_date", "replication_key_value": BOOKMARK}
        }
    }
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("the batch storage root is a plain file: every file write fails")
    failed = run_tap(
        tmp_path, sandbox.config(batch_config=batch_config(blocked)), catalog=catalog, state=state
    )
    assert failed.returncode == 1
    assert TRACEBACK not in failed.stderr, failed.stderr[-3000:]
    first = errors(failed)[0]
    assert "Could not write the BATCH files of stream 'member_profiles_values'" not in first
    assert "BATCH files of stream 'member_profile_values'" in first and str(blocked) in first, first
    assert not [m for m in failed.messages if m["type"] == "BATCH"]
    assert failed.states, "the failed run wrote no STATE at all"
    for written in failed.states:  # the bookmark never moved: the 4 changes are exported again
        assert written["bookmarks"]["member_profile_values"]["replication_key_value"] == BOOKMARK

    folder = tmp_path / "batches"
    folder.mkdir()
    rerun = run_tap(tmp_path, sandbox.config(batch_config=batch_config(folder)), catalog=catalog, state=state)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    kinds = [m["type"] for m in rerun.messages]
    last_batch = max(i for i, kind in enumerate(kinds) if kind == "BATCH")
    advanced = [
        i
        for i, m in enumerate(rerun.messages)
        if m["type"] == "STATE"
        and m["value"]["bookmarks"]["member_profile_values"]["replication_key_value"] != BOOKMARK
    ]
    assert advanced and min(advanced) > last_batch  # only after the last file was announced
    assert rerun.state["bookmarks"]["member_profile_values"]["replication_key_value"] > BOOKMARK


def test_a_survey_mark_waits_for_the_batch_files(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "2", "--members", "5", "--responses", "4")
    config = sandbox.config()
    catalog = discover(tmp_path, config)
    survey = next(
        s["tap_stream_id"]
        for s in catalog["streams"]
        if any(e["breadcrumb"] == [] and e["metadata"].get("alida-activity-id") for e in s["metadata"])
    )
    select_all(catalog, only={survey, "activity_answers"})
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("plain file")
    failed = run_tap(tmp_path, sandbox.config(batch_config=batch_config(blocked)), catalog=catalog)
    assert failed.returncode == 1 and TRACEBACK not in failed.stderr, failed.stderr[-3000:]
    assert "Could not write the BATCH files of stream" in errors(failed)[0]
    for written in failed.states:  # no survey is marked loaded: the next run exports them again
        for name, entry in written["bookmarks"].items():
            assert "alida_last_export" not in entry and "alida_last_exports" not in entry, (name, entry)


def test_a_failed_stream_does_not_cost_the_last_stream_its_files(start_sandbox, tmp_path):
    """fail_fast: false in BATCH mode: the run fails after the last stream, but only once that
    stream's files are written and announced (the old tap raised inside it, before its files)."""
    sandbox = start_sandbox("--activities", "2", "--members", "5", "--responses", "4")
    config = sandbox.config()
    catalog = select_all(discover(tmp_path, config))
    drifted = next(a["id"] for a in sandbox.truth()["activities"] if a["activityType"] == "Survey")
    sandbox.post(f"/_sandbox/activities/{drifted}/drift", {"kinds": ["added"]})
    folder = tmp_path / "batches"
    folder.mkdir()
    run = run_tap(
        tmp_path,
        sandbox.config(batch_config=batch_config(folder), schema_drift="fail", fail_fast=False),
        catalog=catalog,
    )
    assert run.returncode == 1 and TRACEBACK not in run.stderr, run.stderr[-3000:]
    selected = [s["tap_stream_id"] for s in catalog["streams"]]
    announced = {m["stream"] for m in run.messages if m["type"] == "BATCH"}
    failed = {name for name in selected if name not in announced}
    assert len(failed) == 1  # only the drifted survey's stream
    assert max(selected) in announced  # the last stream synced
    assert "1 of" in errors(run)[-1] and "streams failed" in errors(run)[-1]
