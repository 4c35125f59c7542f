"""The fault matrix: every sandbox fault alone, and a storm of them together.

Each case runs the real tap against a sandbox that injects the fault and checks
one of two outcomes against a clean reference run of the same community:

* the run succeeds and emitted exactly the reference records, each once; or
* it fails with a message naming the cause, and a rerun from its last STATE
  (same sandbox, the fault now spent) completes; the union of both runs,
  deduplicated on primary keys, is exactly the reference.

Run at DEBUG with a distinctive secret and API key, no output line may carry a
secret, an access token the sandbox issued, or a storage signature.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from harness import FAULT_RESULTS, FIXED_STREAM_KEYS, Sandbox, TapRun, discover, run_tap, select_all

DATA = ("--seed", "7", "--activities", "2", "--members", "60", "--responses", "400", "--fields", "14")
SECRET = "s3cret-that-must-not-leak"
API_KEY = "k3y-that-must-not-leak"
VOLATILE = {"batch_id", "last_sync_date", "last_exported_at", "last_export_records"}  # about earlier runs
FIXED_KEYS = FIXED_STREAM_KEYS


def keyed(run: TapRun) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Records per stream by primary key; asserts no key was emitted twice."""
    out: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for stream, rows in run.records.items():
        pk = FIXED_KEYS.get(stream, ("activity_id", "response_id"))
        by_key = out.setdefault(stream, {})
        for row in rows:
            key = tuple(row[k] for k in pk)
            assert key not in by_key, f"{stream}: {key} emitted twice in one run"
            by_key[key] = {k: v for k, v in row.items() if k not in VOLATILE}
    return out


@dataclass
class Reference:
    sandbox: Sandbox
    catalog: dict[str, Any]
    records: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    sandbox = Sandbox(*DATA)
    tmp = tmp_path_factory.mktemp("reference")
    catalog = select_all(discover(tmp, sandbox.config()))
    run = run_tap(tmp, sandbox.config(), catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    ref = Reference(sandbox, catalog, keyed(run))
    truth = sandbox.truth()
    surveys = [a for a in truth["activities"] if a["activityType"] == "Survey"]
    assert [len(ref.records[s]) for s in ref.records if s not in FIXED_KEYS] == [
        a["records"] for a in surveys
    ]
    assert len(ref.records["member_profiles"]) == truth["members"]["members"]
    yield ref
    sandbox.stop()


@dataclass(frozen=True)
class Case:
    name: str
    faults: str
    expect: str = "complete"  # or "fail then resume"
    message: tuple[str, ...] = ()  # what the error line must say
    sandbox_args: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    # Streams to select (default: all). Count faults that must hit every batch of
    # one export select a single activity, so concurrent jobs cannot share the count.
    only: str | None = None


CASES = [
    Case("rate_limit", "rate_limit=0.15"),
    Case(
        "rate_limit beyond cap",
        "rate_limit=1",
        "fail then resume",
        ("asked to wait", "MAX_RETRY_AFTER_SECONDS"),
        ("--retry-after", "600"),
    ),
    Case("server_error", "server_error=0.15"),
    Case(
        "server_error exhausting tries",
        "server_error=3",
        "fail then resume",
        ("after 3 attempts", "max_request_attempts"),
        config={"max_request_attempts": 3},
    ),
    Case("drop_download", "drop_download=0.5"),
    Case("drop_download, no redirect", "drop_download=0.5", sandbox_args=("--redirect", "none")),
    Case("drop_download, Range ignored", "drop_download=0.5", sandbox_args=("--ranges", "ignore")),
    Case("slow_body", "slow_body=1.0", config={"request_timeout_seconds": 5}),
    Case("expire_link", "expire_link=0.5"),
    Case("token_expiry", "token_expiry=0.2"),
    Case("records_first", "records_first=1.0"),
    Case("fail_job once", "fail_job=1"),
    Case(
        "fail_job every batch",
        "fail_job=3",
        "fail then resume",
        ("export failed", "the data service timed out", "3 batches were tried"),
        only="first activity",
    ),
    Case("truncate_file once", "truncate_file=1"),
    Case(
        "truncate_file every batch",
        "truncate_file=3",
        "fail then resume",
        (
            "is truncated",
            "ends at byte",
            "bookmark was not advanced.",
            "3 batches were tried. Rerun the sync later",
        ),
        only="first activity",
    ),
    Case(
        "stuck_job",
        "stuck_job=1",
        "fail then resume",
        ("still pending", "max_wait_to_start_seconds"),
        config={"max_wait_to_start_seconds": 1},
    ),
    Case(
        "storm",
        "rate_limit=0.1,server_error=0.1,drop_download=0.3,slow_body=0.3,expire_link=0.3,"
        "token_expiry=0.2,fail_job=1,truncate_file=1,records_first=0.5",
    ),
]


def retries_in(log: str) -> int:
    """Retries the tap logged: HTTP retries, resumed downloads, fresh links, new batches."""
    markers = (
        "; retry ",
        "resuming from there",
        "fetching a fresh one",
        "creating a new batch",
        "renewing the token",
    )
    return sum(line.count(m) for line in log.splitlines() for m in markers)


def assert_no_leak(sandbox: Sandbox, *outputs: str) -> None:
    issued = sandbox.get("/_sandbox/issued")
    assert issued["tokens"]
    for text in outputs:
        assert SECRET not in text and API_KEY not in text
        assert "sig=" not in text
        for token in issued["tokens"]:
            assert token not in text
        for signature in issued["signatures"]:
            assert signature not in text


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(case: Case, reference: Reference, start_sandbox: Any, tmp_path: Any) -> None:
    sandbox = start_sandbox(
        *DATA, "--client-secret", SECRET, "--api-key", API_KEY, "--faults", case.faults, *case.sandbox_args
    )
    config = sandbox.config(client_secret=SECRET, api_key=API_KEY, **case.config)
    debug = {"TAP_ALIDA_LOGLEVEL": "DEBUG"}
    catalog, expected = reference.catalog, reference.records
    if case.only:
        first_activity = next(s for s in expected if s not in FIXED_KEYS)
        catalog = select_all(copy.deepcopy(catalog), only={first_activity})
        expected = {first_activity: expected[first_activity]}
    started = time.monotonic()
    first = run_tap(tmp_path, config, catalog=catalog, env=debug)
    runs = [first]
    if case.expect == "complete":
        assert first.returncode == 0, first.stderr[-4000:]
        assert keyed(first) == expected
        # Discovery (definition-only reads) survives the same fault.
        discovered = run_tap(tmp_path, config, "--discover", env=debug)
        runs.append(discovered)
        assert discovered.returncode == 0, discovered.stderr[-4000:]
        schemas = {s["tap_stream_id"]: s["schema"] for s in discovered.messages[0]["streams"]}
        assert schemas == {s["tap_stream_id"]: s["schema"] for s in reference.catalog["streams"]}
    else:
        assert first.returncode != 0, f"{case.name}: expected a failure"
        errors = [line for line in first.stderr.splitlines() if " ERROR " in line or "error:" in line]
        assert any(all(m in line for m in case.message) for line in errors), first.stderr[-4000:]
        assert "Traceback" not in first.stderr
        rerun = run_tap(tmp_path, config, catalog=catalog, state=first.state, env=debug)
        runs.append(rerun)
        assert rerun.returncode == 0, rerun.stderr[-4000:]
        union = keyed(first)
        for stream, rows in keyed(rerun).items():
            union.setdefault(stream, {}).update(rows)
        assert union == expected
        if "member_profiles" in expected:
            assert "replication_key_value" in rerun.state["bookmarks"]["member_profile_values"]
    for run in runs:
        assert "alida_batch" not in str(run.state) or run.returncode != 0  # forgotten once consumed
        assert ".; creating a new batch" not in run.stderr  # one sentence, not a stop then a clause
    assert_no_leak(sandbox, *(r.stdout for r in runs), *(r.stderr for r in runs))
    storage = [r for r in sandbox.requests() if r["path"].startswith("/storage/")]
    assert not [r for r in storage if r["authorization"] or r["x_api_key"]], "credentials sent to storage"
    if case.name.startswith("drop_download"):
        files = [r for r in sandbox.requests() if "/storage/" in r["path"] or "/files/" in r["path"]]
        resumed = [r for r in files if r["range"] and r["status"] != 302]
        assert resumed, f"no download was resumed with Range: {files}"
        if "ignored" in case.name:
            assert all(r["status"] == 200 for r in resumed)  # …so the tap started over
        else:
            assert all(r["status"] == 206 for r in resumed)
    fired = sandbox.get("/_sandbox/faults")["fired"]
    assert fired, f"{case.name}: the sandbox never injected the fault"
    FAULT_RESULTS.append(
        {
            "fault": case.name,
            "outcome": "complete" if case.expect == "complete" else "failed, rerun completed",
            "fired": ", ".join(f"{k}×{v}" for k, v in sorted(fired.items())),
            "retries": sum(retries_in(r.stderr) for r in runs),
            "seconds": round(time.monotonic() - started, 1),
        }
    )


def test_token_renewed_ahead_of_expiry(reference: Reference, start_sandbox: Any, tmp_path: Any) -> None:
    """Tokens that live 2 s, exports that take 3 s: renewed before expiry, no 401 at all."""
    sandbox = start_sandbox(*DATA, "--token-ttl", "2", "--job-delay", "3")
    run = run_tap(tmp_path, sandbox.config(), catalog=reference.catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    assert keyed(run) == reference.records
    assert run.stderr.count("Obtained an access token") >= 2
    assert not [r for r in sandbox.requests() if r["status"] == 401]
