"""Record values: labels, hidden and deleted options, empty and skipped answers, types."""

from __future__ import annotations

import pytest
from harness import discover, run_tap, select_all

M1 = "14dfcbeb-b17a-464b-8372-a62c0065a966"
M2 = "96689e68-f64b-42de-a8c6-7e134f490f16"
M3 = "0bfb0f1b-160d-43b1-b711-a62c0059ca52"
ACTIVITY = "9b2e61d0-7c11-4a53-8e0f-a62c0059ca52"


@pytest.fixture
def synced(fixture_sandbox, tmp_path):
    catalog = select_all(discover(tmp_path, fixture_sandbox.config()))
    run = run_tap(tmp_path, fixture_sandbox.config(), catalog=catalog)
    assert run.returncode == 0, run.stderr
    return run


def test_response_values(synced):
    rows = synced.records["product_feedback_q4"]
    assert [r["response_id"] for r in rows] == [f"{M1}:0", f"{M2}:0", f"{M1}:1", f"{M3}:0"]
    first, skipped, second, third = rows
    assert first["activity_id"] == ACTIVITY and first["member_id"] == M1
    assert first["what_is_your_gender"] == ["Female"]
    # a hidden option keeps its label
    assert first["which_of_these_brands_have_you_heard_of"] == ["Acme", "Initech", "Hooli"]
    assert first["how_likely_are_you_to_recommend_us"] == 9
    assert first["why"] == "Fast delivery – très bien 😀"
    assert first["when_did_you_last_buy"] == "2026-10-01T00:00:00Z"
    assert first["preferred_contact_channel"] == "Fax"  # a deleted option keeps its label
    assert first["who_referred_you"] == M2
    assert first["comments"] == "first comment"
    assert first["where_are_you"] == "45.50,-73.57"
    assert first["batch_id"] == synced.records["product_feedback_q4"][3]["batch_id"]
    # values: [] → null, and [] for a set; skipped questions (absent) likewise
    assert skipped["what_is_your_gender"] == []
    assert skipped["how_likely_are_you_to_recommend_us"] is None
    assert skipped["which_of_these_brands_have_you_heard_of"] == []
    assert skipped["why"] is None and skipped["when_did_you_last_buy"] is None
    # the same member's second record
    assert second["what_is_your_gender"] == ["Prefer not to say"]  # hidden option
    assert second["how_likely_are_you_to_recommend_us"] == 7.5  # numeric string
    assert second["why"] == "first of two"  # non-set with several values: the first
    assert second["when_did_you_last_buy"] == "2026-10-01T10:30:00.123456Z"  # +02:00, 7 digits
    assert second["preferred_contact_channel"] == "c-unknown-option"  # raw id kept
    assert third["what_is_your_gender"] == ["Other"]  # deleted option
    assert third["when_did_you_last_buy"] == "2026-10-02T08:00:00Z"  # naive = UTC
    assert third["how_likely_are_you_to_recommend_us"] == 0


def test_duplicate_and_reserved_names_keep_their_values(synced):
    first = synced.records["product_feedback_q4"][0]
    comments = {k: v for k, v in first.items() if k.startswith("comments")}
    assert sorted(comments.values()) == ["first comment", "second comment"]
    member_columns = {k: v for k, v in first.items() if k.startswith("member_id")}
    assert member_columns == {"member_id": M1, **{k: "CRM-001" for k in member_columns if k != "member_id"}}


def test_anomalies_warn_once_naming_activity_and_field(synced):
    lines = synced.stderr.splitlines()
    option = [line for line in lines if "c-unknown-option" in line]
    assert len(option) == 1 and "q-channel" in option[0] and "Product Feedback" in option[0]
    multi = [line for line in lines if "carries 2 values" in line]
    assert len(multi) == 1 and "q-why" in multi[0]


def test_own_record_ids_and_records_before_definition(synced):
    rows = synced.records["quick_poll"]
    assert [(r["response_id"], r["would_you_buy_it_again"]) for r in rows] == [
        ("resp-001", "Yes"),
        ("resp-002", "No"),
    ]


def test_activity_fields_data_dictionary(synced):
    rows = [r for r in synced.records["activity_fields"] if r["activity_id"] == ACTIVITY]
    assert [r["field_id"] for r in rows][:3] == ["q-gender", "q-brands", "q-nps"]
    gender = rows[0]
    assert gender["column_name"] == "what_is_your_gender" and gender["data_type"] == "set"
    assert gender["options"] == [
        {"id": "o-male", "name": "Male", "visibility": "active", "indicator_column": None},
        {"id": "o-female", "name": "Female", "visibility": "active", "indicator_column": None},
        {"id": "o-pnts", "name": "Prefer not to say", "visibility": "hidden", "indicator_column": None},
        {"id": "o-other", "name": "Other", "visibility": "deleted", "indicator_column": None},
    ]
    by_id = {r["field_id"]: r for r in rows}
    assert by_id["q-c2"]["visibility"] == "hidden"
    schema_columns = set(synced.schemas["product_feedback_q4"]["properties"])
    assert {r["column_name"] for r in rows} <= schema_columns
    assert len(synced.records["activity_fields"]) == 12 + 1


def test_files_are_fetched_without_credentials(fixture_sandbox, synced):
    storage = [r for r in fixture_sandbox.requests() if r["path"].startswith("/storage/")]
    assert storage, "the sandbox redirects file downloads to its storage route"
    assert all(r["status"] == 200 and not r["authorization"] and not r["x_api_key"] for r in storage)


def test_direct_file_response_without_redirect(start_sandbox, tmp_path):
    from harness import FIXTURES

    sandbox = start_sandbox("--fixtures", str(FIXTURES), "--redirect", "none")
    run = run_tap(tmp_path, sandbox.config(activity_ids=[ACTIVITY]))
    assert run.returncode == 0, run.stderr
    assert len(run.records["product_feedback_q4"]) == 4


def test_deselected_columns_are_not_emitted(fixture_sandbox, tmp_path):
    """Property selection still works on activity streams (their record path is tuned)."""
    catalog = select_all(discover(tmp_path, fixture_sandbox.config()), only={"product_feedback_q4"})
    stream = next(s for s in catalog["streams"] if s["tap_stream_id"] == "product_feedback_q4")
    for entry in stream["metadata"]:
        if entry["breadcrumb"] == ["properties", "why"]:
            entry["metadata"]["selected"] = False
    run = run_tap(tmp_path, fixture_sandbox.config(), catalog=catalog)
    assert run.returncode == 0, run.stderr
    rows = run.records["product_feedback_q4"]
    assert len(rows) == 4
    assert all("why" not in row for row in rows)
    assert all("when_did_you_last_buy" in row for row in rows)
