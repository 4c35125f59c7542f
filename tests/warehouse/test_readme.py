"""The README's runnable shell blocks (marked `<!-- readme-test -->`), run as written.

Each block runs with bash in a temporary copy of the project (so the real
meltano.yml and .env are not changed) against a sandbox. The only substitution is
the sandbox's URL: through `TAP_ALIDA_API_URL`, which the README names, for
Meltano, and in the copy of `config.sample.json` for the tap alone.
"""

from __future__ import annotations

import json
import re
import subprocess

import duckdb
from harness import ROOT, clean_env, project_copy

SAMPLE_URL = "http://127.0.0.1:8765"


def readme_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"<!-- readme-test -->\n```bash\n(.*?)```", readme, re.S)


def block_with(line: str) -> str:
    matches = [b for b in readme_blocks() if line in b]
    assert len(matches) == 1, f"one README test block with {line!r}, found {len(matches)}"
    return matches[0]


def bash(script: str, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-x", "-euo", "pipefail", "-c", script],  # -x: the commands as run, on stderr
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_readme_marks_its_runnable_blocks():
    blocks = readme_blocks()
    assert len(blocks) == 2
    assert all(b.startswith(". .venv/bin/activate\n") for b in blocks)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "meltano config tap-alida" not in readme  # not a Meltano 4 command
    assert "config.json --state state.json" not in readme  # fails on a first run
    sample = json.loads((ROOT / "config.sample.json").read_text())
    assert sample["api_url"] == SAMPLE_URL


def test_point_it_at_a_real_community_block(start_sandbox, tmp_path):
    block = block_with("meltano config set tap-alida client_secret")
    sandbox = start_sandbox("--community", "panel_mycommunity", "--members", "30", "--responses", "20")
    project = project_copy(tmp_path)
    before = (project / "meltano.yml").read_text()
    env = clean_env(
        tmp_path, TAP_ALIDA_API_URL=sandbox.url, ALIDA_CLIENT_ID="sandbox", ALIDA_CLIENT_SECRET="sandbox"
    )
    done = bash(block, project, env)
    assert done.returncode == 0, done.stderr[-3000:]
    # The secret went to .env, the rest to meltano.yml; the real project is unchanged.
    assert "TAP_ALIDA_CLIENT_SECRET='sandbox'" in (project / ".env").read_text()
    after = (project / "meltano.yml").read_text()
    assert after.count("client_secret: sandbox") == before.count("client_secret: sandbox") == 1
    assert "community_api_key_name: panel_mycommunity" in after
    assert "region: eu1" in after
    assert not (ROOT / ".env").exists() or "panel_mycommunity" not in (ROOT / ".env").read_text()
    assert "panel_mycommunity" not in (ROOT / "meltano.yml").read_text()
    truth = sandbox.truth()
    with duckdb.connect(str(project / "output" / "warehouse.duckdb"), read_only=True) as db:
        assert db.execute("select count(*) from alida.member_profiles").fetchone() == (
            truth["members"]["members"],
        )
        answers = db.execute("select count(*) from alida.activity_answers").fetchone()[0]
    assert answers == sum(a["values"] for a in truth["activities"] if "values" in a)


def test_without_meltano_block_first_and_second_run(start_sandbox, tmp_path):
    block = block_with("tap-alida --config config.sample.json --discover")
    sandbox = start_sandbox("--members", "30", "--responses", "20")
    project = project_copy(tmp_path)
    sample = project / "config.sample.json"
    sample.write_text(sample.read_text().replace(SAMPLE_URL, sandbox.url))
    env = clean_env(tmp_path)
    bookmarks = []
    for run in range(2):
        assert (project / "state.json").exists() == (run > 0)
        done = bash(block, project, env)
        assert done.returncode == 0, done.stderr[-3000:]
        messages = [json.loads(line) for line in (project / "messages.jsonl").read_text().splitlines()]
        streams = {m["stream"] for m in messages if m["type"] == "RECORD"}
        assert "activity_answers" not in streams  # deselected by the jq line
        assert {"member_profiles", "member_profile_values", "activity_fields"} <= streams
        state = json.loads((project / "state.json").read_text())
        assert state == next(m["value"] for m in reversed(messages) if m["type"] == "STATE")
        bookmarks.append(state["bookmarks"]["member_profile_values"]["replication_key_value"])
        ran = [
            line
            for line in done.stderr.splitlines()
            if line.startswith("+ tap-alida") and "--catalog" in line
        ]
        state_arg = " --state state.json" if run else ""
        assert ran == [f"+ tap-alida --config config.sample.json --catalog selected.json{state_arg}"]
    assert bookmarks[0] and bookmarks[1] >= bookmarks[0]
