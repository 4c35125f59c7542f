"""Member profiles: member_profiles full every run (no partial rows), member_profile_values
incremental from its bookmark; bookmarks never move backwards."""

from __future__ import annotations

import datetime as dt

from harness import discover, run_tap, select_all

M1 = "14dfcbeb-b17a-464b-8372-a62c0065a966"
M2 = "96689e68-f64b-42de-a8c6-7e134f490f16"
M3 = "0bfb0f1b-160d-43b1-b711-a62c0059ca52"
MEMBER_STREAMS = {"member_profiles", "member_profile_values"}


def a_minute_before(bookmark: str) -> str:
    """The sinceDatetime sent for a bookmark (``state.MEMBER_SINCE_OVERLAP``)."""
    moment = dt.datetime.fromisoformat(bookmark.replace("Z", "+00:00")) - dt.timedelta(minutes=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def member_batch_bodies(sandbox):
    return [
        r["body"]
        for r in sandbox.requests()
        if r["method"] == "POST" and r["path"].endswith("/members/profiles/batch")
    ]


def test_member_profiles_full_every_run_values_incremental(fixture_sandbox, tmp_path):
    """Default: member_profiles comes from a full export every run and is a full row each time;
    member_profile_values alone is exported incrementally from its bookmark."""
    config = fixture_sandbox.config()
    catalog = select_all(discover(tmp_path, config), only=MEMBER_STREAMS)

    first = run_tap(tmp_path, config, catalog=catalog)
    assert first.returncode == 0, first.stderr
    assert member_batch_bodies(fixture_sandbox) == [None]  # full export, no sinceDatetime
    profiles = {r["member_id"]: r for r in first.records["member_profiles"]}
    assert set(profiles) == {M1, M2, M3}
    assert profiles[M1]["age"] == 42 and profiles[M1]["segment"] == "Gold"
    assert profiles[M1]["interests"] == ["Travel", "Cooking"]
    assert profiles[M1]["date_joined"] == "2024-05-06T07:08:09.123000Z"
    assert profiles[M2]["email"] == "zoë@example.org" and profiles[M2]["interests"] == []
    assert profiles[M3]["age"] == 37  # exported as the string "37"
    assert "legacy_score" not in profiles[M1]
    # every row carries every column: a RECORD is a full row, never a patch
    assert {frozenset(r) for r in first.records["member_profiles"]} == {
        frozenset(first.schemas["member_profiles"]["properties"])
    }
    values = first.records["member_profile_values"]
    truth = fixture_sandbox.truth()["members"]
    assert len(values) == truth["member_variables"] == 10
    legacy = [v for v in values if v["variable_name"] == "legacy_score"]
    assert legacy[0]["values"] == ["3.5"] and legacy[0]["effective_date"] == "2026-11-03T00:00:00Z"
    assert any("legacy_score" in line and "WARNING" in line for line in first.stderr.splitlines())
    last_sync = "2026-11-10T09:00:00Z"  # the newest effectiveDate in the file
    assert first.state["bookmarks"]["member_profile_values"]["replication_key_value"] == last_sync
    assert "replication_key_value" not in first.state["bookmarks"].get("member_profiles", {})  # full table
    for stream in MEMBER_STREAMS:
        assert all(r["last_sync_date"] == last_sync for r in first.records[stream])
    activations = [m for m in first.messages if m["type"] == "ACTIVATE_VERSION"]
    assert [m["stream"] for m in activations] == ["member_profiles"]
    # after the stream's last RECORD, with the version its RECORDs carry
    last_record = max(
        i for i, m in enumerate(first.messages) if m["type"] == "RECORD" and m["stream"] == "member_profiles"
    )
    assert first.messages.index(activations[0]) > last_record
    assert first.messages[last_record]["version"] == activations[0]["version"]

    # One member changes: member_profiles is exported in full again, the changed
    # member's row is complete (nothing blanked) and carries the new value.
    fixture_sandbox.post("/_sandbox/members/touch", {"count": 1, "effectiveDate": "2026-11-20T00:00:00Z"})
    second = run_tap(tmp_path, config, catalog=catalog, state=first.state)
    assert second.returncode == 0, second.stderr
    assert member_batch_bodies(fixture_sandbox)[-1] is None
    again = {r["member_id"]: r for r in second.records["member_profiles"]}
    assert set(again) == {M1, M2, M3}
    assert again[M1]["interests"] == ["Updated 1"]
    assert again[M1]["age"] == 42 and again[M1]["segment"] == "Gold"  # not blanked
    assert (
        second.state["bookmarks"]["member_profile_values"]["replication_key_value"] == "2026-11-20T00:00:00Z"
    )

    # member_profile_values alone: incremental from its bookmark, only the change.
    only_values = select_all(discover(tmp_path, config), only={"member_profile_values"})
    third = run_tap(tmp_path, config, catalog=only_values, state=first.state)
    assert third.returncode == 0, third.stderr
    assert member_batch_bodies(fixture_sandbox)[-1] == {"sinceDatetime": a_minute_before(last_sync)}
    # The change, and again the values of the minute before the bookmark (M2's, at 09:00).
    assert sorted(
        (v["member_id"], v["variable_name"]) for v in third.records["member_profile_values"]
    ) == sorted([(M1, "Interests"), (M2, "email"), (M2, "Interests")])
    assert not [m for m in third.messages if m["type"] == "ACTIVATE_VERSION"]  # incremental


def test_member_profiles_incremental_setting(fixture_sandbox, tmp_path):
    """member_profiles_incremental: true is the cheaper path for a tenant whose incremental
    export returns complete members; the row of a changed member is then a full row too."""
    config = fixture_sandbox.config(member_profiles_incremental=True)
    catalog = select_all(discover(tmp_path, config), only=MEMBER_STREAMS)
    first = run_tap(tmp_path, config, catalog=catalog)
    assert first.returncode == 0, first.stderr
    last_sync = "2026-11-10T09:00:00Z"
    for stream in MEMBER_STREAMS:
        assert first.state["bookmarks"][stream]["replication_key_value"] == last_sync
    assert not [m for m in first.messages if m["type"] == "ACTIVATE_VERSION"]

    # Nothing changed: the second run asks from a minute before the bookmark and gets only the
    # member whose values are of that minute (M2, at 09:00), unchanged.
    second = run_tap(tmp_path, config, catalog=catalog, state=first.state)
    assert second.returncode == 0, second.stderr
    assert member_batch_bodies(fixture_sandbox)[-1] == {"sinceDatetime": a_minute_before(last_sync)}
    assert [r["member_id"] for r in second.records["member_profiles"]] == [M2]
    again, before = (
        second.records["member_profiles"][0],
        next(r for r in first.records["member_profiles"] if r["member_id"] == M2),
    )
    assert (again["email"], again["interests"]) == (before["email"], before["interests"])
    assert second.state["bookmarks"]["member_profiles"]["replication_key_value"] == last_sync

    # One member changes: the third run gets exactly that change.
    fixture_sandbox.post("/_sandbox/members/touch", {"count": 1, "effectiveDate": "2026-11-20T00:00:00Z"})
    third = run_tap(tmp_path, config, catalog=catalog, state=second.state)
    assert third.returncode == 0, third.stderr
    assert member_batch_bodies(fixture_sandbox)[-1] == {"sinceDatetime": a_minute_before(last_sync)}
    assert sorted(r["member_id"] for r in third.records["member_profiles"]) == sorted(
        [M1, M2]
    )  # M2: the minute
    changed = next(r for r in third.records["member_profiles"] if r["member_id"] == M1)
    # a full row: the variables the export did not carry are null, not omitted
    assert changed["interests"] == ["Updated 1"] and changed["age"] is None
    assert sorted(
        (v["member_id"], v["variable_name"]) for v in third.records["member_profile_values"]
    ) == sorted([(M1, "Interests"), (M2, "email"), (M2, "Interests")])
    assert (
        third.state["bookmarks"]["member_profile_values"]["replication_key_value"] == "2026-11-20T00:00:00Z"
    )


def test_bookmark_never_moves_backwards(fixture_sandbox, tmp_path):
    """A lastSyncDate older than the sinceDatetime asked for: the bookmark stays at the since."""
    since = "2026-12-01T00:00:00Z"  # later than every effectiveDate in the fixture
    config = fixture_sandbox.config(start_date=since)
    catalog = select_all(discover(tmp_path, config), only={"member_profile_values"})
    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr
    assert member_batch_bodies(fixture_sandbox) == [{"sinceDatetime": since}]
    assert run.state["bookmarks"]["member_profile_values"]["replication_key_value"] == since
    warnings = [line for line in run.stderr.splitlines() if "WARNING" in line and "lastSyncDate" in line]
    assert len(warnings) == 1 and "older than the sinceDatetime" in warnings[0] and since in warnings[0]


def test_start_date_is_the_first_since(fixture_sandbox, tmp_path):
    config = fixture_sandbox.config(start_date="2026-11-04T00:00:00Z")
    catalog = select_all(discover(tmp_path, config), only={"member_profile_values"})
    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr
    assert member_batch_bodies(fixture_sandbox) == [{"sinceDatetime": "2026-11-04T00:00:00Z"}]  # as given
    # variables effective after 2026-11-04: M1 segment+interests, M2 email+interests
    assert sorted(
        (v["member_id"], v["variable_name"]) for v in run.records["member_profile_values"]
    ) == sorted([(M1, "Segment"), (M1, "Interests"), (M2, "email"), (M2, "Interests")])


def test_older_bookmark_wins_when_streams_disagree(fixture_sandbox, tmp_path):
    config = fixture_sandbox.config(member_profiles_incremental=True)
    catalog = select_all(discover(tmp_path, config), only=MEMBER_STREAMS)
    state = {
        "bookmarks": {
            "member_profiles": {
                "replication_key": "last_sync_date",
                "replication_key_value": "2026-11-09T00:00:00Z",
            },
            "member_profile_values": {
                "replication_key": "last_sync_date",
                "replication_key_value": "2026-11-04T00:00:00+00:00",
            },
        }
    }
    run = run_tap(tmp_path, config, catalog=catalog, state=state)
    assert run.returncode == 0, run.stderr
    assert member_batch_bodies(fixture_sandbox) == [{"sinceDatetime": "2026-11-03T23:59:00Z"}]
