"""Bad input: clear messages, non-zero exits, nothing sent before settings are valid."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time

import pytest
from harness import FIXTURES, discover, executable, run_tap, select_all


def api_requests(sandbox):
    return [r for r in sandbox.requests() if not r["path"].startswith("/_sandbox")]


def test_missing_setting_is_named_before_any_request(fixture_sandbox, tmp_path):
    config = fixture_sandbox.config()
    del config["community_api_key_name"]
    run = run_tap(tmp_path, config)
    assert run.returncode != 0
    assert "community_api_key_name" in run.stderr
    assert api_requests(fixture_sandbox) == []


def test_no_region_nor_api_url(tmp_path):
    run = run_tap(tmp_path, {"client_id": "a", "client_secret": "b", "community_api_key_name": "c"})
    assert run.returncode != 0
    assert "'region'" in run.stderr and "'api_url'" in run.stderr


def test_plain_http_refused_off_loopback(tmp_path):
    config = {
        "client_id": "a",
        "client_secret": "b",
        "community_api_key_name": "c",
        "api_url": "http://api.example.com",
    }
    run = run_tap(tmp_path, config)
    assert run.returncode != 0
    assert "plain http" in run.stderr and "api_url" in run.stderr


def test_bad_region_code(tmp_path):
    config = {"client_id": "a", "client_secret": "b", "community_api_key_name": "c", "region": "https://x"}
    run = run_tap(tmp_path, config)
    assert run.returncode != 0 and "'region'" in run.stderr


def test_refused_token_names_the_settings_not_the_secret(fixture_sandbox, tmp_path):
    secret = "s3cr3t-Value-that-must-not-leak"
    run = run_tap(tmp_path, fixture_sandbox.config(client_secret=secret), "--discover")
    assert run.returncode != 0
    error = [line for line in run.stderr.splitlines() if "refused the token request" in line]
    assert error, run.stderr
    for setting in ("client_id", "client_secret", "region"):
        assert setting in error[0]
    assert secret not in run.stderr
    assert "Traceback" not in run.stderr


def test_unknown_activity_id_is_named(fixture_sandbox, tmp_path):
    missing = "00000000-dead-beef-0000-000000000000"
    run = run_tap(tmp_path, fixture_sandbox.config(activity_ids=[missing]), "--discover")
    assert run.returncode != 0
    assert f"'activity_ids' names activity '{missing}'" in run.stderr


def test_failed_export_names_activity_batch_and_error_message(start_sandbox, tmp_path):
    sandbox = start_sandbox("--fixtures", str(FIXTURES))
    config = sandbox.config()
    catalog = select_all(discover(tmp_path, config), only={"quick_poll"})
    failing = start_sandbox("--fixtures", str(FIXTURES), "--faults", "fail_job=1.0")
    run = run_tap(tmp_path, failing.config(), catalog=catalog)
    assert run.returncode != 0
    created = re.findall(r"Created batch ([0-9a-f-]{36}) for activity 'Quick Poll'", run.stderr)
    assert len(created) == 3  # settings.EXPORT_ATTEMPTS
    error = [line for line in run.stderr.splitlines() if "ERROR" in line and "export failed" in line]
    assert error, run.stderr
    assert created[-1] in error[0] and "'Quick Poll'" in error[0]
    assert "the data service timed out" in error[0]
    assert "). 3 batches were tried. Rerun the sync later" in error[0]
    assert run.records.get("quick_poll", []) == []


def test_a_failed_export_is_created_again(start_sandbox, tmp_path):
    sandbox = start_sandbox("--fixtures", str(FIXTURES))
    catalog = select_all(discover(tmp_path, sandbox.config()), only={"quick_poll"})
    failing = start_sandbox("--fixtures", str(FIXTURES), "--faults", "fail_job=1")
    run = run_tap(tmp_path, failing.config(), catalog=catalog)
    assert run.returncode == 0, run.stderr
    assert len(re.findall(r"Created batch [0-9a-f-]{36} for activity 'Quick Poll'", run.stderr)) == 2
    assert "creating a new batch (attempt 2 of 3)" in run.stderr
    assert len(run.records["quick_poll"]) == failing.truth()["activities"][1]["records"]


def test_stuck_export_gives_up_after_max_wait_to_start(start_sandbox, tmp_path):
    """Of two surveys, one export is stuck: discovery leaves that survey out (one ERROR) and
    goes on; with fail_fast it stops."""
    sandbox = start_sandbox("--fixtures", str(FIXTURES), "--faults", "stuck_job=1")
    config = sandbox.config(max_wait_to_start_seconds=0.5)
    run = run_tap(tmp_path, config, "--discover")
    assert run.returncode == 0, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "is left out of the catalog (discover again later)" in errors[0]
    assert "still pending" in errors[0] and "max_wait_to_start_seconds" in errors[0]
    assert len(run.messages[0]["streams"]) == 5 + 1  # the fixed streams and the other survey

    stopped = start_sandbox("--fixtures", str(FIXTURES), "--faults", "stuck_job=1")
    run = run_tap(tmp_path, stopped.config(max_wait_to_start_seconds=0.5, fail_fast=True), "--discover")
    assert run.returncode != 0
    assert "still pending" in run.stderr and "max_wait_to_start_seconds" in run.stderr


def test_debug_logs_carry_no_secret_token_or_signature(fixture_sandbox, tmp_path):
    secret = "sandbox"  # the sandbox's secret; use a distinctive api key to search for
    sandbox_key_run = run_tap(
        tmp_path,
        fixture_sandbox.config(api_key="k3y-that-must-not-leak"),
        env={"TAP_ALIDA_LOGLEVEL": "DEBUG"},
        catalog=select_all(discover(tmp_path, fixture_sandbox.config())),
    )
    assert sandbox_key_run.returncode == 0, sandbox_key_run.stderr
    log = sandbox_key_run.stderr
    assert "DEBUG" in log and "/storage/" in log  # urllib3 request lines are there…
    assert "sig=" not in log and "expires=" not in log  # …without their signatures
    assert "k3y-that-must-not-leak" not in log
    assert "Bearer" not in log and "access_token" not in log
    assert f'"{secret}"' not in log


def test_connection_test_checks_credentials_without_exporting(fixture_sandbox, tmp_path):
    run = run_tap(tmp_path, fixture_sandbox.config(), "--test")
    assert run.returncode == 0, run.stderr
    assert "Connection test passed" in run.stderr and "has 2 activities in scope" in run.stderr
    assert not [r for r in fixture_sandbox.requests() if r["method"] == "POST" and "batch" in r["path"]]
    refused = run_tap(tmp_path, fixture_sandbox.config(client_secret="wrong"), "--test")
    assert refused.returncode == 1
    assert "Alida refused the token request" in refused.stderr and "wrong" not in refused.stderr


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def startup_seconds() -> float:
    """How long the executable takes to start and exit on this (shared) machine."""
    started = time.monotonic()
    subprocess.run([executable("tap-alida"), "--version"], capture_output=True, check=True, timeout=120)
    return time.monotonic() - started


@pytest.mark.parametrize(
    "entry", [["--test"], ["--probe"], ["--discover"], []], ids=["test", "probe", "discover", "run"]
)
@pytest.mark.parametrize("host", ["refused", "unknown"])
def test_first_contact_fails_fast_and_once_naming_the_url(tmp_path, startup_seconds, entry, host):
    """Before: a refused loopback port was retried with backoff for ~20 s, and the error
    came twice (an ERROR log line, then ``tap-alida: error:``)."""
    api_url = f"http://127.0.0.1:{free_port()}" if host == "refused" else "https://alida-sandbox.invalid"
    config = {"api_url": api_url, "client_id": "a", "client_secret": "b", "community_api_key_name": "c"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    started = time.monotonic()
    run = subprocess.run(  # not run_tap: --probe prints a JSON report, not Singer messages
        [executable("tap-alida"), "--config", str(tmp_path / "config.json"), *entry],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("TAP_ALIDA_")},
    )
    elapsed = time.monotonic() - started
    assert run.returncode == 1
    if entry == ["--probe"]:
        report = json.loads(run.stdout)
        assert report["blocking"] == 1 and report["calls"][0]["call"] == "token"
    assert elapsed - startup_seconds < 5, f"{elapsed:.1f} s (start-up {startup_seconds:.1f} s): retried?"
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line or "error:" in line]
    assert len(errors) == 1, run.stderr
    why = "no connection could be made" if host == "refused" else "the host name does not resolve"
    assert f"{api_url}/oauth2/token: {why}" in errors[0] and "'api_url'" in errors[0]
    assert "retry" not in run.stderr and "Traceback" not in run.stderr
