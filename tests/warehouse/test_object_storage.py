"""BATCH files in object storage: tap → S3 (moto's server on loopback) → target-postgres.

Credentials and endpoint reach both sides the way a user sets them for a real
bucket or MinIO: the standard AWS environment variables (`AWS_ENDPOINT_URL` is
honoured by botocore, hence by s3fs). target-postgres reads the files through
fsspec too, so it needs s3fs next to it (docs/loading.md "Object storage"); here s3fs is
added to its environment through PYTHONPATH, in versions pinned to what that
environment already has.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from harness import FIXED_STREAM_KEYS, ROOT, discover, run_tap, select_all
from moto.server import ThreadedMotoServer

BUCKET = "alida-batches"
TARGET_VENV = ROOT / ".meltano" / "loaders" / "target-postgres" / "venv"


@pytest.fixture
def s3() -> Any:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    client.create_bucket(Bucket=BUCKET)
    client.env = env  # type: ignore[attr-defined]
    yield client
    server.stop()


def s3fs_overlay(tmp_path: Path) -> Path:
    """s3fs for target-postgres' environment, its shared dependencies pinned to that environment's."""
    site = next((TARGET_VENV / "lib").glob("python3*/site-packages"))
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--path", str(site)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(frozen)
    fsspec = next(line.split("==")[1] for line in frozen.splitlines() if line.startswith("fsspec=="))
    overlay = tmp_path / "overlay"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--target",
            str(overlay),
            "-c",
            str(constraints),
            f"s3fs=={fsspec}",  # s3fs and fsspec are released in lockstep
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return overlay


def test_batch_files_in_s3_loaded_by_target_postgres(start_sandbox, s3, postgres, tmp_path):
    sandbox = start_sandbox("--activities", "3", "--members", "40", "--responses", "30")
    catalog = select_all(discover(tmp_path, sandbox.config()))
    batch_config = {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": f"s3://{BUCKET}/alida/run-1", "prefix": "alida-"},
    }
    run = run_tap(tmp_path, sandbox.config(batch_config=batch_config), catalog=catalog, env=s3.env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not run.records
    # Full-table streams of one thing empty their table first; not the streams of several surveys.
    activated = {m["stream"] for m in run.messages if m["type"] == "ACTIVATE_VERSION"}
    assert "member_profiles" in activated and not activated & {"activity_answers", "activity_fields"}
    manifests = {m["stream"]: m["manifest"] for m in run.messages if m["type"] == "BATCH"}
    assert set(manifests) == {s["tap_stream_id"] for s in catalog["streams"]}

    # The files are in the bucket, under the root and prefix, and nowhere else.
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    urls = [url for files in manifests.values() for url in files]
    assert all(url.startswith(f"s3://{BUCKET}/alida/run-1/alida-") for url in urls), urls
    assert keys == {url.removeprefix(f"s3://{BUCKET}/") for url in urls}

    def lines(url: str) -> int:
        body = s3.get_object(Bucket=BUCKET, Key=url.removeprefix(f"s3://{BUCKET}/"))["Body"].read()
        return len(gzip.decompress(body).splitlines())

    counts = {stream: sum(lines(url) for url in files) for stream, files in manifests.items()}
    truth = sandbox.truth()
    surveys = [a for a in truth["activities"] if "records" in a]
    assert counts["activity_fields"] == sum(a["fields"] for a in surveys)
    assert counts["activity_answers"] == sum(a["values"] for a in surveys)
    assert counts["member_profiles"] == truth["members"]["members"] == 40
    assert counts["member_profile_values"] == truth["members"]["member_variables"]
    assert counts["activities"] == len(truth["activities"])
    activity_streams = set(counts) - set(FIXED_STREAM_KEYS)
    assert len(activity_streams) == 3
    assert sum(counts[s] for s in activity_streams) == sum(a["records"] for a in surveys) == 90

    # State and bookmarks as in RECORD mode, but for the row versions: BATCH rows carry none,
    # so their marks keep none (a later RECORD run exports those surveys again).
    records_run = run_tap(tmp_path, sandbox.config(), catalog=catalog)
    assert records_run.returncode == 0, records_run.stderr[-3000:]
    assert comparable(run.state) == comparable(records_run.state)
    for name in ("activity_answers", "activity_fields"):
        batch_marks = run.state["bookmarks"][name]["alida_last_exports"].values()
        record_marks = records_run.state["bookmarks"][name]["alida_last_exports"].values()
        assert all("version" not in m for m in batch_marks)
        assert all("version" in m for m in record_marks)
    assert run.state["bookmarks"]["member_profile_values"]["replication_key_value"]

    # target-postgres reads the files from the bucket and loads every row.
    target_config = tmp_path / "target-postgres.json"
    target_config.write_text(json.dumps(postgres.target_config("alida_s3")))
    loaded = subprocess.run(
        [str(TARGET_VENV / "bin" / "target-postgres"), "--config", str(target_config)],
        input=run.stdout,
        env={**s3.env, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(s3fs_overlay(tmp_path))},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    for stream, expected in counts.items():
        (n,) = postgres.sql(f'select count(*) from alida_s3."{stream}" where _sdc_deleted_at is null')[0]
        assert int(n) == expected > 0, stream


def comparable(state: dict) -> dict:
    """STATE without what differs between two runs by construction: the batch of each
    export mark, when Alida created it and the rows' version (the marks themselves, and record
    counts, stay)."""

    def mark(entry: dict) -> dict:
        return {k: v for k, v in entry.items() if k not in ("created_at", "batch_id", "version")}

    out = {}
    for stream, bookmark in state.get("bookmarks", {}).items():
        bookmark = dict(bookmark)
        if "alida_last_export" in bookmark:
            bookmark["alida_last_export"] = mark(bookmark["alida_last_export"])
        if "alida_last_exports" in bookmark:
            bookmark["alida_last_exports"] = {a: mark(m) for a, m in bookmark["alida_last_exports"].items()}
        out[stream] = bookmark
    return out
