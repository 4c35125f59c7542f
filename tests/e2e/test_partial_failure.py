"""One stuck export does not stop the others: they complete and keep their STATE, then the run
fails naming each stream that failed; ``fail_fast: true`` stops at the first failure."""

from __future__ import annotations

from harness import FIXED_STREAM_KEYS, FIXTURES, discover, run_tap, select_all

TRACEBACK = "Traceback (most recent call last)"


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


def test_a_stuck_export_fails_its_streams_only(start_sandbox, tmp_path):
    good = start_sandbox("--fixtures", str(FIXTURES))
    catalog = select_all(discover(tmp_path, good.config()))
    truth = {a["name"]: a.get("records") for a in good.truth()["activities"]}
    sandbox = start_sandbox("--fixtures", str(FIXTURES), "--faults", "stuck_job=1")  # the first batch
    run = run_tap(tmp_path, sandbox.config(max_wait_to_start_seconds=1), catalog=catalog)
    assert run.returncode == 1
    assert TRACEBACK not in run.stderr
    lines = errors(run.stderr)
    assert "is still pending after" in lines[0] and "'max_wait_to_start_seconds' = 1" in lines[0]
    assert "streams failed (the others completed and kept their STATE)" in lines[-1]
    stuck = next(
        label for label in ("'Quick Poll'", "'Product Feedback", "member profiles") if label in lines[0]
    )
    streams = {
        "'Quick Poll'": "quick_poll",
        "'Product Feedback": "product_feedback_q4",
        "member profiles": "member_profiles",
    }
    # every stream that does not read the stuck export is complete
    for label, stream in streams.items():
        if label != stuck:
            name = "Quick Poll" if "Quick" in label else "Product Feedback — Q4 ✓"
            if stream != "member_profiles":
                assert len(run.records[stream]) == truth[name]
                assert run.state["bookmarks"][stream]["alida_last_export"]["records"] == truth[name]
    assert streams[stuck] in lines[-1]
    if stuck != "member profiles":
        assert run.state["bookmarks"]["member_profile_values"]["replication_key_value"]
        assert len(run.records["member_profiles"]) == good.truth()["members"]["members"]
    # the rerun exports only what is missing, and completes
    rerun = run_tap(tmp_path, sandbox.config(max_wait_to_start_seconds=1), catalog=catalog, state=run.state)
    assert rerun.returncode == 0, rerun.stderr[-3000:]


def test_fail_fast_stops_at_the_first_failure(start_sandbox, tmp_path):
    good = start_sandbox("--fixtures", str(FIXTURES))
    catalog = select_all(discover(tmp_path, good.config()))
    sandbox = start_sandbox("--fixtures", str(FIXTURES), "--faults", "stuck_job=1")
    run = run_tap(tmp_path, sandbox.config(max_wait_to_start_seconds=1, fail_fast=True), catalog=catalog)
    assert run.returncode == 1
    assert TRACEBACK not in run.stderr
    lines = errors(run.stderr)
    assert "is still pending after" in lines[0]
    assert not any("streams failed" in line for line in lines)


def test_discovery_leaves_out_a_survey_whose_export_is_stuck_and_the_night_goes_on(start_sandbox, tmp_path):
    sandbox = start_sandbox(
        "--activities", "3", "--members", "5", "--responses", "4", "--faults", "stuck_job=1"
    )
    config = sandbox.config(max_wait_to_start_seconds=2)
    discovery = run_tap(tmp_path, config, "--discover", timeout=120)
    assert discovery.returncode == 0, discovery.stderr[-3000:]
    catalog = select_all(discovery.messages[0])
    listed = [s["tap_stream_id"] for s in catalog["streams"] if s["tap_stream_id"] not in FIXED_STREAM_KEYS]
    assert len(listed) == 2  # the survey whose export was stuck is left out
    errors = [line for line in discovery.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "is left out of the catalog (discover again later)" in errors[0]
    assert "Traceback" not in discovery.stderr

    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "is in scope but the catalog has no stream for it" in run.stderr
    surveys = {a["id"] for a in sandbox.truth()["activities"] if a["activityType"] == "Survey"}
    assert {r["activity_id"] for r in run.records["activity_answers"]} == surveys  # its values still arrive
