"""Answer shapes Alida may use where its docs are silent (docs/api.md §12b), end to end.

Each case runs the real tap against a sandbox serving one ``--quirks`` variant
(or several, with short-lived storage links and dropped downloads) and compares
the records with a clean run of a sandbox with the same seed: a tolerated
variant changes nothing in the output. ``cancelled_jobs`` must instead fail at
once, naming the word and the batch, without waiting for the wait limits.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from typing import Any

import pytest
from harness import Sandbox, TapRun, discover, executable, run_tap, select_all

DATA = ("--seed", "11", "--activities", "2", "--members", "40", "--responses", "150", "--fields", "10")
VOLATILE = {"batch_id", "last_sync_date", "last_exported_at", "last_export_records"}  # about earlier runs
EXPORTS = 3  # two activities and the member profiles: one batch each on a clean run


def record_sets(run: TapRun) -> dict[str, Counter[str]]:
    """Every stream's records without volatile fields, as a multiset (duplicates count)."""
    return {
        stream: Counter(
            json.dumps({k: v for k, v in row.items() if k not in VOLATILE}, sort_keys=True) for row in rows
        )
        for stream, rows in run.records.items()
    }


# The SDK logs this generic line before the tap's own ERROR line when a stream fails.
SDK_GENERIC_ERROR = "An unhandled error occurred while syncing"


def error_lines(run: TapRun) -> list[str]:
    """ERROR lines that say something (the SDK's generic line left out)."""
    return [
        line
        for line in run.stderr.splitlines()
        if (" ERROR " in line or "error:" in line) and SDK_GENERIC_ERROR not in line
    ]


def creates(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests() if r["method"] == "POST" and r["path"].endswith("/batch")]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Catalog and records of a run against the same community without quirks."""
    sandbox = Sandbox(*DATA)
    tmp = tmp_path_factory.mktemp("clean")
    catalog = select_all(discover(tmp, sandbox.config()))
    run = run_tap(tmp, sandbox.config(), catalog=catalog)
    sandbox.stop()
    assert run.returncode == 0, run.stderr[-3000:]
    records = record_sets(run)
    assert len(records) >= 5 and all(records.values())
    return catalog, records


def sync(
    start_sandbox: Any, tmp_path: Any, clean: Any, *args: str, env: dict[str, str] | None = None
) -> tuple[Sandbox, TapRun]:
    """A sandbox of the clean run's community started with ``args``, and a sync of the clean catalog."""
    sandbox = start_sandbox(*DATA, *args)
    run = run_tap(tmp_path, sandbox.config(), catalog=clean[0], env=env)
    return sandbox, run


def test_capitalised_status(start_sandbox, tmp_path, clean):
    sandbox, run = sync(
        start_sandbox, tmp_path, clean, "--quirks", "capitalised_status", "--job-delay", "0.6"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert record_sets(run) == clean[1]
    assert "is Running" in run.stderr  # the word as Alida wrote it, seen and waited on
    assert sandbox.get("/_sandbox/faults")["fired"] == {}


def test_lowercase_errormessage_is_read(start_sandbox, tmp_path, clean):
    _, run = sync(
        start_sandbox,
        tmp_path,
        clean,
        "--quirks",
        "capitalised_status,lowercase_errormessage",
        "--faults",
        "fail_job=1",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert record_sets(run) == clean[1]
    retried = [line for line in run.stderr.splitlines() if "creating a new batch" in line]
    assert len(retried) == 1, run.stderr[-3000:]
    assert "'Failed'" in retried[0] and "the data service timed out" in retried[0]
    assert "no error message given" not in run.stderr


def test_empty_create_is_avoided_by_asking_for_the_resource(start_sandbox, tmp_path, clean):
    sandbox, run = sync(start_sandbox, tmp_path, clean, "--quirks", "empty_create")
    assert run.returncode == 0, run.stderr[-3000:]
    assert record_sets(run) == clean[1]
    posted = creates(sandbox)
    assert len(posted) == EXPORTS  # no create was repeated
    assert all(r["return_resource"] == "true" and r["status"] == 201 for r in posted)
    assert "repeating it once" not in run.stderr


def test_json_link_answer_is_followed_without_credentials(start_sandbox, tmp_path, clean):
    sandbox, run = sync(start_sandbox, tmp_path, clean, "--quirks", "json_link")
    assert run.returncode == 0, run.stderr[-3000:]
    assert record_sets(run) == clean[1]
    log = sandbox.requests()
    files = [r for r in log if "/files/" in r["path"]]
    storage = [r for r in log if r["path"].startswith("/storage/")]
    assert len(files) == EXPORTS and all(r["status"] == 200 for r in files)
    assert len(storage) == EXPORTS and all(r["status"] == 200 for r in storage)
    assert not [r for r in storage if r["authorization"] or r["x_api_key"]]
    assert "sig=" not in run.stderr and "expires=" not in run.stderr


@pytest.mark.parametrize("status", [200, 201, 202])
@pytest.mark.parametrize("body", ["empty", "json"])
def test_location_on_a_non_redirect_files_answer_is_followed(start_sandbox, tmp_path, clean, status, body):
    """Alida's member-export docs: take the link from the answer's Location header.
    Before: discovery failed with "The export file … is empty (0 bytes)"."""
    quirks = f"location_{status}" + (",location_json_body" if body == "json" else "")
    sandbox, run = sync(start_sandbox, tmp_path, clean, "--quirks", quirks)
    assert run.returncode == 0, run.stderr[-3000:]
    assert record_sets(run) == clean[1]
    discovered = discover(tmp_path, sandbox.config())
    schemas = {s["tap_stream_id"]: s["schema"] for s in discovered["streams"]}
    assert schemas == {s["tap_stream_id"]: s["schema"] for s in clean[0]["streams"]}
    log = sandbox.requests()
    files = [r for r in log if "/files/" in r["path"]]
    storage = [r for r in log if r["path"].startswith("/storage/")]
    assert len(files) >= EXPORTS and {r["status"] for r in files} == {status}
    assert len(storage) == len(files) and all(r["status"] == 200 for r in storage)
    assert not [r for r in storage if r["authorization"] or r["x_api_key"]]
    assert "sig=" not in run.stderr and "expires=" not in run.stderr


def schemas_of(catalog: dict[str, Any]) -> dict[str, Any]:
    return {s["tap_stream_id"]: s["schema"] for s in catalog["streams"]}


@pytest.mark.parametrize("quirks", ["paging_empty_links", "paging_no_meta", "paging_bare"])
def test_every_page_is_read_whatever_the_paging_signals(start_sandbox, tmp_path, clean, quirks):
    """Two items a page (the server caps the tap's limit=1000): activities and member
    variables span pages. Before: ``links: []`` ended the paging after page one."""
    sandbox = start_sandbox(*DATA, "--page-max", "2", "--quirks", quirks)
    run = run_tap(tmp_path, sandbox.config(), "--discover")
    assert run.returncode == 0, run.stderr[-3000:]
    assert schemas_of(run.messages[0]) == schemas_of(clean[0])
    pages = [r for r in sandbox.requests() if r["path"].endswith("/membervariables")]
    assert len(pages) >= 3  # more than two pages of member variables, each read once
    assert "WARNING" not in run.stderr, run.stderr[-3000:]


def test_a_server_that_repeats_its_first_page_is_stopped_with_a_warning(start_sandbox, tmp_path, clean):
    sandbox = start_sandbox(*DATA, "--page-max", "2", "--quirks", "paging_empty_links,paging_repeat")
    run = run_tap(tmp_path, sandbox.config(), "--discover")
    assert run.returncode == 0, run.stderr[-3000:]
    warned = [line for line in run.stderr.splitlines() if "list the member variables" in line]
    assert len(warned) == 1 and " WARNING " in warned[0], run.stderr[-3000:]
    said = re.search(r"the API says (\d+) items exist, but it served a page again after 2 of them", warned[0])
    assert said and int(said.group(1)) > 4, warned[0]
    pages = [r for r in sandbox.requests() if r["path"].endswith("/membervariables")]
    assert len(pages) == 2  # page one, then the same page again: stopped


def test_files_with_a_byte_order_mark_are_read(start_sandbox, tmp_path, clean):
    """RFC 8259 §8.1. Before: discovery failed with "The export file … is not valid JSON"."""
    sandbox, run = sync(start_sandbox, tmp_path, clean, "--quirks", "bom_files")
    assert run.returncode == 0, run.stderr[-3000:]
    assert record_sets(run) == clean[1]
    assert schemas_of(discover(tmp_path, sandbox.config())) == schemas_of(clean[0])


def test_late_status_404_is_waited_out(start_sandbox, tmp_path, clean):
    # --job-delay: without it a create can already answer "succeeded" (its file built in
    # time), and that batch's status is never read, so not every export shows a 200.
    sandbox, run = sync(start_sandbox, tmp_path, clean, "--quirks", "late_status", "--job-delay", "0.5")
    assert run.returncode == 0, run.stderr[-3000:]
    assert record_sets(run) == clean[1]
    assert "is not visible yet (HTTP 404" in run.stderr
    statuses = [r["status"] for r in sandbox.requests() if "/batch/" in r["path"]]
    assert 404 in statuses and statuses.count(200) >= EXPORTS
    assert len(creates(sandbox)) == EXPORTS


def test_unknown_status_word_warns_once_and_is_waited_on(start_sandbox, tmp_path, clean):
    _, run = sync(start_sandbox, tmp_path, clean, "--quirks", "unknown_status", "--job-delay", "1.5")
    assert run.returncode == 0, run.stderr[-3000:]
    assert record_sets(run) == clean[1]
    warnings = [line for line in run.stderr.splitlines() if "'Exporting'" in line and "WARNING" in line]
    assert len(warnings) == 1, run.stderr[-3000:]
    assert "does not know" in warnings[0]


def test_unknown_status_word_is_named_when_the_wait_runs_out(start_sandbox, tmp_path, clean):
    catalog = select_all(json.loads(json.dumps(clean[0])), only={"member_profiles"})
    # Running (shown as Exporting) from 2.3 s, succeeded at 7 s; the tap gives up at 4 s.
    sandbox = start_sandbox(*DATA, "--quirks", "unknown_status", "--job-delay", "7")
    config = sandbox.config(max_wait_to_start_seconds=4, max_wait_seconds=600)
    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode != 0
    first = error_lines(run)[0]
    assert "is still Exporting (a status word the tap does not know)" in first
    assert "member profiles" in first and "'max_wait_to_start_seconds' = 4" in first


def test_cancelled_jobs_fail_at_once_naming_the_word_and_batch(start_sandbox, tmp_path, clean):
    sandbox = start_sandbox(*DATA, "--quirks", "capitalised_status,cancelled_jobs", "--job-delay", "0.3")
    config = sandbox.config(max_wait_to_start_seconds=600, max_wait_seconds=600)
    started = time.monotonic()
    run = run_tap(tmp_path, config, catalog=clean[0])
    elapsed = time.monotonic() - started
    assert run.returncode != 0
    assert elapsed < 30, f"took {elapsed:.0f} s: the tap waited instead of failing"
    first = error_lines(run)[0]
    assert "as 'Cancelled'" in first and ", batch " in first, run.stderr[-3000:]
    assert "activity '" in first or "member profiles" in first
    assert "Traceback" not in run.stderr
    per_export = Counter(r["path"] for r in creates(sandbox))
    assert per_export and max(per_export.values()) == 1  # a cancelled batch is not created again


def test_all_tolerated_quirks_with_short_links_and_drops(start_sandbox, tmp_path, clean):
    quirks = "capitalised_status,lowercase_errormessage,empty_create,json_link,late_status,unknown_status"
    sandbox, run = sync(
        start_sandbox,
        tmp_path,
        clean,
        "--quirks",
        quirks,
        "--link-ttl",
        "2",
        "--job-delay",
        "1",
        "--faults",
        "drop_download=0.5,fail_job=1",
        env={"TAP_ALIDA_LOGLEVEL": "DEBUG"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    issued = sandbox.get("/_sandbox/issued")
    assert issued["signatures"] and not [s for s in issued["signatures"] if s in run.stderr]
    assert "sig=" not in run.stderr and "DEBUG" in run.stderr
    assert record_sets(run) == clean[1]
    fired = sandbox.get("/_sandbox/faults")["fired"]
    assert fired.get("drop_download") and fired.get("fail_job") == 1
    resumed = [r for r in sandbox.requests() if r["path"].startswith("/storage/") and r["range"]]
    assert resumed and all(r["status"] == 206 for r in resumed)
    # Discovery reads only each file's definition, through the same link shapes.
    discovered = discover(tmp_path, sandbox.config())
    schemas = {s["tap_stream_id"]: s["schema"] for s in discovered["streams"]}
    assert schemas == {s["tap_stream_id"]: s["schema"] for s in clean[0]["streams"]}


def test_short_lived_redirect_links_with_drops_and_expiry(start_sandbox, tmp_path, clean):
    sandbox, run = sync(
        start_sandbox,
        tmp_path,
        clean,
        "--link-ttl",
        "2",
        "--job-delay",
        "1",
        "--faults",
        "drop_download=0.5,expire_link=0.3",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert record_sets(run) == clean[1]
    fired = sandbox.get("/_sandbox/faults")["fired"]
    assert fired.get("drop_download") and fired.get("expire_link")
    assert "fetching a fresh one" in run.stderr


def test_links_that_never_work_give_up_naming_the_bound(start_sandbox, tmp_path, clean):
    catalog = select_all(json.loads(json.dumps(clean[0])), only={"member_profiles"})
    sandbox = start_sandbox(*DATA, "--quirks", "json_link", "--link-ttl=-5")
    run = run_tap(tmp_path, sandbox.config(), catalog=catalog)
    assert run.returncode != 0
    first = error_lines(run)[0]
    assert "3 fresh links in a row did not let the download advance past byte 0" in first
    assert "MAX_FRESH_LINKS_WITHOUT_PROGRESS = 3" in first and "member profiles" in first
    refused = [r for r in sandbox.requests() if r["path"].startswith("/storage/")]
    assert len(refused) == 4 and all(r["status"] == 403 for r in refused)
    assert "sig=" not in run.stderr


def test_unknown_quirk_is_an_argparse_error():
    done = subprocess.run(
        [executable("tap-alida-sandbox"), "--quirks", "json_link,jsonlink"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "argument --quirks: unknown quirk 'jsonlink'; known: capitalised_status" in done.stderr


def test_recorded_batch_that_404s_on_resume_is_created_again(start_sandbox, tmp_path, clean):
    """A batch a crashed run recorded, unknown to Alida now: one 404, an INFO line, a new batch."""
    catalog = select_all(json.loads(json.dumps(clean[0])), only={"member_profiles"})
    sandbox = start_sandbox(*DATA)
    gone = "0b5e6f7a-1111-4222-8333-944455556666"
    recorded = {"id": gone, "kind": "members", "created_at": time.time() - 60, "since": None}
    state = {"bookmarks": {"member_profiles": {"alida_batch": recorded}}}
    run = run_tap(tmp_path, sandbox.config(), catalog=catalog, state=state)
    assert run.returncode == 0, run.stderr[-3000:]
    assert record_sets(run) == {"member_profiles": clean[1]["member_profiles"]}
    info = [line for line in run.stderr.splitlines() if gone in line and "no longer exists" in line]
    assert len(info) == 1 and " INFO " in info[0]
    polled = [r["status"] for r in sandbox.requests() if r["path"].endswith(f"/batch/{gone}")]
    assert polled == [404]  # a recorded batch gets no grace period: it is old, not new
    assert len(creates(sandbox)) == 1
    assert "not visible yet" not in run.stderr
