"""Re-used batches never take the warehouse back to older rows (issue 21, cases 4 and 7).

STATE is the one authority on what was loaded: a batch discovery made (carried in the
catalog) or a batch a crashed run left in STATE is loaded only when STATE shows that no
stream reading the survey has loaded a newer export of it. Each test fails on the tap
before this rule (the old rows came back).
"""

from __future__ import annotations

import time
from typing import Any

from harness import discover, run_tap, select_all


def survey_stream(catalog: dict[str, Any]) -> tuple[str, str]:
    """(stream, activity id) of the catalog's first activity stream."""
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            activity_id = entry["metadata"].get("alida-activity-id") if entry["breadcrumb"] == [] else None
            if activity_id:
                return stream["tap_stream_id"], activity_id
    raise AssertionError("no activity stream")


def test_a_catalog_used_again_without_state_does_not_bring_deleted_rows_back(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "1", "--members", "5", "--responses", "12")
    config = sandbox.config()
    catalog = discover(tmp_path, config)
    stream, activity_id = survey_stream(catalog)
    select_all(catalog, only={stream})
    first = run_tap(tmp_path, config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(first.records[stream]) == 12
    sandbox.post(f"/_sandbox/activities/{activity_id}/responses/delete", {"count": 4})
    second = run_tap(tmp_path, config, catalog=catalog, state=first.state)
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(second.records[stream]) == 8

    # The same catalog (its discovery batch is minutes old) on another machine, without
    # STATE (`--full-refresh`): nothing proves that batch is not older than what was loaded.
    elsewhere = run_tap(tmp_path, config, catalog=catalog, env={"XDG_CACHE_HOME": str(tmp_path / "other")})
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    assert len(elsewhere.records[stream]) == 8
    assert "from discovery (status" not in elsewhere.stderr  # not re-used
    assert "has no export of it in STATE" in elsewhere.stderr


def test_a_batch_left_by_a_crash_is_not_loaded_over_a_newer_export(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "1", "--members", "5", "--responses", "30")
    config = sandbox.config()
    catalog = discover(tmp_path, config)
    stream, activity_id = survey_stream(catalog)
    select_all(catalog, only={stream, "activity_answers"})
    first = run_tap(tmp_path, config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(first.records[stream]) == 30
    # STATE as a run killed after the survey's stream finished would leave it: the survey's
    # stream has loaded batch B1, activity_answers still holds B1 in flight.
    mark = first.state["bookmarks"][stream]["alida_last_export"]
    crashed = {"bookmarks": {name: dict(entry) for name, entry in first.state["bookmarks"].items()}}
    answers = crashed["bookmarks"]["activity_answers"]
    answers.pop("alida_last_exports")
    answers["alida_batches"] = {
        activity_id: {
            "id": mark["batch_id"],
            "created_at": time.time() - 60,
            "server_created": mark["created_at"],
        }
    }
    sandbox.post(f"/_sandbox/activities/{activity_id}/responses/delete", {"count": 5})
    time.sleep(1.1)  # Alida's clock has whole seconds: B2 is created after B1

    # Run 2 with activity_answers deselected: the survey's stream loads B2 (25 rows).
    only_survey = select_all(catalog, only={stream})
    second = run_tap(tmp_path, config, catalog=only_survey, state=crashed)
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(second.records[stream]) == 25
    b2 = second.state["bookmarks"][stream]["alida_last_export"]
    assert b2["batch_id"] != mark["batch_id"]
    assert second.state["bookmarks"]["activity_answers"]["alida_batches"]  # B1 still there

    # Run 3, everything selected: B1 is older than what the survey's stream loaded; it is
    # not re-used, and the survey's rows and mark do not go back.
    everything = select_all(catalog, only={stream, "activity_answers"})
    third = run_tap(tmp_path, config, catalog=everything, state=second.state)
    assert third.returncode == 0, third.stderr[-3000:]
    assert len(third.records[stream]) == 25
    assert len({r["response_id"] for r in third.records["activity_answers"]}) == 25
    assert "a stream has loaded a newer export of it since" in third.stderr
    after = third.state["bookmarks"][stream]["alida_last_export"]
    assert after["created_at"] >= b2["created_at"] and after["batch_id"] != mark["batch_id"]
