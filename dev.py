#!/usr/bin/env python3
"""Set-up commands for a fresh machine that has only Python 3.11+.

    python3 dev.py demo   # build .venv, start the sandbox, meltano run tap-alida target-duckdb
    python3 dev.py test   # build .venv, install Meltano plugins, lint, type-check, run every test
    python3 dev.py test --fast   # the unit tier only (no sockets, no subprocesses): seconds
    python3 dev.py docs   # rewrite README's settings table from `tap-alida --about --format=markdown`

Only the standard library is used here: this script creates the environment.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
ENV = {
    **os.environ,
    "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PYTHONUNBUFFERED": "1",
}


def run(*command: str | Path, **kwargs) -> None:
    print("+", " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], cwd=ROOT, env=ENV, check=True, **kwargs)


def fingerprint(*paths: str) -> str:
    return hashlib.sha256(b"".join((ROOT / p).read_bytes() for p in paths)).hexdigest()


def ensure_environment() -> None:
    """Create .venv with the package and dev tools, and the Meltano plugins, when stale."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be started by an older python3
        sys.exit("tap-alida needs Python 3.11 or newer.")
    if not (BIN / "python").exists():
        run(sys.executable, "-m", "venv", VENV)
    stamp = VENV / ".installed"
    wanted = fingerprint("pyproject.toml")
    if not stamp.exists() or stamp.read_text() != wanted:
        run(BIN / "python", "-m", "pip", "install", "-q", "--upgrade", "pip")
        run(BIN / "python", "-m", "pip", "install", "-q", "-e", ".[dev]")
        stamp.write_text(wanted)
    meltano_stamp = ROOT / ".meltano" / ".installed"
    wanted = fingerprint("meltano.yml", "pyproject.toml")
    if not meltano_stamp.exists() or meltano_stamp.read_text() != wanted:
        run(BIN / "meltano", "install")
        meltano_stamp.write_text(wanted)


def demo() -> None:
    """Sandbox → meltano run tap-alida target-duckdb → rows per table."""
    ensure_environment()
    sandbox = subprocess.Popen(
        [
            str(BIN / "tap-alida-sandbox"),
            "--port",
            "0",
            "--activities",
            "3",
            "--members",
            "200",
            "--responses",
            "500",
            "--job-delay",
            "2",
        ],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sandbox.stdout is not None
        url = sandbox.stdout.readline().strip()
        print(f"Sandbox Alida API at {url}", flush=True)
        database = ROOT / "output" / "warehouse.duckdb"
        database.parent.mkdir(exist_ok=True)
        database.unlink(missing_ok=True)
        env = {**ENV, "TAP_ALIDA_API_URL": url, "MELTANO_ENVIRONMENT": "sandbox"}
        # --full-refresh: each demo starts from a new sandbox, so old bookmarks do not apply.
        subprocess.run(
            [str(BIN / "meltano"), "run", "--full-refresh", "tap-alida", "target-duckdb"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        show = (
            "import duckdb\n"
            f"db = duckdb.connect({str(database)!r}, read_only=True)\n"
            'tables = db.execute("select table_name from information_schema.tables '
            "where table_schema = 'alida' order by 1\").fetchall()\n"
            "print(f\"\\n{'table':<40} rows\")\n"
            "for (t,) in tables:\n"
            "    print(f'{t:<40} {db.execute(f\"select count(*) from alida.{t}\").fetchone()[0]}')\n"
        )
        print(f"\nLoaded into {database.relative_to(ROOT)} (schema alida):")
        subprocess.run([str(BIN / "python"), "-c", show], cwd=ROOT, env=ENV, check=True)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


def docs() -> None:
    """README's settings table := the setting rows of ``tap-alida --about --format=markdown``."""
    ensure_environment()
    about = subprocess.run(
        [str(BIN / "tap-alida"), "--about", "--format=markdown"],
        cwd=ROOT,
        env=ENV,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = about.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Setting |"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, _, rest = text.partition("<!-- settings:start -->")
    _, _, tail = rest.partition("<!-- settings:end -->")
    readme.write_text(
        head + "<!-- settings:start -->\n" + "\n".join(table) + "\n<!-- settings:end -->" + tail,
        encoding="utf-8",
    )
    print(f"README.md: {len(table) - 2} settings rows written.")


def ensure_postgres() -> None:
    """PostgreSQL's server programs, for the target-postgres test (Debian's package)."""
    if shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        sys.exit("The tests need PostgreSQL's server programs: install Debian's 'postgresql' package.")
    run("apt-get", "update", "-q")
    run("apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql")


def test() -> None:
    """Lint, type-check and run the whole test suite (``--fast``: the unit tier only, seconds)."""
    if "--fast" in sys.argv[2:]:
        ensure_environment()
        sys.argv.remove("--fast")
        run(BIN / "pytest", "tests/unit", *sys.argv[2:])
        return
    ensure_environment()
    ensure_postgres()
    run(BIN / "ruff", "check", "tap_alida", "alida_sandbox", "tests", "benchmarks", "dev.py")
    run(BIN / "ruff", "format", "--check", "tap_alida", "alida_sandbox", "tests", "benchmarks", "dev.py")
    run(BIN / "mypy")
    run(BIN / "pytest", *sys.argv[2:])


if __name__ == "__main__":
    commands = {"demo": demo, "test": test, "docs": docs}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python3 dev.py {{{'|'.join(commands)}}}")
    if shutil.which("git") is None:
        print("note: git not found; the package version falls back to 0.1.0", flush=True)
    commands[sys.argv[1]]()
