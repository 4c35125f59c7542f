"""Packaging as users install it: `python -m build`, then the wheel in a fresh venv (not editable).

The fresh venv gets the wheel's dependencies from the package index, as `pipx
install` or `pip install` would (about 20 s with a warm pip cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from harness import ROOT


def run(*command: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    done = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
    return done


def test_wheel_and_sdist_install_into_a_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT, cwd=tmp_path)
    wheels = list(dist.glob("tap_alida-*-py3-none-any.whl"))
    sdists = list(dist.glob("tap_alida-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(dist.iterdir())
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        top = {n.split("/")[0] for n in names}
        info = next(n for n in names if n.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert {t for t in top if not t.endswith(".dist-info")} == {"tap_alida", "alida_sandbox"}
    for version in ("3.11", "3.12", "3.13"):
        assert f"Classifier: Programming Language :: Python :: {version}" in metadata
    assert "Requires-Python: >=3.11" in metadata
    assert "Provides-Extra: s3" in metadata
    assert "tap-alida = tap_alida.tap:main" in entry_points
    assert "tap-alida-sandbox = alida_sandbox.server:main" in entry_points
    with tarfile.open(sdists[0]) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"pyproject.toml", "README.md", "tap_alida/tap.py", "alida_sandbox/server.py"} <= members

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheels[0], cwd=tmp_path)
    # The installed package, not this checkout (cwd is elsewhere, no PYTHONPATH).
    where = run(venv / "bin" / "python", "-c", "import tap_alida; print(tap_alida.__file__)", cwd=tmp_path)
    assert where.stdout.strip().startswith(str(venv / "lib"))
    about = json.loads(run(venv / "bin" / "tap-alida", "--about", "--format=json", cwd=tmp_path).stdout)
    assert about["name"] == "tap-alida"
    assert "batch" in about["capabilities"]
    assert "client_secret" in about["settings"]["properties"]
    sandbox_help = run(venv / "bin" / "tap-alida-sandbox", "--help", cwd=tmp_path).stdout
    assert sandbox_help.startswith("usage: tap-alida-sandbox")
    assert "--anomalies" in sandbox_help
