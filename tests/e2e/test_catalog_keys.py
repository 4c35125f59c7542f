"""The catalog carries each activity stream's activity id and discovery's batch.

Counts come from the sandbox's request log. The sync re-uses the batches its
discovery made (one export per survey per night, not two), but only when STATE
shows they are newer than what was loaded, only once and only while young;
streams follow their activity by id when a survey is renamed.
"""

from __future__ import annotations

import time
from typing import Any

from harness import FIXED_STREAM_KEYS, discover, run_tap, run_tap_here, select_all
from test_nights import batch_posts, last_seq, surveys
from warehouse_model import Warehouse, differences


def root_metadata(catalog: dict[str, Any], stream: str) -> dict[str, Any]:
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == stream)
    return next(m["metadata"] for m in entry["metadata"] if m["breadcrumb"] == [])


def activity_streams(catalog: dict[str, Any]) -> dict[str, str]:
    """Activity id → stream name, from the catalog's ``alida-activity-id``."""
    return {
        root_metadata(catalog, s["tap_stream_id"])["alida-activity-id"]: s["tap_stream_id"]
        for s in catalog["streams"]
        if s["tap_stream_id"] not in FIXED_STREAM_KEYS
    }


def activity_ids_of(run: Any, stream: str) -> set[str]:
    return {row["activity_id"] for row in run.records[stream]}


def test_sync_reuses_the_batches_its_discovery_made_once(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "3", "--members", "5", "--responses", "6")
    config = sandbox.config()
    ids = sorted(a["id"] for a in surveys(sandbox))

    seq = last_seq(sandbox)
    catalog = select_all(discover(tmp_path, config))
    assert batch_posts(sandbox, seq) == ids
    streams = activity_streams(catalog)
    assert sorted(streams) == ids  # every activity stream names its activity
    for activity_id, stream in streams.items():
        batch = root_metadata(catalog, stream)["alida-batch"]
        assert (batch["kind"], batch["activity_id"]) == ("activity", activity_id)
    assert all("alida-activity-id" not in root_metadata(catalog, name) for name in FIXED_STREAM_KEYS)

    # The first sync has no STATE: nothing shows that discovery's batches are not older
    # than rows some earlier sync loaded, so every survey is exported again.
    seq = last_seq(sandbox)
    first = run_tap(tmp_path, config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    assert batch_posts(sandbox, seq) == ids
    assert first.stderr.count("has no export of it in STATE") == 3
    for activity_id, stream in streams.items():
        assert activity_ids_of(first, stream) == {activity_id}
        assert len(first.records[stream]) == 6
    assert {r["activity_id"] for r in first.records["activity_answers"]} == set(ids)

    # The next night: discovery exports the open surveys (the closed one's definition is
    # cached), and the sync, whose STATE shows only older exports, re-uses those batches:
    # one export per open survey per night, not two.
    listed = first.records["activities"]
    open_ids = sorted(a["activity_id"] for a in listed if a["activity_id"] in ids and a["status"] != "closed")
    assert len(open_ids) == 2
    time.sleep(1.1)  # Alida's clock has whole seconds: tonight's batches are newer than last night's
    seq = last_seq(sandbox)
    tonight = select_all(discover(tmp_path, config))
    assert batch_posts(sandbox, seq) == open_ids
    seq = last_seq(sandbox)
    second = run_tap(tmp_path, config, catalog=tonight, state=first.state)
    assert second.returncode == 0, second.stderr[-3000:]
    assert batch_posts(sandbox, seq) == []
    assert second.stderr.count("from discovery (status succeeded)") == 2
    assert "This run exports 2 activities and skips 1 closed ones" in second.stderr

    # The same catalog again (Meltano's cached catalog, a rerun): STATE says those batches
    # were loaded already, so they are not re-used; the warehouse never goes back in time.
    seq = last_seq(sandbox)
    again = run_tap(tmp_path, config, catalog=tonight, state=second.state)
    assert again.returncode == 0, again.stderr[-3000:]
    assert batch_posts(sandbox, seq) == open_ids
    assert again.stderr.count("already loaded this very batch") == 2
    # ...and without STATE (another machine, --full-refresh) nothing is re-used either.
    seq = last_seq(sandbox)
    stateless = run_tap(tmp_path, config, catalog=tonight, env={"XDG_CACHE_HOME": str(tmp_path / "other")})
    assert stateless.returncode == 0, stateless.stderr[-3000:]
    assert batch_posts(sandbox, seq) == ids  # no STATE: the closed survey is exported too
    assert stateless.stderr.count("has no export of it in STATE") == len(open_ids)  # the batches it has


def test_an_old_discovery_batch_is_not_reused(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "2", "--members", "5", "--responses", "4")
    config = sandbox.config()
    first = run_tap(tmp_path, config, catalog=select_all(discover(tmp_path, config)))
    assert first.returncode == 0, first.stderr[-3000:]
    time.sleep(1.1)
    catalog = select_all(discover(tmp_path, config))  # batches newer than STATE's marks...
    for stream in activity_streams(catalog).values():
        if "alida-batch" in root_metadata(catalog, stream):  # (not the closed one: its definition is cached)
            root_metadata(catalog, stream)["alida-batch"]["created_at"] = time.time() - 2 * 3600  # ...but old

    ids = {a["id"] for a in surveys(sandbox)}
    listed = first.records["activities"]
    open_ids = sorted(a["activity_id"] for a in listed if a["activity_id"] in ids and a["status"] != "closed")
    seq = last_seq(sandbox)
    run = run_tap(tmp_path, config, catalog=catalog, state=first.state)
    assert run.returncode == 0, run.stderr[-3000:]
    assert batch_posts(sandbox, seq) == open_ids  # the closed survey is skipped
    assert run.stderr.count("from discovery: it is 2.0 h old.") == len(open_ids)


def test_a_renamed_survey_keeps_its_stream_and_no_stream_takes_another_surveys_rows(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "3", "--members", "5", "--responses", "5")
    config = sandbox.config()
    catalog = select_all(discover(tmp_path, config))
    streams = activity_streams(catalog)
    names = {a["id"]: a["name"] for a in surveys(sandbox)}
    # Two surveys whose streams carry their plain names (no id suffix), then swap
    # their names. Matched by name, each stream would read the other survey's rows.
    plain = [i for i, stream in streams.items() if not stream.endswith(i.replace("-", "")[:8])]
    first, second = plain[:2]
    assert names[first] != names[second]
    sandbox.post(f"/_sandbox/activities/{first}/rename", {"name": names[second]})
    sandbox.post(f"/_sandbox/activities/{second}/rename", {"name": names[first]})

    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    for activity_id, stream in streams.items():
        assert activity_ids_of(run, stream) == {activity_id}, stream
    assert "matches no activity" not in run.stderr
    assert "is in scope but the catalog has no stream for it" not in run.stderr
    listed = {row["activity_id"]: row for row in run.records["activities"]}
    assert listed[first]["name"] == names[second]  # the new name, the old stream
    assert listed[first]["stream_name"] == streams[first]
    assert listed[second]["stream_name"] == streams[second]


def test_a_catalog_that_pins_a_survey_on_a_fixed_stream_is_not_believed(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "2", "--members", "5", "--responses", "4")
    config = sandbox.config()
    catalog = select_all(discover(tmp_path, config))
    streams = activity_streams(catalog)
    victim = sorted(streams)[0]
    # A hand-edited catalog: activity_answers, read first, claims the survey's id.
    answers = next(s for s in catalog["streams"] if s["tap_stream_id"] == "activity_answers")
    root_metadata(catalog, "activity_answers")["alida-activity-id"] = victim
    catalog["streams"].remove(answers)
    catalog["streams"].insert(0, answers)

    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    assert activity_ids_of(run, streams[victim]) == {victim}  # the survey's own stream still reads it
    assert {r["activity_id"] for r in run.records["activity_answers"]} == set(streams)
    assert "is in scope but the catalog has no stream for it" not in run.stderr


def test_a_rename_then_a_new_discovery_moves_the_stream_and_never_skips_on_another_survey_s_export(
    start_sandbox, tmp_path
):
    """Two surveys named alike: the older one is renamed, and on rediscovery the closed
    younger one inherits its stream name. That stream's last export was of the renamed
    survey, so the closed one must be exported (not skipped), and both moves are warned."""
    sandbox = start_sandbox("--activities", "3", "--members", "5", "--responses", "5")
    config = sandbox.config()
    suffixed = "a0c27044-6c18-298d-ac68-f320ea04f4fb"  # the younger "Customer Satisfaction" (seed 1)
    sandbox.post(f"/_sandbox/activities/{suffixed}/close", {})
    time.sleep(1.1)  # exports from the next second on are after it closed (whole seconds)
    catalog = select_all(discover(tmp_path, config))
    streams = activity_streams(catalog)
    plain, suffixed = (
        next(i for i, s in streams.items() if s == name)
        for name in ("customer_satisfaction", "customer_satisfaction_a0c27044")
    )
    first = run_tap(tmp_path, config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    closed = {r["activity_id"] for r in first.records["activities"] if r["status"] == "closed"}
    assert suffixed in closed  # the younger survey is closed and now exported: skipped from now on

    sandbox.post(f"/_sandbox/activities/{plain}/rename", {"name": "Customer Feedback"})
    catalog2 = select_all(discover(tmp_path, config))
    streams2 = activity_streams(catalog2)
    assert streams2[suffixed] == "customer_satisfaction" and streams2[plain] == "customer_feedback"
    seq = last_seq(sandbox)
    second = run_tap(tmp_path, config, catalog=catalog2, state=first.state)
    assert second.returncode == 0, second.stderr[-3000:]
    assert suffixed in batch_posts(sandbox, seq) or "Re-using" in second.stderr
    assert activity_ids_of(second, "customer_satisfaction") == {suffixed}
    assert len(second.records["customer_satisfaction"]) == 5
    assert "the stream's last export was of another activity" in second.stderr
    moved = [line for line in second.stderr.splitlines() if "was loaded into stream" in line]
    assert len(moved) == 2
    assert any(f"({plain}) was loaded into stream 'customer_satisfaction'" in line for line in moved)
    assert any("its stream is now 'customer_feedback'" in line for line in moved)


def test_a_namesake_s_rename_leaves_the_warehouse_equal_to_a_fresh_load(start_sandbox, tmp_path):
    """Issue 21 case 6. Two surveys named "Customer Satisfaction"; the older is renamed and the
    catalog discovered again, so the other one takes the plain name. Before, its old table kept
    its rows (live in two tables) and the renamed survey's rows stayed under the plain name
    (two surveys in one table). Now the old table is emptied and the plain one reloaded."""
    sandbox = start_sandbox("--activities", "3", "--members", "5", "--responses", "5")
    config = sandbox.config()
    first_dir, second_dir, fresh_dir = (tmp_path / n for n in ("first", "second", "fresh"))
    for folder in (first_dir, second_dir, fresh_dir):
        folder.mkdir()
    catalog = select_all(run_tap_here(first_dir, config, "--discover").messages[0])
    streams = activity_streams(catalog)
    assert "customer_satisfaction_a0c27044" in streams.values()
    plain = next(i for i, s in streams.items() if s == "customer_satisfaction")
    first = run_tap_here(first_dir, config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    warehouse = Warehouse().load(first.messages)

    sandbox.post(f"/_sandbox/activities/{plain}/rename", {"name": "Customer Feedback"})
    catalog2 = select_all(run_tap_here(second_dir, config, "--discover").messages[0])
    second = run_tap_here(second_dir, config, catalog=catalog2, state=first.state)
    assert second.returncode == 0, second.stderr[-3000:]
    warehouse.load(second.messages)
    retired = [m for m in second.messages if m.get("stream") == "customer_satisfaction_a0c27044"]
    assert [m["type"] for m in retired] == ["SCHEMA", "ACTIVATE_VERSION"]
    assert "customer_satisfaction_a0c27044" not in second.state["bookmarks"]
    assert "'customer_satisfaction_a0c27044' is emptied (ACTIVATE_VERSION)" in second.stderr

    catalog3 = select_all(run_tap_here(fresh_dir, config, "--discover").messages[0])
    fresh = run_tap_here(fresh_dir, config, catalog=catalog3)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert differences(warehouse, Warehouse().load(fresh.messages)) == {}
    assert warehouse.live("customer_satisfaction_a0c27044") == {}


def test_a_renamed_survey_s_old_name_taken_by_a_survey_out_of_scope_is_emptied(start_sandbox, tmp_path):
    """``activity_ids`` names the older "Customer Satisfaction" only; it is renamed, and the name
    passes to its namesake, which no run loads. The old table must not keep its rows for ever."""
    sandbox = start_sandbox("--activities", "3", "--members", "5", "--responses", "5")
    folders = [tmp_path / n for n in ("first", "second", "fresh")]
    for folder in folders:
        folder.mkdir()
    everything = select_all(run_tap_here(folders[0], sandbox.config(), "--discover").messages[0])
    plain = next(i for i, s in activity_streams(everything).items() if s == "customer_satisfaction")
    config = sandbox.config(activity_ids=[plain])
    first = run_tap_here(
        folders[0], config, catalog=select_all(run_tap_here(folders[0], config, "--discover").messages[0])
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert {r["activity_id"] for r in first.records["customer_satisfaction"]} == {plain}
    warehouse = Warehouse().load(first.messages)

    sandbox.post(f"/_sandbox/activities/{plain}/rename", {"name": "Customer Feedback"})
    catalog = select_all(run_tap_here(folders[1], config, "--discover").messages[0])
    second = run_tap_here(folders[1], config, catalog=catalog, state=first.state)
    assert second.returncode == 0, second.stderr[-3000:]
    warehouse.load(second.messages)
    assert "'customer_satisfaction' is emptied (ACTIVATE_VERSION)" in second.stderr
    assert "customer_satisfaction" not in second.state["bookmarks"]

    fresh_catalog = select_all(run_tap_here(folders[2], config, "--discover").messages[0])
    fresh = run_tap_here(folders[2], config, catalog=fresh_catalog)
    assert differences(warehouse, Warehouse().load(fresh.messages)) == {}
    assert warehouse.live("customer_satisfaction") == {}
