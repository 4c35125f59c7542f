"""A tenant that caps exports in progress: the run creates fewer at once and completes.

The sandbox answers a create with 429 (Retry-After 1 s) while
``--max-running-exports`` exports are pending or running. Retried one by one,
the refused creates used up ``max_request_attempts`` and failed the run; now a
429 sets how many exports the run keeps in progress, and refused creates wait
for a free place.
"""

from __future__ import annotations

from harness import FIXED_STREAM_KEYS, run_tap

CREATES = ("/responses/batch", "/profiles/batch")


def test_a_cap_on_exports_in_progress_is_learnt_and_every_survey_arrives(start_sandbox, tmp_path):
    sandbox = start_sandbox(
        "--activities", "10", "--members", "5", "--responses", "5",
        "--job-delay", "2", "--max-running-exports", "3", "--retry-after", "1",
    )  # fmt: skip
    run = run_tap(tmp_path, sandbox.config())  # discovery and sync in one process
    assert run.returncode == 0, run.stderr[-3000:]

    activity_streams = [s for s in run.records if s not in FIXED_STREAM_KEYS]
    assert len(activity_streams) == 10
    assert all(len(run.records[s]) == 5 for s in activity_streams)
    assert len(run.records["member_profiles"]) == 5

    creates = [r for r in sandbox.requests() if r["method"] == "POST" and r["path"].endswith(CREATES)]
    accepted = [r for r in creates if r["status"] in (200, 201, 202)]
    refused = [r for r in creates if r["status"] == 429]
    assert len(accepted) == 10 + 1  # each survey once (discovery's batch is re-used), members
    assert refused, "the cap was never reached: the test checks nothing"
    # The 7 creates sent before the first 429, then about one probe per 3 accepted:
    # not one knock per second per waiting create.
    assert len(refused) <= 7 + 5, len(refused)
    assert run.stderr.count("Alida refused a new export with HTTP 429 while ") == 1  # one WARNING
    assert "Could not create the batch" not in run.stderr
