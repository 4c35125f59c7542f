"""Crash resume: SIGKILL the tap mid-download, rerun from its last STATE.

The rerun must re-use the batches the killed run created (no new POST for
them in the sandbox's request log), and the union of both runs' records,
deduplicated on primary keys, must be exactly the community's records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from typing import Any

from harness import FIXED_STREAM_KEYS, discover, executable, run_tap, select_all


def test_sigkill_mid_download_then_rerun_reuses_the_batches(start_sandbox: Any, tmp_path: Any) -> None:
    # Big enough files, served slowly (8 KiB per 10 ms), so the kill lands mid-download.
    sandbox = start_sandbox(
        "--activities", "2", "--members", "200", "--responses", "6000", "--faults", "slow_body=1.0"
    )
    config = sandbox.config()
    catalog = select_all(discover(tmp_path, config))
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_ALIDA_")}
    tap = subprocess.Popen(
        [
            executable("tap-alida"),
            "--config",
            str(tmp_path / "config.json"),
            "--catalog",
            str(tmp_path / "catalog.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert tap.stdout is not None and tap.stderr is not None
    stdout_lines: list[str] = []
    reader = threading.Thread(target=lambda: stdout_lines.extend(tap.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    downloading = threading.Event()

    def watch_stderr() -> None:
        for line in tap.stderr:  # type: ignore[union-attr]
            if "Downloading activity" in line:
                downloading.set()

    threading.Thread(target=watch_stderr, daemon=True).start()
    assert downloading.wait(60), "the tap never started a download"
    time.sleep(0.5)
    assert tap.poll() is None, "the tap finished before it could be killed; make the files bigger"
    tap.send_signal(signal.SIGKILL)
    tap.wait(10)
    reader.join(10)
    first = [json.loads(line) for line in stdout_lines if line.strip()]
    states = [m["value"] for m in first if m["type"] == "STATE"]
    assert states, "no STATE was emitted before the kill"
    last_state = states[-1]
    recorded = {
        stream: entry["alida_batch"]["id"]
        for stream, entry in last_state["bookmarks"].items()
        if "alida_batch" in entry
    }
    activity_streams = [
        s["tap_stream_id"] for s in catalog["streams"] if s["tap_stream_id"] not in FIXED_STREAM_KEYS
    ]
    assert set(activity_streams) <= set(recorded), recorded  # every job in flight was in STATE
    seq_at_kill = max(r["seq"] for r in sandbox.requests())

    rerun = run_tap(tmp_path, config, catalog=catalog, state=last_state)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    later = [r for r in sandbox.requests() if r["seq"] > seq_at_kill]
    created_again = [r for r in later if r["method"] == "POST" and r["path"].endswith("/responses/batch")]
    assert created_again == [], "the rerun created new activity batches instead of re-using them"
    polled = {r["path"].rsplit("/", 1)[-1] for r in later if "/batch/" in r["path"] and r["method"] == "GET"}
    assert {recorded[s] for s in activity_streams} <= polled
    for stream in activity_streams:
        assert "Re-using activity" in rerun.stderr and recorded[stream] in rerun.stderr

    # Union of both runs, deduplicated on primary keys, equals the truth.
    truth = sandbox.truth()
    union: dict[str, dict[Any, Any]] = {}
    for message in first + rerun.messages:
        if message["type"] != "RECORD":
            continue
        stream, row = message["stream"], message["record"]
        pk = FIXED_STREAM_KEYS.get(stream, ("activity_id", "response_id"))
        union.setdefault(stream, {})[tuple(row[k] for k in pk)] = row
    surveys = {a["id"]: a for a in truth["activities"] if a["activityType"] == "Survey"}
    for stream in activity_streams:
        rows = union[stream]
        activity_id = next(iter(rows.values()))["activity_id"]
        assert len(rows) == surveys[activity_id]["records"] == 6000
    assert len(union["member_profiles"]) == truth["members"]["members"]
    assert len(union["member_profile_values"]) == truth["members"]["member_variables"]
    assert "alida_batch" not in json.dumps(rerun.state)
