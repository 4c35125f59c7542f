"""Test helpers: a real sandbox server process, the real tap-alida executable, Meltano,
loaders and a throw-away PostgreSQL server (fixtures that use them are in conftest).

Nothing here patches HTTP: the sandbox listens on loopback and the tap is run
as a subprocess, exactly as Meltano runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The sandbox's exports finish in milliseconds: every tap these tests start (in process or as a
# subprocess) checks a batch's status every 0.05-0.2 s, not 1-60 s (tap_alida.settings.TEST_POLL_ENV).
os.environ.setdefault("ALIDA_TEST_POLL_SECONDS", "0.05,0.2")
# Primary keys of the fixed streams (activity streams: activity_id + response_id).
FIXED_STREAM_KEYS = {
    "activity_fields": ("activity_id", "field_id"),
    "activity_answers": ("activity_id", "response_id", "field_id", "value_index"),
    "member_profiles": ("member_id",),
    "member_profile_values": ("member_id", "variable_id"),
    "activities": ("activity_id",),
}
# Filled by test_faults; printed as a table at the end of the session (conftest).
FAULT_RESULTS: list[dict[str, Any]] = []
# Per sequence of the simulation (test_simulation): (nights, comparisons with a fresh load);
# their totals are printed at the end.
SIMULATED_NIGHTS: list[tuple[int, int]] = []


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "community"
BIN = Path(sys.executable).parent


def executable(name: str) -> str:
    """A console script of this environment (the venv the tests run in)."""
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    assert found, f"{name} is not installed in this environment"
    return found


class Sandbox:
    """A running ``tap-alida-sandbox`` process."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [executable("tap-alida-sandbox"), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.process.kill()
            _, err = self.process.communicate()
            raise RuntimeError(f"sandbox did not start: {line!r} {err}")
        self.url = line

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.load(response)

    def post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def truth(self, since: str | None = None) -> dict[str, Any]:
        return self.get("/_sandbox/truth" + (f"?sinceDatetime={since}" if since else ""))

    def requests(self) -> list[dict[str, Any]]:
        return self.get("/_sandbox/requests")

    def config(self, **overrides: Any) -> dict[str, Any]:
        config = {
            "api_url": self.url,
            "client_id": "sandbox",
            "client_secret": "sandbox",
            "community_api_key_name": "sandbox",
        }
        config.update(overrides)
        return {k: v for k, v in config.items() if v is not None}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def run_meltano(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """The project's ``meltano`` with a private system database and no inherited plugin settings."""
    process_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TAP_ALIDA_", "TARGET_", "MELTANO_"))
    }
    # Each test's own definitions cache (cache_dir defaults under XDG_CACHE_HOME).
    process_env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    process_env.update(
        {
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
            **(env or {}),
        }
    )
    return subprocess.run(
        [executable("meltano"), *args],
        cwd=ROOT,
        env=process_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_loader(tmp_path: Path, loader: str, config: dict[str, Any], messages: str) -> None:
    """Pipe Singer messages into a loader that `meltano install` put in the project; it must succeed."""
    config_path = tmp_path / f"{loader}.json"
    config_path.write_text(json.dumps(config))
    executable = ROOT / ".meltano" / "loaders" / loader / "venv" / "bin" / loader
    done = subprocess.run(
        [str(executable), "--config", str(config_path)],
        input=messages,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def postgres_binary(name: str) -> str:
    """A PostgreSQL server program: on PATH, or in Debian's versioned folder."""
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    assert found, f"PostgreSQL's {name} is not installed; `python3 dev.py test` installs it"
    return str(found)


@dataclass
class Postgres:
    port: int
    user: str = "postgres"

    def target_config(self, schema: str, **settings: Any) -> dict[str, Any]:
        """target-postgres settings for this server (trust auth) loading into ``schema``:
        ``add_record_metadata`` on, as meltano.yml sets it, plus ``settings``."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "password": "unused-trust-auth",
            "database": "postgres",
            "default_target_schema": schema,
            "add_record_metadata": True,
            **settings,
        }

    def sql(self, query: str) -> list[list[str]]:
        """Rows of a query through psql (unaligned, tab-separated)."""
        done = subprocess.run(
            [
                postgres_binary("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-AtF",
                "\t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                query,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return [line.split("\t") for line in done.stdout.splitlines()]


@dataclass
class TapRun:
    """Parsed output of one tap process."""

    returncode: int
    stderr: str
    messages: list[dict[str, Any]]
    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    states: list[dict[str, Any]] = field(default_factory=list)
    stdout: str = ""

    @property
    def state(self) -> dict[str, Any]:
        return self.states[-1] if self.states else {}


def run_tap(
    tmp_path: Path,
    config: dict[str, Any],
    *args: str,
    catalog: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> TapRun:
    """Run the real ``tap-alida`` executable and parse its Singer output."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    command = [executable("tap-alida"), "--config", str(config_path), *args]
    if catalog is not None:
        (tmp_path / "catalog.json").write_text(json.dumps(catalog))
        command += ["--catalog", str(tmp_path / "catalog.json")]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        command += ["--state", str(tmp_path / "state.json")]
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_ALIDA_")}
    process_env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # each test's own definitions cache
    process_env.update(env or {})
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=process_env, check=False
    )
    return parse_run(done.returncode, done.stderr, done.stdout, args)


def run_tap_here(
    tmp_path: Path,
    config: dict[str, Any],
    *args: str,
    catalog: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> TapRun:
    """``run_tap``, in this process: the same entry point (``tap_alida.tap.main``) and
    files, without a new interpreter and the SDK's import per run (0.8 s of a 1 s run on
    a small community). For tests that run the tap hundreds of times (the simulation);
    the tap still talks to the sandbox over a real socket. Its exit code is the one
    ``sys.exit`` would give; its stdout and stderr are captured."""
    import contextlib
    import io
    import logging

    from tap_alida.tap import main

    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    argv = ["--config", str(config_path), *args]
    if catalog is not None:
        (tmp_path / "catalog.json").write_text(json.dumps(catalog))
        argv += ["--catalog", str(tmp_path / "catalog.json")]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        argv += ["--state", str(tmp_path / "state.json")]
    saved = {k: v for k, v in os.environ.items() if k.startswith("TAP_ALIDA_") or k == "XDG_CACHE_HOME"}
    for name in saved:
        del os.environ[name]
    os.environ.update({"XDG_CACHE_HOME": str(tmp_path / "cache"), **(env or {})})
    out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), io.StringIO()
    code = 0
    # The SDK adds a root handler on sys.stderr per run (``Tap.cli``): the run's own, then
    # removed; pytest's log capture is left out of these runs (their stderr is kept here).
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            out.flush()
    finally:
        root.handlers, root.level = handlers, level
        for name in [k for k in os.environ if k.startswith("TAP_ALIDA_") or k == "XDG_CACHE_HOME"]:
            del os.environ[name]
        os.environ.update(saved)
    return parse_run(code, err.getvalue(), out.buffer.getvalue().decode("utf-8"), args)  # type: ignore[attr-defined]


def run_tap_killed(
    tmp_path: Path,
    config: dict[str, Any],
    *,
    after_records: int,
    catalog: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> TapRun:
    """``run_tap``, killed with SIGKILL once ``after_records`` RECORD lines were read (a crash
    mid-run: an OOM kill, a lost node). What it wrote before is returned, as a target saw it."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    command = [executable("tap-alida"), "--config", str(config_path)]
    if catalog is not None:
        (tmp_path / "catalog.json").write_text(json.dumps(catalog))
        command += ["--catalog", str(tmp_path / "catalog.json")]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        command += ["--state", str(tmp_path / "state.json")]
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_ALIDA_")}
    process_env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    process_env.update(env or {})
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=process_env)
        assert process.stdout is not None
        lines, records = [], 0
        for line in process.stdout:
            if not line.endswith(b"\n"):
                break  # a line cut by the kill: a target never sees it
            lines.append(line.decode())
            if b'"type":"RECORD"' in line.replace(b" ", b""):
                records += 1
                if records >= after_records:
                    process.kill()
                    break
        process.stdout.close()
        code = process.wait()
        stderr.seek(0)
        return parse_run(code, stderr.read().decode(errors="replace"), "".join(lines), ())


def parse_run(code: int, stderr: str, stdout: str, args: tuple[str, ...]) -> TapRun:
    """A tap's exit code and output as a ``TapRun``."""
    run = TapRun(code, stderr, [], stdout=stdout)
    if "--discover" in args:
        run.messages = [json.loads(stdout)] if code == 0 else []
        return run
    for line in stdout.splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        run.messages.append(message)
        if message.get("type") == "RECORD":
            run.records[message["stream"]].append(message["record"])
        elif message.get("type") == "SCHEMA":
            run.schemas[message["stream"]] = message["schema"]
        elif message.get("type") == "STATE":
            run.states.append(message["value"])
    return run


def discover(tmp_path: Path, config: dict[str, Any]) -> dict[str, Any]:
    run = run_tap(tmp_path, config, "--discover")
    assert run.returncode == 0, run.stderr
    return run.messages[0]


def select_all(catalog: dict[str, Any], only: set[str] | None = None) -> dict[str, Any]:
    """Mark streams selected (all, or only the named ones) in a discovered catalog."""
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = only is None or stream["tap_stream_id"] in only
    return catalog


def without_batches(catalog: dict[str, Any]) -> dict[str, Any]:
    """The catalog without the batches discovery made (they differ from night to night)."""
    copied = json.loads(json.dumps(catalog))
    for stream in copied["streams"]:
        for entry in stream["metadata"]:
            entry["metadata"].pop("alida-batch", None)
    return copied


def stream_schema(catalog: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s["schema"] for s in catalog["streams"] if s["tap_stream_id"] == name)


def postgres_server() -> Iterator[Postgres]:
    """A throw-away PostgreSQL server on loopback (trust auth), for the whole session."""
    # Not under pytest's tmp folder: its parents are private to root, and the
    # server runs as the 'postgres' user when the tests run as root.
    directory = Path(tempfile.mkdtemp(prefix="tap-alida-pg-"))
    data = directory / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        shutil.chown(directory, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, postgres_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            *as_user,
            postgres_binary("postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(directory),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        ready = subprocess.run(
            [postgres_binary("pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
            capture_output=True,
            check=False,
        )
        if ready.returncode == 0:
            break
        time.sleep(0.2)
    else:
        server.kill()
        raise RuntimeError("PostgreSQL did not start")
    try:
        yield Postgres(port)
    finally:  # also when the session ends in an error: no server left running
        server.terminate()
        server.wait(30)
        shutil.rmtree(directory, ignore_errors=True)


def project_copy(tmp_path: Path, meltano_yml: str | None = None) -> Path:
    """A temporary copy of the Meltano project whose tap-alida runs this checkout's code.

    Meltano drops PYTHONPATH and would otherwise run the installed package; the
    installed plugins (`.meltano`) and `.venv` are the real ones, linked.
    """
    project = tmp_path / "project"
    project.mkdir()
    tap = project / "tap-alida-here"
    tap.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m tap_alida "$@"\n')
    tap.chmod(0o755)
    text = meltano_yml if meltano_yml is not None else (ROOT / "meltano.yml").read_text()
    (project / "meltano.yml").write_text(text.replace("executable: tap-alida\n", f"executable: {tap}\n", 1))
    shutil.copy(ROOT / "config.sample.json", project)
    # The dbt package the dbt utilities build (--project-dir dbt_alida), without dbt's own files.
    ignored = shutil.ignore_patterns("target", "logs", "dbt_packages")
    shutil.copytree(ROOT / "dbt_alida", project / "dbt_alida", ignore=ignored)
    (project / "output").mkdir()  # as in a checkout (output/.gitkeep)
    (project / ".meltano").symlink_to(ROOT / ".meltano")
    (project / ".venv").symlink_to(BIN.parent)
    return project


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without plugin settings, with a private Meltano system database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_ALIDA_", "TARGET_", "MELTANO_"))}
    env["MELTANO_DATABASE_URI"] = f"sqlite:///{tmp_path / 'meltano.db'}"
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    return {**env, **extra}
