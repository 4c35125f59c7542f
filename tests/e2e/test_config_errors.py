"""Every entry point names the setting and the problem; unknown keys get the closest name."""

from __future__ import annotations

import subprocess

import pytest
from harness import executable, run_tap

from tap_alida.settings import CONFIG_SCHEMA, removed_settings, unknown_settings

BASE = {
    "api_url": "http://127.0.0.1:9",
    "client_id": "a",
    "client_secret": "b",
    "community_api_key_name": "c",
}
BROKEN = [
    ({k: v for k, v in BASE.items() if k != "client_secret"}, "'client_secret' is a required property"),
    (
        {**BASE, "request_timeout_seconds": -1},
        "Setting 'request_timeout_seconds' is -1; it must be greater than 0.",
    ),
    ({**BASE, "start_date": "yesterday"}, "Setting 'start_date' is 'yesterday'; give an ISO-8601 date"),
]


def first_error(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if " ERROR " in line)


@pytest.mark.parametrize("mode", ["--test", "--discover", "sync"])
@pytest.mark.parametrize(("config", "problem"), BROKEN, ids=["missing key", "bad value", "bad date"])
def test_config_errors_are_named_by_every_entry_point(tmp_path, mode, config, problem):
    run = run_tap(tmp_path, config, *([] if mode == "sync" else [mode]), timeout=60)
    assert run.returncode == 1
    assert problem in first_error(run.stderr)
    assert "Traceback" not in run.stderr


def test_unknown_key_is_warned_with_the_closest_name(fixture_sandbox, tmp_path):
    config = fixture_sandbox.config(request_timout_seconds=3, zzz_unrelated=1)
    run = run_tap(tmp_path, config, "--test", timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    warnings = [s for s in run.stderr.splitlines() if " WARNING " in s and "is not a tap-alida" in s]
    assert len(warnings) == 2
    assert "'request_timout_seconds'" in warnings[0]
    assert "did you mean 'request_timeout_seconds'?" in warnings[0]
    assert "'zzz_unrelated'" in warnings[1] and "did you mean" not in warnings[1]


def test_a_removed_setting_is_one_warning_naming_its_replacement_never_a_failure(fixture_sandbox, tmp_path):
    config = fixture_sandbox.config(
        poll_interval_seconds=-1,
        poll_max_interval_seconds=3,
        max_retry_after_seconds=9,
        max_export_attempts=0,
    )
    run = run_tap(tmp_path, config, "--test", timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    warnings = [s for s in run.stderr.splitlines() if " WARNING " in s]
    assert len(warnings) == 4, run.stderr[-2000:]
    assert "'max_export_attempts' was removed and is ignored; it was replaced by a constant: 3" in warnings[0]
    assert (
        "'max_retry_after_seconds' was removed and is ignored; it was replaced by a constant" in warnings[1]
    )
    assert "'poll_interval_seconds' was removed" in warnings[2] and "at most 60 s" in warnings[2]
    assert not [w for w in warnings if "is not a tap-alida setting" in w]


def test_removed_settings_are_named_with_their_replacement_and_not_as_unknown():
    config = {"client_id": "a", "probe_activity_id": "x", "poll_intervall_seconds": 1}
    assert removed_settings(config) == [
        "Setting 'probe_activity_id' was removed and is ignored; it was replaced by the argument of "
        "`--probe`: `tap-alida --probe ACTIVITY_ID` (the setting is still used by a bare `--probe`)."
    ]
    assert unknown_settings(config, CONFIG_SCHEMA["properties"]) == [
        "Setting 'poll_intervall_seconds' is not a tap-alida setting and is ignored; "
        "`tap-alida --about` lists the settings."
    ]


def test_unknown_settings_lists_only_unknown_keys():
    known = CONFIG_SCHEMA["properties"]
    assert unknown_settings({"client_id": "a", "max_wait_seconds": 5}, known) == []
    assert unknown_settings({"activity_id": ["x"]}, known) == [
        "Setting 'activity_id' is not a tap-alida setting and is ignored; did you mean 'activity_ids'?"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "does not exist"),
        ('{"api_url": ', "is not valid JSON"),
        ("[1, 2]", "holds a JSON array, not an object"),
        ('{"client_id": NaN}', "is not valid JSON (NaN is not JSON)"),
    ],
    ids=["missing", "truncated", "array", "nan"],
)
@pytest.mark.parametrize("mode", ["--discover", "sync"])
def test_a_broken_config_file_is_one_error_naming_it(tmp_path, text, problem, mode):
    path = tmp_path / "settings.json"
    if text is not None:
        path.write_text(text)
    done = subprocess.run(
        [executable("tap-alida"), "--config", str(path), *([] if mode == "sync" else [mode])],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    assert f"The config file {path} {problem}" in first_error(done.stderr)
    assert "config.sample.json" in first_error(done.stderr)


STREAM = '{"streams": [{"tap_stream_id": "s", "schema": {}, %s}]}'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"streams": [', "is not valid JSON"),
        ("[1, 2]", "is not a Singer catalog: it holds a JSON array, not an object"),
        ('{"streams": "x"}', "'streams' is missing or not an array"),
        (
            '{"streams": [{"tap_stream_id": "s", "schema": {}, "metadata": {"a": 1}}]}',
            "'metadata' is not an array",
        ),
        (
            '{"streams": [{"tap_stream_id": "s", "schema": {}, "metadata": ["x"]}]}',
            "a 'metadata' entry is not",
        ),
        ('{"streams": [{"schema": {}}]}', "streams[0] has no 'tap_stream_id' string"),
        (
            '{"streams": [{"tap_stream_id": "s", "schema": Infinity}]}',
            "is not valid JSON (Infinity is not JSON)",
        ),
    ],
)
def test_a_broken_catalog_file_is_one_error_naming_it(fixture_sandbox, tmp_path, text, problem):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(text)
    run = run_tap(tmp_path, fixture_sandbox.config(), "--catalog", str(catalog), timeout=60)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr, run.stderr
    assert f"The catalog file {catalog} {problem}" in first_error(run.stderr) or (
        f"The catalog file {catalog}" in first_error(run.stderr) and problem in first_error(run.stderr)
    )
    assert "tap-alida --discover" in first_error(run.stderr)
    assert [r for r in fixture_sandbox.requests() if not r["path"].startswith("/_sandbox")] == []


def test_a_catalog_without_streams_warns_that_nothing_is_synced(fixture_sandbox, tmp_path):
    catalog = tmp_path / "catalog.json"
    catalog.write_text('{"streams": []}')
    run = run_tap(tmp_path, fixture_sandbox.config(), "--catalog", str(catalog), timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"The catalog file {catalog} has no streams: nothing is synced." in run.stderr
