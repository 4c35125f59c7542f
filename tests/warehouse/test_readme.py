"""The runnable shell blocks of README.md and docs/*.md (marked `<!-- readme-test -->`), run as written.

Each block runs with bash, with `.venv/bin` on PATH (the README's `. .venv/bin/activate`)
and HOME in a temporary folder, so `~/alida-project` and `~/alida-tap` are throw-away.
The only substitutions are the sandbox's URL (the README's port 8765 is another test's
too) and, for the tap alone, the copy of `config.sample.json` the block starts from.
Nothing a block does may change a file of this repository (`git status` before = after).

The "your own project" blocks install tap-alida with `pip_url: git+file://<this clone>`,
i.e. its last commit, as a user's clone would; Meltano Hub is not reachable here, so
the README declares its loader in full.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from harness import BIN, ROOT, clean_env, project_copy, run_meltano

SAMPLE_URL = "http://127.0.0.1:8765"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_blocks() -> list[str]:
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        blocks += re.findall(r"<!-- readme-test -->\n```bash\n(.*?)```", text, re.S)
    return blocks


def block_with(line: str) -> str:
    matches = [b for b in readme_blocks() if line in b]
    assert len(matches) == 1, f"one test block with {line!r}, found {len(matches)}"
    return matches[0]


def user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user's shell: the clone's .venv active, a home of its own, no plugin settings."""
    env = clean_env(tmp_path, **extra)
    env.pop("MELTANO_DATABASE_URI")  # a user's project keeps its own system database
    env.pop("VIRTUAL_ENV", None)
    env["HOME"] = str(tmp_path / "home")
    env["XDG_CACHE_HOME"] = str(tmp_path / "home" / ".cache")
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


def bash(script: str, cwd, env, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-x", "-euo", "pipefail", "-c", script],  # -x: the commands as run, on stderr
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def git_status() -> str:
    if shutil.which("git") is None:
        return ""
    done = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout


def test_docs_mark_their_runnable_blocks():
    blocks = readme_blocks()
    assert len(blocks) == 5  # README: install, project, sandbox run, tenant; docs/loading.md: the tap alone
    everything = "".join(p.read_text(encoding="utf-8") for p in PAGES)
    assert "meltano config tap-alida" not in everything  # not a Meltano 4 command
    # Meltano 4.4 reads `meltano add extractor tap-alida` as two plugins, a utility 'extractor' too.
    assert not any("meltano add extractor" in b for b in blocks)
    assert "config.json --state state.json" not in everything  # fails on a first run
    assert not any(re.search(r"(^|\| *)jq ", b, re.M) for b in blocks)  # Python only
    sample = json.loads((ROOT / "config.sample.json").read_text())
    assert sample["api_url"] == SAMPLE_URL


def test_install_block_puts_the_tap_in_a_venv_of_its_own(tmp_path):
    env = user_env(tmp_path)
    env["PIP_CACHE_DIR"] = str(Path.home() / ".cache" / "pip")  # the machine's cache, as a user's
    before = git_status()
    done = bash(block_with("pip install"), ROOT, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("# `tap-alida`")
    assert (tmp_path / "home" / ".venvs" / "tap-alida" / "bin" / "tap-alida-sandbox").exists()
    assert git_status() == before


def test_hub_definition_adds_exactly_one_extractor(tmp_path):
    """`meltano add --plugin-type extractor tap-alida --from-ref …` as the README writes it."""
    env = user_env(tmp_path)
    project = tmp_path / "home" / "p"
    done = bash(f"meltano init {project}", tmp_path, env)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(line for line in block_with("meltano install").splitlines() if "--from-ref" in line)
    done = bash(line.replace("$TAP_ALIDA_SRC", str(ROOT)), project, env)
    assert done.returncode == 0, done.stderr[-2000:]
    plugins = yaml.safe_load((project / "meltano.yml").read_text())["plugins"]
    assert list(plugins) == ["extractors"]
    assert [p["name"] for p in plugins["extractors"]] == ["tap-alida"]


@pytest.fixture(scope="module")
def own_project(tmp_path_factory, request):
    """The README's first block, run as written from this clone: a new project in ~/alida-project."""
    tmp_path = tmp_path_factory.mktemp("own")
    env = user_env(tmp_path)
    before = git_status()
    done = bash(block_with("meltano install"), ROOT, env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert git_status() == before  # nothing written into this repository
    project = tmp_path / "home" / "alida-project"
    return project, env, tmp_path


def test_own_project_has_one_extractor_and_runs_on_the_sandbox(own_project, start_sandbox):
    project, env, _ = own_project
    plugins = yaml.safe_load((project / "meltano.yml").read_text())["plugins"]
    assert set(plugins) == {"extractors", "loaders"}  # no utility
    assert [p["name"] for p in plugins["extractors"]] == ["tap-alida"]
    assert plugins["extractors"][0]["pip_url"] == f"git+file://{ROOT}"
    installed = project / ".meltano" / "extractors" / "tap-alida" / "venv" / "bin" / "tap-alida"
    assert installed.exists()

    sandbox = start_sandbox("--community", "panel_mycommunity", "--members", "30", "--responses", "20")
    before = git_status()
    block = block_with("meltano config set tap-alida client_id sandbox")
    done = bash(block.replace(SAMPLE_URL, sandbox.url), project, env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    warnings = [line for line in output.splitlines() if "WARN" in line.upper()]
    # Meltano's own note on a first run, as the README says; nothing from the tap or the loader.
    assert len(warnings) == 1 and "meltano      No state was found, complete import." in warnings[0], warnings
    assert "TAP_ALIDA_CLIENT_SECRET='sandbox'" in (project / ".env").read_text()
    assert "client_secret" not in (project / "meltano.yml").read_text().split("plugins:")[0]
    truth = sandbox.truth()

    def lines(stream: str) -> int:
        return len((project / "output" / f"{stream}.jsonl").read_text().splitlines())

    assert lines("member_profiles") == truth["members"]["members"]
    assert lines("activity_answers") == sum(a["values"] for a in truth["activities"] if "values" in a)
    # target-jsonl appends: a second run adds its rows (member_profiles: a full export each run).
    again = bash("meltano run tap-alida target-jsonl", project, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert lines("member_profiles") == 2 * truth["members"]["members"]
    # The README's probe command, as written, in the same project (here: on the sandbox).
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    probe = re.search(r"`(meltano invoke tap-alida\s+--probe > probe-report.json)`", readme)
    assert probe is not None
    done = bash(re.sub(r"\s+", " ", probe.group(1)), project, env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((project / "probe-report.json").read_text())
    assert report["blocking"] == 0 and report["calls"][0]["call"] == "token"
    assert git_status() == before


def test_tenant_block_uses_the_region_the_user_set(own_project):
    """Run as written (after the sandbox block): `config print` says eu1 and no api_url, and
    `--test` calls api.eu1.alida.com, which this machine cannot reach: the block's last line fails."""
    project, env, _ = own_project
    env = {**env, "ALIDA_CLIENT_ID": "my-client", "ALIDA_CLIENT_SECRET": "my-secret-123"}
    block = block_with("meltano config set tap-alida region eu1")
    done = bash(block, project, env)
    assert done.returncode != 0
    commands = [line for line in done.stderr.splitlines() if line.startswith("+ ")]
    assert commands[-1] == "+ meltano invoke tap-alida --test"  # the last line is the one that failed
    # (a first request that cannot connect fails at once: "Could not connect to …")
    assert "the Alida token endpoint https://api.eu1.alida.com/oauth2/token" in done.stderr
    logged = [line for line in done.stderr.splitlines() if not line.startswith("+ ")]  # not bash -x's
    assert "my-secret-123" not in done.stdout + "\n".join(logged)  # config print masks it
    printed = json.loads(done.stdout[done.stdout.index("{") : done.stdout.rindex("}") + 1])
    assert printed["region"] == "eu1" and "api_url" not in printed
    assert printed["community_api_key_name"] == "panel_mycommunity"
    prod = bash("meltano --environment prod config print tap-alida", project, env)
    assert prod.returncode == 0, prod.stderr[-2000:]
    assert json.loads(prod.stdout)["region"] == "eu1"


def test_this_repositorys_prod_environment_keeps_the_region_you_set(tmp_path):
    """meltano.yml's `prod` environment sets nothing: `meltano config set … region eu1` wins."""
    project = project_copy(tmp_path)
    env = {"MELTANO_PROJECT_ROOT": str(project)}
    done = run_meltano(tmp_path, "config", "set", "tap-alida", "region", "eu1", env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = run_meltano(tmp_path, "--environment", "prod", "config", "print", "tap-alida", env=env)
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert json.loads(printed.stdout)["region"] == "eu1"
    # What the tap receives: the config file Meltano writes for it.
    dumped = run_meltano(
        tmp_path, "--environment", "prod", "invoke", "--dump=config", "tap-alida", env=env, timeout=300
    )
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    config = json.loads(dumped.stdout)
    assert config["region"] == "eu1" and "api_url" not in config


def test_without_meltano_block_first_and_second_run(start_sandbox, tmp_path):
    block = block_with("tap-alida --config config.json --discover")
    sandbox = start_sandbox("--members", "30", "--responses", "20")
    project = project_copy(tmp_path)
    sample = project / "config.sample.json"
    sample.write_text(sample.read_text().replace(SAMPLE_URL, sandbox.url))
    env = user_env(tmp_path)
    work = tmp_path / "home" / "alida-tap"
    bookmarks = []
    for run in range(2):
        assert (work / "state.json").exists() == (run > 0)
        done = bash(block, project, env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "WARNING" not in done.stderr
        messages = [json.loads(line) for line in (work / "messages.jsonl").read_text().splitlines()]
        streams = {m["stream"] for m in messages if m["type"] == "RECORD"}
        assert "activity_answers" not in streams  # deselected by the python line
        assert {"member_profiles", "member_profile_values", "activity_fields"} <= streams
        state = json.loads((work / "state.json").read_text())
        assert state == next(m["value"] for m in reversed(messages) if m["type"] == "STATE")
        bookmarks.append(state["bookmarks"]["member_profile_values"]["replication_key_value"])
        ran = [
            line
            for line in done.stderr.splitlines()
            if line.startswith("+ tap-alida") and "--catalog" in line
        ]
        state_arg = " --state state.json" if run else ""
        assert ran == [f"+ tap-alida --config config.json --catalog selected.json{state_arg}"]
    assert bookmarks[0] and bookmarks[1] >= bookmarks[0]
    assert not (project / "catalog.json").exists() and not (project / "state.json").exists()
