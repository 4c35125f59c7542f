#!/usr/bin/env python3
"""Set-up commands for a fresh machine that has only Python 3.11+.

    python3 dev.py demo   # build .venv, start the sandbox, meltano run tap-alida target-duckdb, show the data
    python3 dev.py test   # build .venv, install Meltano plugins, lint, type-check, run every test
    python3 dev.py test --fast   # the unit tier only (no sockets, no subprocesses): seconds
    python3 dev.py test --pythons   # the unit tier on every Python the classifiers declare
    python3 dev.py docs   # rewrite README's settings table and meltano-hub/ from `tap-alida --about`
    python3 dev.py soak [--examples N]   # long runs: the export-file reader's fuzz test, N examples

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
    "TAP_ALIDA_POLL_INTERVAL_SECONDS": "1",
}

# Run by the venv's python after the load (this script imports only the standard library).
ANALYSIS = '''
import sys

import duckdb

db = duckdb.connect(sys.argv[1], read_only=True)


def q(sql):
    return db.execute(sql).fetchall()


print(f"\\n{'table':<40} rows")
for (t,) in q("select table_name from information_schema.tables where table_schema = 'alida' order by 1"):
    print(f"{t:<40} {q(f'select count(*) from alida.{t}')[0][0]}")

# activity_answers: one row per value; activity_fields: the data dictionary.
ANSWERS = """(select f.stream_name as survey, f.name as question, a.*
    from alida.activity_answers a join alida.activity_fields f using (activity_id, field_id))"""
surveys = q("select distinct activity_id, stream_name from alida.activity_fields order by stream_name")
print("\\nPer survey (SQL over alida.activity_answers joined to alida.activity_fields):\\n")
print(f"{'survey':<36} {'responses':>9} {'answered recommend':>18} {'avg recommend':>13} {'avg spend':>9}")
for activity_id, survey in surveys:
    responses = q(f"select count(*) from alida.{survey}")[0][0]
    answered, score = q(
        f"select count(distinct response_id), avg(value_number) from {ANSWERS} "
        f"where activity_id = '{activity_id}' and question = 'How likely are you to recommend us?'"
    )[0]
    (spend,) = q(
        f"select avg(value_number) from {ANSWERS} "
        f"where activity_id = '{activity_id}' and question = 'Monthly spend (€)'"
    )[0]
    share = f"{answered / responses:.0%}" if responses else "-"
    print(f"{survey:<36} {responses:>9} {share:>18} {score or 0:>13.1f} {spend or 0:>9.2f}")

print("\\n'Preferred contact channel', answers by option label:\\n")
print(f"{'survey':<36} {'option':<10} {'answers':>7} {'share':>7}")
for survey, label, n, pct in q(
    f"select survey, option_label, n, round(100.0 * n / sum(n) over (partition by survey), 1) "
    f"from (select survey, option_label, count(*) as n from {ANSWERS} "
    f"where question = 'Preferred contact channel' group by survey, option_label) "
    f"order by survey, n desc, option_label"
):
    print(f"{survey:<36} {label:<10} {n:>7} {pct:>6}%")
'''


def run_demo(project: Path = ROOT, bin_dir: Path = BIN) -> None:
    """Sandbox → meltano run tap-alida target-duckdb → rows per table and a small analysis.

    Loads into a new file and replaces ``output/warehouse.duckdb`` only after the run
    succeeded: a failed demo leaves the previous warehouse as it was.
    """
    sandbox = subprocess.Popen(
        [
            str(bin_dir / "tap-alida-sandbox"),
            "--port",
            "0",
            "--clean",  # no deliberate anomalies: a clean demo logs no WARNING
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
        }
        # --full-refresh: each demo starts from a new sandbox, so old bookmarks do not apply;
        # its own state id (…:demo), so the demo's STATE never meets a later run of yours.
        command = [
            str(bin_dir / "meltano"), "run", "--full-refresh", "--state-id-suffix", "demo",
            "tap-alida", "target-duckdb",
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
    print(f"\nLoaded into {shown} (DuckDB, schema alida):", flush=True)
    analysis = subprocess.run(
        [str(bin_dir / "python"), "-c", ANALYSIS, str(database)], cwd=project, env=ENV, check=False
    )
    if analysis.returncode != 0:
        sys.exit("demo: the analysis query failed (above); the warehouse was loaded.")
    print(
        f"\nThe warehouse is {database}. Open it with:\n\n"
        f"  .venv/bin/python -c \"import duckdb; db = duckdb.connect('{shown}', read_only=True); "
        "db.sql('select f.name as question, a.option_label, a.value_number, a.value_string "
        "from alida.activity_answers a join alida.activity_fields f using (activity_id, field_id) "
        "limit 10').show()\"\n",
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
    "# and `tap-alida --about --format=json` (tests/test_plugin_definition.py keeps them equal).\\n"
    "# Before submitting to Meltano Hub: set `repo` and `variant` to the published repository.\\n"
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


def docs() -> None:
    """README's settings table := the setting rows of ``tap-alida --about --format=markdown``."""
    ensure_environment()
    about = tap_about("markdown")
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


# Long runs of what the unit tier runs briefly. Each target takes the example budget;
# more targets (e.g. a nights simulation) are added to SOAK_TARGETS.
SOAK_EXAMPLES = 20_000


def soak_reader_fuzz(examples: int) -> None:
    """The export-file reader's differential fuzz test with ``examples`` examples per test."""
    env = {**ENV, "ALIDA_FUZZ_EXAMPLES": str(examples)}
    command = [BIN / "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics"]
    print(f"+ ALIDA_FUZZ_EXAMPLES={examples}", flush=True)
    run(*command, "tests/unit/test_export_fuzz.py", env=env)


SOAK_TARGETS = {"reader-fuzz": soak_reader_fuzz}


def soak() -> None:
    """``python3 dev.py soak [--examples N]``: every soak target with a big budget (random
    examples, unlike the unit tier's fixed ones). Default N: ``SOAK_EXAMPLES`` per test."""
    args = sys.argv[2:]
    examples = SOAK_EXAMPLES
    if args[:1] == ["--examples"] and len(args) == 2 and args[1].isdigit() and int(args[1]) > 0:
        examples = int(args[1])
    elif args:
        sys.exit("usage: python3 dev.py soak [--examples N]")
    ensure_environment(plugins=False)
    for target in SOAK_TARGETS.values():
        target(examples)


if __name__ == "__main__":
    commands = {"demo": demo, "test": test, "docs": docs, "soak": soak}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python3 dev.py {{{'|'.join(commands)}}}")
    if shutil.which("git") is None:
        print("note: git not found; the package version falls back to 0.1.0", flush=True)
    commands[sys.argv[1]]()
