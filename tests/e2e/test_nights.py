"""Nightly runs export only what can have changed: four nights on one sandbox.

Counts come from the sandbox's request log (batch POSTs per activity), not from
the tap's own logs. The generated community has 6 surveys: 0, 2 and 4 open (0 and
4 with a scheduled close in the future: `--anomalies`), 1, 3 and 5 closed in the past.
"""

from __future__ import annotations

import time
from typing import Any

from harness import FIXED_STREAM_KEYS, discover, run_tap, select_all, without_batches

ACTIVITY_CREATE = "/responses/batch"


def batch_posts(sandbox: Any, after: int) -> list[str]:
    """Activity ids of the activity batches created after request ``after``."""
    return sorted(
        r["path"].split("/activities/")[1].split("/")[0]
        for r in sandbox.requests()
        if r["seq"] > after and r["method"] == "POST" and r["path"].endswith(ACTIVITY_CREATE)
    )


def last_seq(sandbox: Any) -> int:
    return max((r["seq"] for r in sandbox.requests()), default=-1)  # the log may lag a request


def surveys(sandbox: Any) -> list[dict[str, Any]]:
    return [a for a in sandbox.truth()["activities"] if a["activityType"] == "Survey"]


def activation_streams(run: Any) -> set[str]:
    return {m["stream"] for m in run.messages if m["type"] == "ACTIVATE_VERSION"}


def test_four_nights(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "6", "--members", "5", "--responses", "8", "--anomalies")
    config = sandbox.config()
    listed = surveys(sandbox)
    ids = [a["id"] for a in listed]
    open_ids, closed_ids = ids[0::2], ids[1::2]

    # Night 1: empty state, empty cache: everything is exported in discovery, and again by
    # the sync (without STATE nothing shows discovery's batches are not older than what an
    # earlier sync loaded: tests/e2e/test_reuse_rules.py).
    seq = last_seq(sandbox)
    catalog = select_all(discover(tmp_path, config))
    assert batch_posts(sandbox, seq) == sorted(ids)
    streams = {s["tap_stream_id"] for s in catalog["streams"]}
    seq = last_seq(sandbox)
    night1 = run_tap(tmp_path, config, catalog=catalog)
    assert night1.returncode == 0, night1.stderr[-3000:]
    assert batch_posts(sandbox, seq) == sorted(ids)
    assert "This run exports 6 activities and skips 0 closed ones." in night1.stderr

    # Night 2: discovery exports only the open surveys (closed ones' definitions are
    # cached); the sync too; closed streams emit no RECORD and no ACTIVATE_VERSION.
    seq = last_seq(sandbox)
    catalog2 = select_all(discover(tmp_path, config))
    assert {s["tap_stream_id"] for s in catalog2["streams"]} == streams
    assert without_batches(catalog2) == without_batches(catalog)  # the same schemas, from the cache
    assert batch_posts(sandbox, seq) == sorted(open_ids)
    seq = last_seq(sandbox)
    night2 = run_tap(tmp_path, config, catalog=catalog, state=night1.state)
    assert night2.returncode == 0, night2.stderr[-3000:]
    assert batch_posts(sandbox, seq) == sorted(open_ids)
    assert "This run exports 3 activities and skips 3 closed ones (oldest export " in night2.stderr
    stream_of = {
        rows[0]["activity_id"]: stream
        for stream, rows in night1.records.items()
        if stream not in FIXED_STREAM_KEYS and rows
    }
    closed_streams = {stream_of[i] for i in closed_ids}
    assert len(closed_streams) == 3
    for stream in closed_streams:
        assert night2.records.get(stream, []) == []
        assert night2.state["bookmarks"][stream] == night1.state["bookmarks"][stream]  # kept
    assert not closed_streams & activation_streams(night2)
    # The streams of every survey activate this run's version: the skipped surveys' rows
    # carry a later one (valid until their refresh), so only stale rows are deleted.
    assert {"activity_answers", "activity_fields", "activities"} <= activation_streams(night2)
    activated = next(m["version"] for m in night2.messages if m["type"] == "ACTIVATE_VERSION")
    loaded = {
        (m["stream"], m["record"]["activity_id"]): m["version"]
        for m in night1.messages
        if m["type"] == "RECORD" and m["stream"] in ("activity_answers", "activity_fields")
    }
    for (stream, activity_id), version in loaded.items():
        assert (version > activated) == (activity_id in closed_ids), (stream, activity_id)
    assert {r["activity_id"] for r in night2.records["activity_answers"]} == set(open_ids)
    assert {r["activity_id"] for r in night2.records["activity_fields"]} == set(open_ids)

    # Between nights: one open survey closes, a closed one re-opens, a new one appears.
    just_closed, reopened = open_ids[1], closed_ids[0]
    sandbox.post(f"/_sandbox/activities/{just_closed}/close", {})
    sandbox.post(f"/_sandbox/activities/{reopened}/reopen", {})
    new = sandbox.post("/_sandbox/activities", {"name": "Winter Pulse", "activityType": "Survey"})
    # Alida's times have whole seconds: an export created in the second the survey closed
    # cannot be told to be later, so it would (rightly) be exported again on night 4.
    time.sleep(1.1)

    # Night 3: night 1's catalog, night 2's state: the open ones, the just-closed, the
    # re-opened and the new one are exported; the new one is named in a WARNING.
    seq = last_seq(sandbox)
    night3 = run_tap(tmp_path, config, catalog=catalog, state=night2.state)
    assert night3.returncode == 0, night3.stderr[-3000:]
    expected = sorted([*open_ids, reopened, new["id"]])
    assert batch_posts(sandbox, seq) == expected
    warning = [line for line in night3.stderr.splitlines() if "WARNING" in line and new["id"] in line]
    assert len(warning) == 1 and "'Winter Pulse'" in warning[0] and "--refresh-catalog" in warning[0]
    assert new["id"] in {r["activity_id"] for r in night3.records["activity_answers"]}
    listed3 = {r["activity_id"]: r for r in night3.records["activities"]}
    assert listed3[new["id"]]["name"] == "Winter Pulse" and listed3[new["id"]]["in_scope"] is True
    assert listed3[just_closed]["status"] == "closed" and listed3[reopened]["status"] == "open"

    # Night 4: the just-closed survey was exported after it closed: now it is skipped.
    seq = last_seq(sandbox)
    night4 = run_tap(tmp_path, config, catalog=catalog, state=night3.state)
    assert night4.returncode == 0, night4.stderr[-3000:]
    assert batch_posts(sandbox, seq) == sorted([open_ids[0], open_ids[2], reopened, new["id"]])


def test_refresh_days_and_export_setting_export_closed_surveys_again(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "2", "--members", "5", "--responses", "4")
    config = sandbox.config()
    catalog = select_all(discover(tmp_path, config))
    first = run_tap(tmp_path, config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    closed = surveys(sandbox)[1]["id"]
    seq = last_seq(sandbox)
    second = run_tap(tmp_path, config, catalog=catalog, state=first.state)
    assert closed not in batch_posts(sandbox, seq)  # skipped (default 30 days)
    time.sleep(1.2)
    seq = last_seq(sandbox)
    tiny = sandbox.config(closed_activity_refresh_days=0.00001)  # < 1 s
    third = run_tap(tmp_path, tiny, catalog=catalog, state=second.state)
    assert third.returncode == 0, third.stderr[-3000:]
    assert closed in batch_posts(sandbox, seq)
    assert "closed_activity_refresh_days" in third.stderr
    seq = last_seq(sandbox)
    fourth = run_tap(tmp_path, sandbox.config(closed_activities="export"), catalog=catalog, state=third.state)
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert closed in batch_posts(sandbox, seq)
