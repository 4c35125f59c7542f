"""`python3 dev.py demo`: the load and `dbt build` succeed, the analysis (read from dbt_alida's
models) prints, the log is quiet, .env cannot break it, and a failed run keeps the previous
warehouse.

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
    # Rows per table (loaded, then modelled), then the analysis read from dbt_alida's models.
    assert re.search(r"^activity_answers\s+\d{4,}$", done.stdout, re.M), done.stdout
    assert re.search(r"^member_profiles\s+200$", done.stdout, re.M), done.stdout
    assert re.search(r"^members\s+200$", done.stdout, re.M), done.stdout
    assert re.search(r"^responses\s+1500$", done.stdout, re.M), done.stdout
    built = re.search(r"Done\. PASS=(\d+) WARN=0 ERROR=0 SKIP=0 (?:NO-OP=0 )?TOTAL=(\d+)", output)
    assert built is not None and built.group(1) == built.group(2), output[-3000:]
    assert "Per survey (analytics.surveys):" in done.stdout
    survey_rows = re.findall(r"^(\w+)\s+500\s+(\d+)\s+(\d+)%$", done.stdout, re.M)
    assert len(survey_rows) == 3, done.stdout
    for _, questions, share in survey_rows:
        assert int(questions) == 12
        assert 75 <= int(share) <= 95  # about 88 % answer each question in the sandbox
    assert "'Preferred contact channel' in survey order (analytics.option_summary):" in done.stdout
    options = re.findall(r"^(\w+)\s+(Email|Phone|SMS|Post|Fax)\s+(\w+)\s+\d+\s+[\d.]+%$", done.stdout, re.M)
    assert len(options) == 15, done.stdout
    for survey in {s for s, _, _ in options}:  # survey order (as defined), not alphabetical
        assert [label for s, label, _ in options if s == survey] == ["Email", "Phone", "SMS", "Post", "Fax"]
    assert "NPS, 'How likely are you to recommend us?' (analytics.nps):" in done.stdout
    nps_rows = re.findall(r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(-?\d+\.\d)$", done.stdout, re.M)
    assert len(nps_rows) == 3, done.stdout
    for _, n, promoters, passives, detractors, score in nps_rows:
        assert int(n) == int(promoters) + int(passives) + int(detractors) > 400
        assert -70 <= float(score) <= -10  # scores 0-10, uniform: about -45
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
