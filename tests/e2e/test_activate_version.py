"""ACTIVATE_VERSION: only after a complete full-table read, never after a failure."""

from __future__ import annotations

import json
import shutil

from harness import FIXTURES, discover, run_tap, select_all

QUICK_POLL = "5f3c2a10-1111-4b2c-9d3e-a62c0059cb00"


def test_a_stream_that_fails_mid_way_emits_no_activate_version(start_sandbox, tmp_path):
    """Quick Poll's file breaks after its first record: the records before the break are out, but
    no ACTIVATE_VERSION follows them (a target would otherwise delete every row not yet re-sent)."""
    community = tmp_path / "community"
    shutil.copytree(FIXTURES, community)
    path = community / "activities" / f"{QUICK_POLL}.json"
    export = json.loads(path.read_text())
    first, second = (json.dumps(r) for r in export["records"])
    broken = second.replace('"resp-002"', "resp-002")  # malformed JSON mid-way
    assert broken != second
    # definition first (so it is read), then one good record, then the break
    head = f'{{"id": {json.dumps(export["id"])}, "definition": {json.dumps(export["definition"])}, '
    path.write_text(head + f'"records": [{first}, {broken}]}}')
    sandbox = start_sandbox("--fixtures", str(community))
    config = sandbox.config()
    discovered = discover(tmp_path, start_sandbox("--fixtures", str(FIXTURES)).config())
    for stream in ("quick_poll", "activity_answers"):
        run = run_tap(tmp_path, config, catalog=select_all(discovered, only={stream}))
        assert run.returncode != 0
        emitted = [r for r in run.records[stream] if r["activity_id"] == QUICK_POLL]
        assert len(emitted) == 1  # the value before the break was emitted
        assert not [m for m in run.messages if m["type"] == "ACTIVATE_VERSION"], stream
        errors = [line for line in run.stderr.splitlines() if "malformed" in line]
        assert errors and "Quick Poll" in errors[0]


def test_activate_version_follows_the_last_record_with_its_version(fixture_sandbox, tmp_path):
    config = fixture_sandbox.config()
    catalog = select_all(discover(tmp_path, config))
    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr
    full_table = {s["tap_stream_id"] for s in catalog["streams"]} - {"member_profile_values"}
    activated = {m["stream"]: i for i, m in enumerate(run.messages) if m["type"] == "ACTIVATE_VERSION"}
    assert set(activated) == full_table
    for stream, at in activated.items():
        records = [i for i, m in enumerate(run.messages) if m["type"] == "RECORD" and m["stream"] == stream]
        assert records and max(records) < at, stream
        versions = {run.messages[i]["version"] for i in records}
        assert versions == {run.messages[at]["version"]}, stream

    off = run_tap(tmp_path, fixture_sandbox.config(emit_activate_version_messages=False), catalog=catalog)
    assert off.returncode == 0, off.stderr
    assert not [m for m in off.messages if m["type"] == "ACTIVATE_VERSION"]
