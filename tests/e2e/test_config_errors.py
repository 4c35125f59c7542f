"""Every entry point names the setting and the problem; unknown keys get the closest name."""

from __future__ import annotations

import pytest
from harness import run_tap

from tap_alida.settings import CONFIG_SCHEMA, unknown_settings

BASE = {
    "api_url": "http://127.0.0.1:9",
    "client_id": "a",
    "client_secret": "b",
    "community_api_key_name": "c",
}
BROKEN = [
    ({k: v for k, v in BASE.items() if k != "client_secret"}, "'client_secret' is a required property"),
    (
        {**BASE, "poll_interval_seconds": -1},
        "Setting 'poll_interval_seconds' is -1; it must be greater than 0.",
    ),
]


def first_error(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if " ERROR " in line)


@pytest.mark.parametrize("mode", ["--test", "--discover", "sync"])
@pytest.mark.parametrize(("config", "problem"), BROKEN, ids=["missing key", "bad value"])
def test_config_errors_are_named_by_every_entry_point(tmp_path, mode, config, problem):
    run = run_tap(tmp_path, config, *([] if mode == "sync" else [mode]), timeout=60)
    assert run.returncode == 1
    assert problem in first_error(run.stderr)
    assert "Traceback" not in run.stderr


def test_unknown_key_is_warned_with_the_closest_name(fixture_sandbox, tmp_path):
    config = fixture_sandbox.config(poll_intervall_seconds=3, zzz_unrelated=1)
    run = run_tap(tmp_path, config, "--test", timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    warnings = [s for s in run.stderr.splitlines() if " WARNING " in s and "is not a tap-alida" in s]
    assert len(warnings) == 2
    assert "'poll_intervall_seconds'" in warnings[0]
    assert "did you mean 'poll_interval_seconds'?" in warnings[0]
    assert "'zzz_unrelated'" in warnings[1] and "did you mean" not in warnings[1]


def test_unknown_settings_lists_only_unknown_keys():
    known = CONFIG_SCHEMA["properties"]
    assert unknown_settings({"client_id": "a", "max_wait_seconds": 5}, known) == []
    assert unknown_settings({"activity_id": ["x"]}, known) == [
        "Setting 'activity_id' is not a tap-alida setting and is ignored; did you mean 'activity_ids'?"
    ]
