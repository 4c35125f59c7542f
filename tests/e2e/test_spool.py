"""The spool folder (issue 17): a full disk is one clear error; a killed run's folder does not stay."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from harness import FIXTURES, executable, run_tap

from tap_alida.export import download, spool
from tap_alida.export.batch import Batch
from tap_alida.export.spool import OWNER_FILE, SpoolError, remove_stale

QP = "5f3c2a10-1111-4b2c-9d3e-a62c0059cb00"
TRACEBACK = "Traceback (most recent call last)"


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def spool_folder(parent: Path, name: str, owner: str | None, age: float) -> Path:
    folder = parent / name
    folder.mkdir()
    (folder / "tap-alida-batch-x.json").write_bytes(b"{}")
    if owner is not None:
        (folder / OWNER_FILE).write_text(owner)
    then = time.time() - age
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (then, then))
    return folder


# --------------------------------------------------------------------------- 12. a full disk


def test_a_full_disk_while_spooling_is_one_clear_error(tmp_path, monkeypatch):
    """A real ENOSPC from the kernel: the spooled file is opened on /dev/full."""
    real_fdopen = os.fdopen

    def fdopen_on_full_device(fd: int, mode: str) -> Any:
        os.close(fd)
        return real_fdopen(os.open("/dev/full", os.O_WRONLY), mode)

    monkeypatch.setattr(download.os, "fdopen", fdopen_on_full_device)
    batch = Batch("activity", "b-1", "activity 'A' (a1)")
    job = download.Download(None, batch, str, str)  # type: ignore[arg-type]
    monkeypatch.setattr(job, "_into", lambda out: out.write(b"x" * 1_000_000), raising=False)
    with pytest.raises(SpoolError) as raised:
        job.run(str(tmp_path))
    message = str(raised.value)
    assert f"No space left in the spool folder {tmp_path}" in message
    assert "activity 'A' (a1), batch b-1" in message and "point TMPDIR at a folder" in message
    assert list(tmp_path.iterdir()) == []  # the partial file is gone


def test_other_os_errors_are_not_called_a_full_disk(tmp_path):
    assert spool.disk_full(PermissionError(13, "Permission denied"), tmp_path, "x") is None
    assert spool.disk_full(ValueError("x"), tmp_path, "x") is None
    assert isinstance(spool.disk_full(OSError(28, "No space left on device"), tmp_path, "x"), SpoolError)


def test_an_unwritable_temp_folder_is_one_clear_error(tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(SpoolError, match=f"spool folder for export files in {missing}.*TMPDIR"):
        spool.make_workdir(str(missing))


# --------------------------------------------------------------------------- 13. folders of killed runs


def test_stale_spool_folders_of_dead_runs_are_removed(tmp_path):
    host = socket.gethostname()
    dead = dead_pid()
    stale = spool_folder(tmp_path, "tap-alida-dead", f"{host} {dead}\n", age=3600)
    fresh = spool_folder(tmp_path, "tap-alida-fresh", f"{host} {dead}\n", age=10)  # just died: wait
    alive = spool_folder(tmp_path, "tap-alida-alive", f"{host} {os.getpid()}\n", age=3600)
    elsewhere = spool_folder(tmp_path, "tap-alida-other-host", f"not-{host} {dead}\n", age=3600)
    unowned = spool_folder(tmp_path, "tap-alida-pg-x", None, age=3600)  # e.g. the tests' PostgreSQL
    assert remove_stale(tmp_path) == [stale]
    assert not stale.exists()
    assert fresh.exists() and alive.exists() and elsewhere.exists() and unowned.exists()


def test_a_new_folder_names_its_owner(tmp_path):
    folder = spool.make_workdir(str(tmp_path))
    assert folder.name.startswith("tap-alida-")
    assert (folder / OWNER_FILE).read_text() == f"{socket.gethostname()} {os.getpid()}\n"


def test_the_folder_of_a_killed_run_is_removed_by_the_next_run(start_sandbox, tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    slow = start_sandbox(
        "--activities", "1", "--members", "20", "--responses", "6000", "--faults", "slow_body=1.0"
    )
    (tmp_path / "config.json").write_text(json.dumps(slow.config()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_ALIDA_")}
    env["TMPDIR"] = str(temp)
    tap = subprocess.Popen(
        [executable("tap-alida"), "--config", str(tmp_path / "config.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    downloading = threading.Event()

    def watch() -> None:
        for line in tap.stderr:  # type: ignore[union-attr]
            if "Downloading activity" in line:
                downloading.set()

    threading.Thread(target=watch, daemon=True).start()
    assert downloading.wait(60), "the tap never started a download"
    time.sleep(0.3)
    tap.send_signal(signal.SIGKILL)
    tap.wait(10)
    (left,) = temp.glob("tap-alida-*")
    assert (left / OWNER_FILE).read_text() == f"{socket.gethostname()} {tap.pid}\n"
    assert [p for p in left.iterdir() if p.name != OWNER_FILE], "the killed run had a file on disk"
    then = time.time() - 3600  # the kill was an hour ago
    for path in [*left.iterdir(), left]:
        os.utime(path, (then, then))

    fixture = start_sandbox("--fixtures", str(FIXTURES))
    run = run_tap(tmp_path, fixture.config(activity_ids=[QP]), env={"TMPDIR": str(temp)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert TRACEBACK not in run.stderr
    assert not left.exists()
    assert f"Removed the spool folder {left} of an earlier run that is gone." in run.stderr
    assert list(temp.glob("tap-alida-*")) == []  # and the run removed its own at exit
