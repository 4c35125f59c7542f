"""Shards (``shard_count`` / ``shard_index``): N runs split a community and load one warehouse.

Every survey is loaded by exactly one shard (a hash of its id); shard 0 alone loads
``activities`` and the member streams; the shards' ACTIVATE_VERSIONs on the tables all
surveys share (``activity_answers``, ``activity_fields``) keep each other's rows for
``shard_validity_hours`` (also when a shard misses a night), and rows deleted in Alida
still leave. After every night the
warehouse equals a fresh full load of the whole community.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness import run_tap_here, select_all
from warehouse_model import Warehouse, differences

from tap_alida.export.scheduler import shard_of

VALIDITY_HOURS = 3 / 3600  # 3 s: the next test night comes sooner than that, or after it
WHOLE_COMMUNITY = {"activities", "member_profiles", "member_profile_values"}


def night(
    tmp_path: Path,
    config: dict[str, Any],
    states: dict[int, Any],
    warehouse: Warehouse,
    n: int,
    *,
    only: tuple[int, ...] | None = None,
) -> dict[int, Any]:
    """Every shard (or ``only`` these) once, one after the other, each with its own catalog and STATE."""
    runs = {}
    for index in only if only is not None else range(n):
        folder = tmp_path / f"shard-{index}-{time.monotonic_ns()}"
        folder.mkdir()
        shard = dict(config, shard_count=n, shard_index=index, shard_validity_hours=VALIDITY_HOURS)
        catalog = run_tap_here(folder, shard, "--discover").messages[0]
        run = run_tap_here(folder, shard, catalog=select_all(catalog), state=states.get(index))
        assert run.returncode == 0, run.stderr[-3000:]
        warehouse.load(run.messages)
        states[index] = run.state
        runs[index] = run
    return runs


def fresh(tmp_path: Path, config: dict[str, Any]) -> Warehouse:
    folder = tmp_path / f"fresh-{time.monotonic_ns()}"
    folder.mkdir()
    catalog = run_tap_here(folder, config, "--discover").messages[0]
    run = run_tap_here(folder, config, catalog=select_all(catalog))
    assert run.returncode == 0, run.stderr[-3000:]
    return Warehouse().load(run.messages)


def test_shards_split_surveys_and_keep_each_others_rows(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "6", "--members", "8", "--responses", "8", "--clean")
    config = sandbox.config()
    surveys = [a["id"] for a in sandbox.truth()["activities"] if a["activityType"] == "Survey"]
    warehouse, states = Warehouse(), {}
    runs = night(tmp_path, config, states, warehouse, 2)

    # Each survey in exactly one shard; the whole-community streams in shard 0 only.
    answered = [{r["activity_id"] for r in run.records["activity_answers"]} for run in runs.values()]
    assert answered[0] and answered[1] and not answered[0] & answered[1]
    assert answered[0] | answered[1] == set(surveys)
    assert set(runs[0].records) >= WHOLE_COMMUNITY
    assert not WHOLE_COMMUNITY & set(runs[1].records)
    shard_1_schemas = {m["stream"] for m in runs[1].messages if m["type"] == "SCHEMA"}
    assert {"activity_answers", "activity_fields"} <= shard_1_schemas
    assert not WHOLE_COMMUNITY & shard_1_schemas  # its target never creates or alters their tables
    said = "Loaded by shard 0 of 2; this is shard 1: activities, member_profile_values, member_profiles"
    assert said in runs[1].stderr
    assert len(runs[0].records["activities"]) == len(sandbox.truth()["activities"])
    assert all(r["in_scope"] for r in runs[0].records["activities"] if r["activity_id"] in surveys)
    assert differences(warehouse, fresh(tmp_path, config)) == {}

    # Shard 1 misses a night (failed, or not run): shard 0's ACTIVATE_VERSION keeps its rows.
    night(tmp_path, config, states, warehouse, 2, only=(0,))
    loaded = time.monotonic()  # after the last load
    assert differences(warehouse, fresh(tmp_path, config)) == {}

    # A day of deletions in both shards' open surveys (a closed survey's rows are kept until
    # closed_activity_refresh_days: not what this test is about); the next night deletes them.
    open_ = [a["id"] for a in sandbox.truth()["activities"] if a["id"] in surveys and a["status"] == "open"]
    assert {shard_of(a, 2) for a in open_} == {0, 1}
    for activity_id in open_:
        sandbox.post(f"/_sandbox/activities/{activity_id}/responses/delete", {"count": 2})
    time.sleep(max(0.0, VALIDITY_HOURS * 3600 - (time.monotonic() - loaded)))
    night(tmp_path, config, states, warehouse, 2)
    expected = fresh(tmp_path, config)
    assert differences(warehouse, expected) == {}
    assert sum(warehouse.live("activity_answers").values()) == sum(expected.live("activity_answers").values())


def test_shard_index_outside_the_count_is_one_clear_error(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "1", "--members", "2", "--responses", "1", "--clean")
    run = run_tap_here(tmp_path, sandbox.config(shard_count=2, shard_index=2), "--discover")
    assert run.returncode == 1
    assert "Setting 'shard_index' is 2; with 'shard_count' 2 it must be 0 to 1." in run.stderr
