#!/usr/bin/env python3
"""Set-up commands for a fresh machine that has only Python 3.11+.

    python3 dev.py demo   # build .venv, start the sandbox, meltano run tap-alida target-duckdb
                          # dbt-duckdb:build, show the data (read from dbt_alida's models)
    python3 dev.py test   # build .venv, install Meltano plugins, lint, type-check, run every test
    python3 dev.py test --fast   # the unit tier only (no sockets, no subprocesses): seconds
    python3 dev.py test --pythons   # the unit tier on every Python the classifiers declare
    python3 dev.py docs   # rewrite docs/settings.md and meltano-hub/ from `tap-alida --about`
    python3 dev.py soak [--examples N] [--nights N] [--seed S] [--only reader-fuzz|nights]
                          # long runs: the file reader's fuzz test, the simulation of random nights

Only the standard library is used here: this script creates the environment.
"""

from __future__ import annotations

import hashlib
import os
import re
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


def run(*command: str | Path, env: dict[str, str] | None = None, **kwargs) -> None:
    print("+", " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], cwd=ROOT, env=env or ENV, check=True, **kwargs)


def fingerprint(*paths: str) -> str:
    return hashlib.sha256(b"".join((ROOT / p).read_bytes() for p in paths)).hexdigest()


def ensure_environment(*, plugins: bool = True) -> None:
    """Create .venv with the package and dev tools, and the Meltano plugins, when stale
    (``plugins=False``: not the plugins, for commands that never run Meltano)."""
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
    if not plugins:
        return
    meltano_stamp = ROOT / ".meltano" / ".installed"
    wanted = fingerprint("meltano.yml", "pyproject.toml")
    if not meltano_stamp.exists() or meltano_stamp.read_text() != wanted:
        run(BIN / "meltano", "install")
        meltano_stamp.write_text(wanted)


# The demo's own sandbox credentials: they beat whatever .env holds (Meltano ranks the
# process environment above .env), so a real secret there never meets the sandbox.
DEMO_SETTINGS = {
    "TAP_ALIDA_CLIENT_ID": "sandbox",
    "TAP_ALIDA_CLIENT_SECRET": "sandbox",
    "TAP_ALIDA_COMMUNITY_API_KEY_NAME": "sandbox",
    "TAP_ALIDA_API_KEY": "",  # empty = unset: a real API key is not sent to the sandbox
    "TAP_ALIDA_TOKEN_URL": "",  # empty = {api_url}/oauth2/token, the sandbox's
}

# Run by the venv's python after `meltano run … dbt-duckdb:build`: it only reads the dbt
# package's models (dbt_alida/, docs/dbt.md), which dbt built in schema analytics.
ANALYSIS = """
import sys

import duckdb

db = duckdb.connect(sys.argv[1], read_only=True)


def q(sql):
    return db.execute(sql).fetchall()


for schema, what in (("alida", "loaded by target-duckdb"), ("analytics", "built by dbt_alida")):
    print(f"\\n{schema + ' (' + what + ')':<40} rows")
    tables = f"select table_name from information_schema.tables where table_schema = '{schema}' order by 1"
    for (t,) in q(tables):
        print(f"{t:<40} {q(f'select count(*) from {schema}.{t}')[0][0]}")

print("\\nPer survey (analytics.surveys):\\n")
print(f"{'survey':<36} {'responses':>9} {'questions':>9} {'answered':>8}")
for survey, responses, questions, share in q(
    "select stream_name, responses, questions, avg_answered_share from analytics.surveys order by 1"
):
    print(f"{survey:<36} {responses:>9} {questions:>9} {share or 0:>8.0%}")

print("\\n'Preferred contact channel' in survey order (analytics.option_summary):\\n")
print(f"{'survey':<36} {'option':<10} {'visibility':<10} {'responses':>9} {'share':>6}")
for survey, label, visibility, n, share in q(
    "select stream_name, option_label, option_visibility, option_respondents, option_share "
    "from analytics.option_summary where question = 'Preferred contact channel' "
    "order by stream_name, option_position"
):
    print(f"{survey:<36} {label:<10} {visibility:<10} {n:>9} {share or 0:>6.1%}")

print("\\nNPS, 'How likely are you to recommend us?' (analytics.nps):\\n")
print(f"{'survey':<36} {'respondents':>11} {'promoters':>9} {'passives':>8} {'detractors':>10} {'NPS':>6}")
for survey, n, promoters, passives, detractors, nps in q(
    "select stream_name, respondents, promoters, passives, detractors, nps from analytics.nps order by 1"
):
    print(f"{survey:<36} {n:>11} {promoters:>9} {passives:>8} {detractors:>10} {nps:>6.1f}")
"""


def run_demo(project: Path = ROOT, bin_dir: Path = BIN) -> None:
    """Sandbox → meltano run tap-alida target-duckdb dbt-duckdb:build → rows per table and a
    small analysis read from the dbt package's models.

    Loads into a new file and replaces ``output/warehouse.duckdb`` only after the run
    succeeded: a failed demo leaves the previous warehouse as it was.
    """
    sandbox = subprocess.Popen(
        [
            str(bin_dir / "tap-alida-sandbox"),
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
        cwd=project,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    database = project / "output" / "warehouse.duckdb"
    try:
        assert sandbox.stdout is not None
        url = sandbox.stdout.readline().strip()
        if not url.startswith("http://"):
            sys.exit("demo: the sandbox did not start (its error is above).")
        print(f"Sandbox Alida API at {url}", flush=True)
        database.parent.mkdir(exist_ok=True)
        # Same file name in a side folder: DuckDB names the catalog after the file's stem.
        loading = database.parent / "loading" / database.name
        loading.parent.mkdir(exist_ok=True)
        loading.unlink(missing_ok=True)
        env = {
            **ENV,
            **DEMO_SETTINGS,
            "TAP_ALIDA_API_URL": url,
            "MELTANO_ENVIRONMENT": "sandbox",
            "TARGET_DUCKDB_FILEPATH": str(loading),
            "DBT_DUCKDB_PATH": str(loading),  # dbt_alida builds its models in the same file
        }
        # --full-refresh: each demo starts from a new sandbox, so old bookmarks do not apply;
        # its own state id (…:demo), so the demo's STATE never meets a later run of yours.
        command = [
            str(bin_dir / "meltano"), "run", "--full-refresh", "--state-id-suffix", "demo",
            "tap-alida", "target-duckdb", "dbt-duckdb:build",
        ]  # fmt: skip
        print("+ meltano", *command[1:], flush=True)
        done = subprocess.run(command, cwd=project, env=env, check=False)
        if done.returncode != 0:
            loading.unlink(missing_ok=True)
            kept = "left as it was" if database.exists() else "not created"
            sys.exit(f"demo: meltano run failed (exit {done.returncode}); {database.name} {kept}.")
        os.replace(loading, database)
        loading.parent.rmdir()
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
    shown = database.relative_to(project)
    print(f"\nLoaded into {shown} (DuckDB: schema alida; dbt_alida's models: analytics):", flush=True)
    analysis = subprocess.run(
        [str(bin_dir / "python"), "-c", ANALYSIS, str(database)], cwd=project, env=ENV, check=False
    )
    if analysis.returncode != 0:
        sys.exit("demo: the analysis query failed (above); the warehouse was loaded.")
    print(
        f"\nThe warehouse is {database}. Open it with:\n\n"
        f"  .venv/bin/python -c \"import duckdb; db = duckdb.connect('{shown}', read_only=True); "
        "db.sql('select stream_name, question, option_label, value_number, value_string "
        "from analytics.answers limit 10').show()\"\n",
        flush=True,
    )


def demo() -> None:
    """Build the environment, then run the demo."""
    ensure_environment()
    run_demo()


# Meltano Hub's layout: _data/meltano/extractors/<name>/<variant>.yml.
PLUGIN_FILE = ROOT / "meltano-hub" / "extractors" / "tap-alida" / "tap-alida.yml"

# Run by the venv's python (PyYAML): the Hub-style definition := meltano.yml's plugin
# (our settings, verbatim) + the SDK's built-in settings from `tap-alida --about`.
PLUGIN = """
import json
import sys

import yaml

root, out = sys.argv[1], sys.argv[2]
about = json.loads(sys.stdin.read())
project = yaml.safe_load(open(f"{root}/meltano.yml", encoding="utf-8"))
tap = next(p for p in project["plugins"]["extractors"] if p["name"] == "tap-alida")
KINDS = {"string": "string", "integer": "integer", "number": "integer", "boolean": "boolean",
         "array": "array", "object": "object"}
settings = list(tap["settings"])
ours = {s["name"] for s in settings}
for name, prop in about["settings"]["properties"].items():
    if name in ours:
        continue
    kind = KINDS[next(t for t in prop["type"] if t != "null")]
    setting = {"name": name, "kind": kind, "label": prop.get("title") or name.replace("_", " ").capitalize(),
               "description": prop["description"]}
    if "default" in prop:
        setting["value"] = prop["default"]
    settings.append(setting)
definition = {
    "name": "tap-alida",
    "namespace": tap["namespace"],
    "variant": "tap-alida",
    "label": tap["label"],
    "description": tap["description"],
    "pip_url": "tap-alida",
    "executable": tap["executable"],
    "repo": "https://github.com/OWNER/tap-alida",
    "keywords": ["meltano_sdk", "api"],
    "maintenance_status": "active",
    "domain_url": "https://www.alida.com",
    "capabilities": tap["capabilities"],
    "settings_group_validation": tap["settings_group_validation"],
    "settings": settings,
}
header = (
    "# Meltano Hub-style definition of tap-alida, written by `python3 dev.py docs` from meltano.yml\\n"
    "# and `tap-alida --about --format=json` (tests/warehouse/test_plugin_definition.py keeps them equal).\\n"
    "# Before submitting to Meltano Hub: set `repo` and `variant` to the published repository.\\n"
    "# Until tap-alida is on PyPI, `pip_url: tap-alida` does not install: README.md gives one that does.\\n"
)
text = yaml.safe_dump(definition, sort_keys=False, allow_unicode=True, width=110)
open(out, "w", encoding="utf-8").write(header + text)
"""


def tap_about(fmt: str, bin_dir: Path = BIN) -> str:
    """``tap-alida --about --format=<fmt>`` of the environment's tap."""
    command = [str(bin_dir / "tap-alida"), "--about", f"--format={fmt}"]
    return subprocess.run(command, cwd=ROOT, env=ENV, check=True, capture_output=True, text=True).stdout


def write_plugin_definition(bin_dir: Path = BIN) -> None:
    """The Hub-style plugin definition, from meltano.yml and ``tap-alida --about --format=json``."""
    about = tap_about("json", bin_dir)
    PLUGIN_FILE.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(bin_dir / "python"), "-c", PLUGIN, str(ROOT), str(PLUGIN_FILE)],
        input=about,
        cwd=ROOT,
        env=ENV,
        check=True,
        text=True,
    )
    print(f"{PLUGIN_FILE.relative_to(ROOT)} written.")


SETTINGS_PAGE = ROOT / "docs" / "settings.md"


def settings_page(about_markdown: str) -> str:
    """docs/settings.md := a short preface + ``tap-alida --about --format=markdown``, headings one
    level down (a test compares the checked-in page with this)."""
    body = re.sub(r"^(#+) ", r"#\1 ", about_markdown.strip(), flags=re.M)
    return (
        "<!-- Written by `python3 dev.py docs` from `tap-alida --about --format=markdown`: "
        "do not edit (a test compares). -->\n"
        "# Settings\n\n"
        "In Meltano: `meltano config set tap-alida <setting> <value>` (sensitive settings go to `.env`);\n"
        "without Meltano: the keys of the tap's `--config` JSON file "
        "([config.sample.json](../config.sample.json)).\n"
        "`community_api_key_name`, `client_id`, `client_secret` and one of `region` or `api_url` are "
        "required.\n\n" + body + "\n"
    )


def docs() -> None:
    """docs/settings.md and meltano-hub/ from ``tap-alida --about``."""
    ensure_environment()
    SETTINGS_PAGE.parent.mkdir(exist_ok=True)
    SETTINGS_PAGE.write_text(settings_page(tap_about("markdown")), encoding="utf-8")
    print(f"{SETTINGS_PAGE.relative_to(ROOT)} written.")
    write_plugin_definition()


def ensure_postgres() -> None:
    """PostgreSQL's server programs, for the target-postgres test (Debian's package)."""
    if shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        sys.exit("The tests need PostgreSQL's server programs: install Debian's 'postgresql' package.")
    run("apt-get", "update", "-q")
    run("apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql")


def declared_pythons() -> list[str]:
    """The Python versions pyproject.toml's classifiers declare ("3.11", "3.12", ...)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.findall(r'"Programming Language :: Python :: (3\.\d+)"', text)


def unit_tier_requirements() -> list[str]:
    """What the unit tier needs besides the package: the dev extra's pytest, pytest-timeout and
    hypothesis (the export-file reader's fuzz test).

    Not the whole dev extra: it pins tools for the other tiers (Meltano, ``duckdb==1.0.0``,
    which has no wheel for 3.13) that the unit tier never imports.
    """
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.findall(r'"((?:pytest(?:-timeout)?|hypothesis)[<>=~!].*?)"', text)


def find_python(version: str) -> Path | None:
    """An interpreter of ``version`` (e.g. "3.12"): pyenv's newest patch release, else on PATH."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    installed = sorted(
        (pyenv_root / "versions").glob(f"{version}.*/bin/python{version}"),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.parent.name)],
    )
    candidates = [str(p) for p in reversed(installed)] + [f"python{version}"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found is None:
            continue
        probe = subprocess.run(  # a pyenv shim on PATH may name a version that is not installed
            [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return Path(found)
    return None


def unit_tier_on_other_pythons(*, include_own: bool = False) -> None:
    """``pytest tests/unit`` in ``.venv-3.X`` for each declared version other than .venv's own.

    A version that is not on this machine is reported and skipped; a failing tier stops here.
    """
    own = "{}.{}".format(*sys.version_info[:2])
    skipped = []
    for version in declared_pythons():
        if version == own:
            if include_own:
                run(BIN / "pytest", "-q", "tests/unit")
            continue
        python = find_python(version)
        if python is None:
            skipped.append(version)
            print(f"Python {version}: not found (pyenv or PATH); its unit tier is skipped", flush=True)
            continue
        venv = ROOT / f".venv-{version}"
        venv_bin = venv / ("Scripts" if os.name == "nt" else "bin")
        if not (venv_bin / "python").exists():
            run(python, "-m", "venv", venv)
        stamp = venv / ".installed"
        wanted = fingerprint("pyproject.toml")
        if not stamp.exists() or stamp.read_text() != wanted:
            run(venv_bin / "python", "-m", "pip", "install", "-q", "--upgrade", "pip")
            run(venv_bin / "python", "-m", "pip", "install", "-q", "-e", ".", *unit_tier_requirements())
            stamp.write_text(wanted)
        run(venv_bin / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit")
    if skipped:
        print(f"Unit tier not run on Python {', '.join(skipped)} (not installed here).", flush=True)


def test() -> None:
    """Lint, type-check and run the whole test suite, then the unit tier on the other Pythons.

    ``--fast``: the unit tier only, seconds. ``--pythons``: the unit tier on every declared Python.
    """
    if "--fast" in sys.argv[2:]:
        ensure_environment()
        sys.argv.remove("--fast")
        run(BIN / "pytest", "tests/unit", *sys.argv[2:])
        return
    if "--pythons" in sys.argv[2:]:
        ensure_environment()
        unit_tier_on_other_pythons(include_own=True)
        return
    ensure_environment()
    ensure_postgres()
    run(BIN / "ruff", "check", "tap_alida", "alida_sandbox", "tests", "benchmarks", "dev.py")
    run(BIN / "ruff", "format", "--check", "tap_alida", "alida_sandbox", "tests", "benchmarks", "dev.py")
    run(BIN / "mypy")
    unit_tier_on_other_pythons()  # first: the whole suite's summary stays the last line
    run(BIN / "pytest", *sys.argv[2:])


# Long runs of what the test tiers run briefly; each target reads its own budget.
SOAK_EXAMPLES = 20_000  # the reader fuzz test: random examples per file kind
SOAK_NIGHTS = 2_000  # the simulation: about this many nights
SIMULATION_STEPS = 25  # nights per sequence at most (Hypothesis runs about 3 in 4 of them)


def soak_reader_fuzz(options: dict[str, str]) -> int:
    """The export-file reader's differential fuzz test with ``--examples`` examples per test."""
    examples = int(options.get("--examples", SOAK_EXAMPLES))
    env = {**ENV, "ALIDA_FUZZ_EXAMPLES": str(examples)}
    command = [str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics"]
    print(f"+ ALIDA_FUZZ_EXAMPLES={examples} pytest tests/unit/test_export_fuzz.py", flush=True)
    return subprocess.run(
        [*command, "tests/unit/test_export_fuzz.py"], cwd=ROOT, env=env, check=False
    ).returncode


def soak_nights(options: dict[str, str]) -> int:
    """The simulation of random nights (``tests/e2e/test_simulation.py``) for about ``--nights``
    nights; prints its seed, and ``--seed S`` replays a run (a failure shrinks to a short sequence)."""
    nights = int(options.get("--nights", SOAK_NIGHTS))
    seed = options.get("--seed") or str(int.from_bytes(os.urandom(4), "big"))
    print(f"soak: about {nights} nights, seed {seed} (replay: python3 dev.py soak --seed {seed})", flush=True)
    env = {
        **ENV,
        "TAP_ALIDA_SIMULATION_RANDOM": "1",
        "TAP_ALIDA_SIMULATION_EXAMPLES": str(max(1, round(nights / (SIMULATION_STEPS * 0.75)))),
        "TAP_ALIDA_SIMULATION_STEPS": str(SIMULATION_STEPS),
    }
    # No per-test timeout: the soak is one long test (pyproject sets 900 s for CI).
    command = [
        str(BIN / "pytest"),
        "-x",
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
        "--timeout=0",
        f"--hypothesis-seed={seed}",
    ]
    print("+ pytest tests/e2e/test_simulation.py", flush=True)
    done = subprocess.run([*command, "tests/e2e/test_simulation.py"], cwd=ROOT, env=env, check=False)
    print(f"soak: seed {seed}, exit {done.returncode}", flush=True)
    return done.returncode


SOAK_TARGETS = {"reader-fuzz": soak_reader_fuzz, "nights": soak_nights}


def soak() -> None:
    """``python3 dev.py soak [--examples N] [--nights N] [--seed S] [--only TARGET]``: every soak
    target (or one) with a big budget, random unlike the tiers' fixed examples."""
    args = sys.argv[2:]
    known = {"--examples", "--nights", "--seed", "--only"}
    if len(args) % 2 or any(flag not in known for flag in args[0::2]):
        sys.exit(
            "usage: python3 dev.py soak [--examples N] [--nights N] [--seed S] [--only reader-fuzz|nights]"
        )
    options = dict(zip(args[0::2], args[1::2], strict=True))
    only = options.get("--only")
    if only is not None and only not in SOAK_TARGETS:
        sys.exit(f"dev.py soak: --only is one of {', '.join(SOAK_TARGETS)}")
    ensure_environment(plugins=False)
    failed = [name for name, target in SOAK_TARGETS.items() if only in (None, name) and target(options)]
    if failed:
        sys.exit(f"dev.py soak: {', '.join(failed)} failed")


if __name__ == "__main__":
    commands = {"demo": demo, "test": test, "docs": docs, "soak": soak}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python3 dev.py {{{'|'.join(commands)}}}")
    if shutil.which("git") is None:
        print("note: git not found; the package version falls back to 0.1.0", flush=True)
    commands[sys.argv[1]]()
