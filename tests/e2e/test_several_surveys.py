"""Streams that hold every survey's rows (activity_answers, activity_fields) while closed surveys
are skipped (issue 21, cases 1 and 5). Each test fails on the tap before row versions: deleted
responses of an open survey stayed live in activity_answers whenever a closed survey was
skipped, and activity_fields exported skipped closed surveys in a fresh container.

The warehouse is ``warehouse_model.Warehouse`` (an upserting target honouring
ACTIVATE_VERSION); the reference is a fresh full load of the same sandbox.
"""

from __future__ import annotations

from typing import Any

from harness import discover, run_tap, select_all
from test_nights import batch_posts, last_seq, surveys
from warehouse_model import Warehouse, differences


def fresh_load(tmp_path: Any, config: dict[str, Any]) -> Warehouse:
    folder = tmp_path / "fresh"
    folder.mkdir(exist_ok=True)
    catalog = select_all(discover(folder, config))
    run = run_tap(folder, config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    return Warehouse().load(run.messages)


def test_deleted_responses_of_an_open_survey_leave_activity_answers_while_a_closed_one_is_skipped(
    start_sandbox, tmp_path
):
    sandbox = start_sandbox("--seed", "3", "--activities", "3", "--members", "20", "--responses", "15")
    config = sandbox.config()
    catalog = select_all(discover(tmp_path, config))
    warehouse = Warehouse()
    first = run_tap(tmp_path, config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    warehouse.load(first.messages)

    open_survey = next(a["id"] for a in surveys(sandbox) if a["status"] == "open")
    assert sandbox.post(f"/_sandbox/activities/{open_survey}/responses/delete", {"count": 3})["removed"] == 3
    second = run_tap(tmp_path, config, catalog=catalog, state=first.state)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "skips 1 closed ones" in second.stderr  # the closed survey was skipped…
    warehouse.load(second.messages)
    assert differences(warehouse, fresh_load(tmp_path, config)) == {}  # …and nothing differs
    assert second.state["bookmarks"]["activity_answers"]["alida_last_exports"]  # marks kept

    # A third night with nothing changed: still equal, and the closed survey still skipped.
    third = run_tap(tmp_path, config, catalog=catalog, state=second.state)
    assert third.returncode == 0, third.stderr[-3000:]
    warehouse.load(third.messages)
    assert differences(warehouse, fresh_load(tmp_path, config)) == {}
    assert "skips 1 closed ones" in third.stderr


def test_a_fresh_container_exports_no_skipped_closed_survey(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "5", "--members", "5", "--responses", "4")
    config = sandbox.config()
    catalog = select_all(discover(tmp_path, config))
    first = run_tap(tmp_path, config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    opened = sorted(a["id"] for a in surveys(sandbox) if a["status"] == "open")
    assert len(opened) == 3

    # Night 2 in a fresh container: an empty cache_dir, STATE from the orchestrator.
    seq = last_seq(sandbox)
    night = run_tap(
        tmp_path, config, catalog=catalog, state=first.state, env={"XDG_CACHE_HOME": str(tmp_path / "new")}
    )
    assert night.returncode == 0, night.stderr[-3000:]
    assert batch_posts(sandbox, seq) == opened  # one export per open survey, none for closed ones
    assert "This run exports 3 activities and skips 2 closed ones" in night.stderr
    fields = {r["activity_id"] for r in night.records["activity_fields"]}
    assert fields == set(opened)  # the closed surveys' rows stay as loaded (still valid)


def test_without_activate_version_closed_surveys_are_still_skipped(start_sandbox, tmp_path):
    """Rows loaded without a table version (emit_activate_version_messages: false, or BATCH files)
    need none to be skipped: nothing activates a version that would delete them (review of issue
    21: the first row-version rule exported every closed survey again every night)."""
    sandbox = start_sandbox("--activities", "3", "--members", "5", "--responses", "4")
    config = sandbox.config(emit_activate_version_messages=False)
    catalog = select_all(discover(tmp_path, config), only={"activity_answers", "activity_fields"})
    first = run_tap(tmp_path, config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    seq = last_seq(sandbox)
    second = run_tap(tmp_path, config, catalog=catalog, state=first.state)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "This run exports 2 activities and skips 1 closed ones" in second.stderr
    assert len(batch_posts(sandbox, seq)) == 2
    assert not [m for m in second.messages if m["type"] == "ACTIVATE_VERSION"]
