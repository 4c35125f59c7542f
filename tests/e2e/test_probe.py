"""``tap-alida --probe`` against the sandbox: the report, its deviations, its exit code, its privacy.

The probe runs as the real executable. A clean sandbox must give a report with
every call and no deviation; each ``--quirks`` variant must show up as the
tolerated deviation it is; a cancelled batch, a batch that never finishes and
refused credentials are blocking (exit 1, one ERROR line). The quirky run also
checks that nothing secret (client secret, issued tokens, link signatures) and
no member value (answers, owner ids, profile values) reaches stdout or stderr.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import requests
from harness import FIXTURES, Sandbox, executable

from tap_alida.probe_shapes import MAX_PATHS, key_types, link_lifetime, render, scan_file

ACTIVITY = "9b2e61d0-7c11-4a53-8e0f-a62c0059ca52"  # a survey of the fixture community
QUIRKS = "capitalised_status,lowercase_errormessage,empty_create,json_link"
SECRET = "probe-client-secret-Zq9x"


def probe(
    tmp_path: Path, config: dict[str, Any], activity: str | None = None
) -> tuple[int, dict[str, Any] | None, str, str]:
    """Run ``tap-alida --config … --probe [activity]``: exit code, parsed report, raw stdout, stderr."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [executable("tap-alida"), "--config", str(path), "--probe", *([activity] if activity else [])],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    report = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, report, done.stdout, done.stderr


def calls(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["call"]: c for c in report["calls"]}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line or "error:" in line.lower()]


def batch_creates(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests() if r["method"] == "POST" and r["path"].endswith("/batch")]


def whats(report: dict[str, Any], severity: str) -> list[str]:
    return [d["what"] for d in report["deviations"] if d["severity"] == severity]


def test_clean_sandbox_reports_every_call_and_no_deviation(start_sandbox, tmp_path):
    # A job delay: the batches are polled (without one a create may answer 'succeeded' at once).
    sandbox = start_sandbox(
        "--seed", "5", "--activities", "1", "--members", "8", "--responses", "6", "--job-delay", "0.3"
    )
    survey = next(a["id"] for a in sandbox.truth()["activities"] if a["activityType"] == "Survey")
    code, report, _, stderr = probe(tmp_path, sandbox.config(), survey)
    assert code == 0, stderr[-3000:]
    assert report is not None and report["deviations"] == [] and report["blocking"] == 0
    found = calls(report)
    assert list(found) == [
        "token",
        "activities",
        "membervariables",
        "member export: create",
        "member export: status",
        "member export: file",
        "member export: range",
        "activity export: create",
        "activity export: status",
        "activity export: file",
        "activity export: range",
    ]
    assert found["token"]["http_statuses"] == [200]
    assert "access_token: string" in found["token"]["keys"]
    assert "Content-Type" in found["token"]["header_names"]
    assert "items[].id: string" in found["activities"]["keys"]
    assert found["member export: create"]["http_statuses"] == [202]
    assert found["member export: create"]["status_words"] == ["pending"]
    assert found["member export: status"]["status_words"][-1] == "succeeded"
    assert set(found["activity export: create"]["status_words"]) <= {"pending", "running", "succeeded"}
    for kind in ("member", "activity"):
        file = found[f"{kind} export: file"]
        assert file["http_statuses"] == [302, 200] and file["files_route"] == "redirect"
        assert file["json"] and file["complete"] and file["gzip"] and file["content_encoding"] == "gzip"
        assert 595 <= file["link_lifetime_seconds"] <= 600
        assert found[f"{kind} export: range"]["range_honoured"] is True
        assert found[f"{kind} export: status"]["create_to_done_seconds"] >= 0
    activity_file = found["activity export: file"]
    assert activity_file["top_level_keys"] == ["id", "datasetId", "definition", "records"]
    assert {"set", "double", "string"} <= set(activity_file["data_types"])
    assert "records[].ownerId: string" in activity_file["keys"]
    assert set(found["member export: file"]["top_level_keys"]) >= {"members", "lastSyncDate"}
    assert error_lines(stderr) == []


def test_the_removed_probe_activity_id_setting_still_names_the_activity_with_one_warning(
    fixture_sandbox, tmp_path
):
    code, report, _, stderr = probe(tmp_path, fixture_sandbox.config(probe_activity_id=ACTIVITY))
    assert code == 0, stderr[-3000:]
    assert report is not None and "activity export: file" in calls(report)
    warnings = [line for line in stderr.splitlines() if " WARNING " in line and "probe_activity_id" in line]
    assert len(warnings) == 1, stderr[-3000:]
    assert "'probe_activity_id' was removed" in warnings[0] and "--probe ACTIVITY_ID" in warnings[0]


def test_an_activity_id_given_to_probe_wins_over_the_removed_setting(fixture_sandbox, tmp_path):
    code, report, _, stderr = probe(tmp_path, fixture_sandbox.config(probe_activity_id="no-such"), ACTIVITY)
    assert code == 0, stderr[-3000:]
    assert report is not None and "activity export: file" in calls(report)


def test_without_an_activity_id_no_activity_is_exported(fixture_sandbox, tmp_path):
    code, report, _, stderr = probe(tmp_path, fixture_sandbox.config())
    assert code == 0, stderr[-3000:]
    assert report is not None
    assert not [name for name in calls(report) if name.startswith("activity export")]
    creates = batch_creates(fixture_sandbox)
    assert len(creates) == 1 and creates[0]["path"].endswith("/members/profiles/batch")
    body = creates[0].get("body") or {}
    since = dt.datetime.fromisoformat(body["sinceDatetime"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - since).total_seconds()) < 120  # 'now': a tiny export


def member_values() -> set[str]:
    """Every string of the fixture community that is member data: answers, owner ids, profile values."""
    found: set[str] = set()

    def strings(value: Any) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, list):
            for item in value:
                strings(item)
        elif isinstance(value, dict):
            for item in value.values():
                strings(item)

    for path in (FIXTURES / "activities").glob("*.json"):
        for record in json.loads(path.read_text())["records"]:
            strings(record)
    for member in json.loads((FIXTURES / "members.json").read_text())["members"]:
        found.add(member["memberId"])
        for variable in member["variables"]:
            strings(variable["values"])
    return {value for value in found if len(value) >= 4}


def test_quirky_sandbox_lists_tolerated_deviations_and_leaks_nothing(start_sandbox, tmp_path):
    sandbox = start_sandbox(
        "--fixtures",
        str(FIXTURES),
        "--quirks",
        QUIRKS,
        "--link-ttl",
        "30",
        "--client-secret",
        SECRET,
        "--job-delay",
        "0.6",
    )
    # Two members get a value effective tomorrow: the probe's member export (since now) holds them.
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    touched = sandbox.post(
        "/_sandbox/members/touch", {"count": 2, "effectiveDate": tomorrow, "value": "Probe-city Xyzzy"}
    )
    assert touched["changed"] == 2
    config = sandbox.config(client_secret=SECRET)
    code, report, stdout, stderr = probe(tmp_path, config, ACTIVITY)
    assert code == 0, stderr[-3000:]
    assert report is not None and report["blocking"] == 0
    tolerated = whats(report, "tolerated")
    sections = {d["what"]: d["section"] for d in report["deviations"]}
    capitalised = [w for w in tolerated if w.startswith("capitalised status words (")]
    assert capitalised and all("Pending" in w and "Succeeded" in w for w in capitalised)
    assert calls(report)["member export: status"]["status_words"][-1] == "Succeeded"
    assert "status object has 'errormessage', not 'errorMessage'" in tolerated
    empty = next(w for w in tolerated if w.startswith("create answered an empty body"))
    assert "§2" in sections[empty]
    for kind in ("member", "activity"):
        assert f"{kind} export: files route answered 200 JSON {{url}}, not a redirect" in tolerated
        file = calls(report)[f"{kind} export: file"]
        assert file["files_route"] == "JSON {url}"
        assert 28 <= file["link_lifetime_seconds"] <= 30
        lifetime = file["link_lifetime_seconds"]
        assert f"{kind} export: storage link lives {lifetime} s (under 60 s)" in tolerated
    assert calls(report)["member export: create"]["http_statuses"] == [201]
    assert calls(report)["member export: create"]["requests"] == 2  # as documented, then with the header
    member_file = calls(report)["member export: file"]
    assert member_file["data_types"] and "members[].variables[].values[].value: string" in member_file["keys"]
    # Nothing secret, nowhere.
    issued = sandbox.get("/_sandbox/issued")
    assert issued["tokens"] and issued["signatures"]
    output = stdout + stderr
    for secret in [SECRET, *issued["tokens"], *issued["signatures"]]:
        assert secret not in output
    assert "sig=" not in output and "expires=" not in output and "?" not in stdout
    # No member value, nowhere: answers and owner ids of the activity file, the touched values.
    values = member_values() | {"Probe-city Xyzzy"}
    assert len(values) > 10
    leaked = sorted(value for value in values if value in output)
    assert leaked == []


def test_location_answers_and_paging_variants_are_named(start_sandbox, tmp_path):
    sandbox = start_sandbox(
        "--seed", "5", "--activities", "3", "--members", "8", "--responses", "6",
        "--page-max", "2", "--quirks", "location_202,location_json_body,paging_empty_links",
    )  # fmt: skip
    survey = next(a["id"] for a in sandbox.truth()["activities"] if a["activityType"] == "Survey")
    code, report, _, stderr = probe(tmp_path, sandbox.config(), survey)
    assert code == 0, stderr[-3000:]
    assert report is not None and report["blocking"] == 0
    tolerated = whats(report, "tolerated")
    for kind in ("member", "activity"):
        assert f"{kind} export: files route answered 202 with a Location header, not a redirect" in tolerated
        file = calls(report)[f"{kind} export: file"]
        assert file["files_route"] == "Location on HTTP 202" and file["http_statuses"] == [202, 200]
        assert file["json"] and file["complete"]
    paging = "meta offset/count, links empty; limit capped at 2 (asked 20)"
    for path in ("activities", "membervariables"):
        assert calls(report)[path]["paging"] == paging
        assert f"/{path} pages as: {paging}" in tolerated


def test_cancelled_batches_are_blocking(start_sandbox, tmp_path):
    sandbox = start_sandbox("--fixtures", str(FIXTURES), "--quirks", "cancelled_jobs")
    code, report, _, stderr = probe(tmp_path, sandbox.config(), ACTIVITY)
    assert code == 1
    assert report is not None and report["blocking"] == 2
    assert whats(report, "blocking") == [
        "member export: batch ended 'cancelled', not succeeded",
        "activity export: batch ended 'cancelled', not succeeded",
    ]
    assert not [name for name in calls(report) if name.endswith(("file", "range"))]
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr[-3000:]
    assert "member export: batch ended 'cancelled'" in lines[0]
    assert "activity export: batch ended 'cancelled'" in lines[0]


def test_bad_credentials_are_blocking(fixture_sandbox, tmp_path):
    config = fixture_sandbox.config(client_secret="wrong")
    code, report, stdout, stderr = probe(tmp_path, config, ACTIVITY)
    assert code == 1
    assert report is not None
    assert [c["call"] for c in report["calls"]] == ["token"]
    assert report["calls"][0]["http_statuses"] == [401]
    assert report["calls"][0]["keys"] == []
    assert "message: string" in report["calls"][0]["error_keys"]
    assert report["deviations"] == [
        {"what": "token request refused (HTTP 401)", "severity": "blocking", "section": "docs/api.md §1.3"}
    ]
    lines = error_lines(stderr)
    assert len(lines) == 1 and "token request refused (HTTP 401)" in lines[0]
    assert "deviations from what docs/api.md describes" in lines[0]  # a page of the repository
    assert "wrong" not in stdout + stderr
    assert batch_creates(fixture_sandbox) == []


def test_stuck_batch_is_blocking_ignored_range_and_late_status_are_tolerated(start_sandbox, tmp_path):
    sandbox: Sandbox = start_sandbox(
        "--fixtures",
        str(FIXTURES),
        "--faults",
        "stuck_job=1",
        "--ranges",
        "ignore",
        "--quirks",
        "late_status",
        "--job-delay",
        "0.3",
    )
    config = sandbox.config(max_wait_seconds=1.5, max_wait_to_start_seconds=1.5)
    code, report, _, stderr = probe(tmp_path, config, ACTIVITY)
    assert code == 1
    assert report is not None and report["time_limit_seconds"] == 1.5
    # The first batch (members) never leaves pending; the activity export goes through.
    assert whats(report, "blocking") == ["member export: status never terminal within the probe's time limit"]
    assert "activity export: Range not honoured (HTTP 200): a broken download restarts" in whats(
        report, "tolerated"
    )
    assert calls(report)["activity export: range"]["range_honoured"] is False
    # late_status: the activity batch's status answered 404 at first; the probe waited it out.
    assert calls(report)["activity export: status"]["http_statuses"] == [404, 200]
    assert "a new batch's status answered 404 for a while" in whats(report, "tolerated")
    assert len(error_lines(stderr)) == 1


# -- shapes, without a server ---------------------------------------------------------


def test_key_types_show_types_not_values_and_hide_odd_keys():
    value = {"items": [{"id": "a", "n": 1}, {"id": None, "x": 2.5, "ok": True}], "9f-ab c": "v"}
    paths = key_types(value, {})
    assert render(paths) == [
        "<key>: string",
        "items: array",
        "items[]: object",
        "items[].id: null|string",
        "items[].n: integer",
        "items[].ok: boolean",
        "items[].x: number",
    ]
    many = key_types({f"k{i}": i for i in range(MAX_PATHS + 50)}, {})
    assert len(many) == MAX_PATHS


def test_link_lifetime_from_query_or_header():
    amz = "https://bucket.s3.amazonaws.com/f?X-Amz-Date=20261122T100000Z&X-Amz-Expires=30&X-Amz-Signature=abc"
    assert link_lifetime(amz, {}) == (30, "query parameter X-Amz-Expires")
    soon = int(dt.datetime.now(dt.UTC).timestamp()) + 90
    seconds, source = link_lifetime(f"http://h/storage/x?expires={soon}&sig=s", {})
    assert seconds is not None and 89 <= seconds <= 90 and source == "query parameter expires (a moment)"
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=300)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    seconds, source = link_lifetime("https://h/f", {"Expires": later})
    assert seconds is not None and 298 <= seconds <= 300 and source == "Expires header"
    assert link_lifetime("https://h/f", {}) == (None, None)


def response_with(body: bytes) -> requests.Response:
    response = requests.Response()
    response.raw = io.BytesIO(body)
    return response


def test_scan_file_tells_json_from_not_json():
    body = b'{"definition": {"fields": [{"type": {"dataType": "set"}}]}, "records": []}'
    scanned = scan_file(response_with(body))
    assert scanned["json"] and scanned["complete"] and scanned["top_level_keys"] == ["definition", "records"]
    assert scanned["data_types"] == ["set"]
    assert "definition.fields[].type.dataType: string" in scanned["keys"]
    broken = scan_file(response_with(b"<html>Access denied</html>"))
    assert broken["json"] is False and broken["complete"] is False
