"""`python3 dev.py demo`: the analysis prints, the log is quiet, .env cannot break it,
and a failed run keeps the previous warehouse.

The demo runs in a temporary copy of the project (meltano.yml, the installed
plugins of `.meltano`, and a `.env` holding a wrong secret, as a user's real
one would be for the sandbox). Its tap-alida executable is this checkout's code:
Meltano drops PYTHONPATH and would otherwise run the installed package.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
from harness import BIN, ROOT, clean_env, project_copy


def demo_project(tmp_path: Path, meltano_yml: str | None = None) -> Path:
    project = project_copy(tmp_path, meltano_yml)
    # A real community's settings in .env must not reach the sandbox.
    (project / ".env").write_text(
        "TAP_ALIDA_CLIENT_ID=real-client\nTAP_ALIDA_CLIENT_SECRET=real-secret\n"
        "TAP_ALIDA_COMMUNITY_API_KEY_NAME=panel_real\nTAP_ALIDA_API_KEY=real-api-key\n"
        "TAP_ALIDA_TOKEN_URL=https://auth.example.invalid/oauth2/token\nTAP_ALIDA_REGION=eu1\n"
    )
    return project


def run_demo(tmp_path: Path, project: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = clean_env(tmp_path)
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pathlib, dev; dev.run_demo(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))",
            str(project),
            str(BIN),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return done, time.monotonic() - started


def test_demo_prints_the_analysis_and_no_warning(tmp_path):
    project = demo_project(tmp_path)
    done, seconds = run_demo(tmp_path, project)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    print(f"demo wall time: {seconds:.1f} s")
    assert "WARNING" not in output.upper(), [line for line in output.splitlines() if "WARN" in line.upper()]
    assert "Traceback" not in output
    # Rows per table, then the analysis.
    assert re.search(r"^activity_answers\s+\d{4,}$", done.stdout, re.M), done.stdout
    assert re.search(r"^member_profiles\s+200$", done.stdout, re.M), done.stdout
    assert "Per survey (SQL over alida.activity_answers joined to alida.activity_fields)" in done.stdout
    header = re.search(
        r"^survey\s+responses\s+answered recommend\s+average recommend\s+average spend €$", done.stdout, re.M
    )
    assert header, done.stdout  # words, not abbreviations; the legend names the two questions
    assert (
        "'Recommend': How likely are you to recommend us? (0-10). 'Spend': Monthly spend (€)." in done.stdout
    )
    survey_rows = re.findall(r"^(\w+)\s+500\s+(\d+)%\s+(\d+\.\d)\s+(\d+\.\d\d)$", done.stdout, re.M)
    assert len(survey_rows) == 3, done.stdout
    for _, share, score, spend in survey_rows:
        assert 80 <= int(share) <= 95  # about 88 % answer each question in the sandbox
        assert 3.0 <= float(score) <= 7.0  # scores 0-10, uniform
        assert 150 <= float(spend) <= 350  # 0-500 €, uniform
    assert "'Preferred contact channel', answers by option label:" in done.stdout
    labels = set(re.findall(r"^\w+\s+(Email|Phone|SMS|Post|Fax)\s+\d+\s+[\d.]+%$", done.stdout, re.M))
    assert {"Email", "Phone", "SMS"} <= labels, done.stdout
    # Where the data is and how to open it; the command works as printed.
    database = project / "output" / "warehouse.duckdb"
    assert f"The warehouse is {database}." in done.stdout
    command = re.search(r"^  (\.venv/bin/python -c .*)$", done.stdout, re.M)
    assert command is not None
    opened = subprocess.run(
        command.group(1), shell=True, cwd=project, capture_output=True, text=True, check=False
    )
    assert opened.returncode == 0, opened.stderr
    assert "question" in opened.stdout and "option_label" in opened.stdout and "10 rows" in opened.stdout
    assert not (project / "output" / "loading").exists()
    # The demo's STATE has its own id: a later `meltano run` of yours does not start from it.
    listed = subprocess.run(
        [str(project / ".venv" / "bin" / "meltano"), "--environment", "sandbox", "state", "list"],
        cwd=project, env=clean_env(tmp_path), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "sandbox:tap-alida-to-target-duckdb:demo" in listed.stdout, listed.stdout + listed.stderr
    assert not re.search(r"^sandbox:tap-alida-to-target-duckdb$", listed.stdout, re.M), listed.stdout


def test_failed_demo_keeps_the_previous_warehouse(tmp_path):
    # A meltano.yml whose target-duckdb cannot start: the run fails after the tap started.
    broken = (
        (ROOT / "meltano.yml").read_text().replace("executable: target-duckdb", "executable: no-such-target")
    )
    project = demo_project(tmp_path, broken)
    database = project / "output" / "warehouse.duckdb"
    with duckdb.connect(str(database)) as db:
        db.execute("create table kept as select 42 as answer")
    done, _ = run_demo(tmp_path, project)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "demo: meltano run failed (exit 1); warehouse.duckdb left as it was." in done.stderr
    assert "Traceback" not in done.stderr
    with duckdb.connect(str(database), read_only=True) as db:
        assert db.execute("select answer from kept").fetchone() == (42,)
