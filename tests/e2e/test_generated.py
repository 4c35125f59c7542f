"""A generated community: every response arrives exactly once (ids checked against truth)."""

from __future__ import annotations

import hashlib

from harness import FIXED_STREAM_KEYS, discover, run_tap, select_all


def digest(ids: list[str]) -> str:
    total = 0
    for response_id in ids:
        total = (total + int.from_bytes(hashlib.sha256(response_id.encode()).digest(), "big")) % (1 << 256)
    return f"{total:064x}"


def test_every_response_once_with_gzip_and_redirects(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "4", "--members", "300", "--responses", "3000", "--fields", "20")
    config = sandbox.config()
    catalog = select_all(discover(tmp_path, config))
    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    truth = sandbox.truth()
    by_activity: dict[str, list[str]] = {}
    fields: dict[str, int] = {}
    for stream, rows in run.records.items():
        for row in rows:
            if stream not in FIXED_STREAM_KEYS:
                by_activity.setdefault(row["activity_id"], []).append(row["response_id"])
    for row in run.records["activity_fields"]:
        fields[row["activity_id"]] = fields.get(row["activity_id"], 0) + 1
    surveys = [a for a in truth["activities"] if a["activityType"] == "Survey"]
    assert len(surveys) == 4
    for activity in surveys:
        ids = by_activity[activity["id"]]
        assert len(ids) == activity["records"] == 3000
        assert len(set(ids)) == len(ids)
        assert digest(ids) == activity["response_id_digest"]
        assert fields[activity["id"]] == activity["fields"] == 20
    assert len(run.records["member_profiles"]) == truth["members"]["members"]
    assert len(run.records["member_profile_values"]) == truth["members"]["member_variables"]
    downloads = [r for r in sandbox.requests() if r["path"].startswith("/storage/")]
    assert downloads and all("gzip" in (r["accept_encoding"] or "") for r in downloads)
