"""Where a pipeline's time goes: the tap alone vs tap → target-postgres, RECORD and BATCH mode.

    .venv/bin/python benchmarks/loaders.py                          # ~550k rows, 3 runs (~10 minutes)
    .venv/bin/python benchmarks/loaders.py --responses 2000 --repeats 1   # quick look (< 1 minute)

Figures, not pass/fail. One sandbox (no ``--anomalies``) and one throw-away PostgreSQL server
(tests/harness.py's) serve every run; the modes run interleaved, their order rotating:

a. tap: ``tap-alida`` with every stream selected, stdout on /dev/null (RECORD messages);
b. RECORD → target-postgres: the tap's stdout piped into target-postgres' stdin;
c. BATCH → target-postgres: the same pipe, the tap with ``batch_config`` (gzip JSONL files in a
   local folder), target-postgres loading the files its BATCH messages name.

Piped directly, as Meltano does, without Meltano itself (its process and its own line handling
would be a fourth cost). The loader is the Meltano-installed target-postgres with meltano.yml's
settings (record metadata, ACTIVATE_VERSION, soft delete); each run loads into a new schema, and
its row counts are checked against the sandbox's truth. rows/s = rows of every stream / wall s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# Status checks as often as before they became constants (docs/development.md).
os.environ.setdefault("ALIDA_TEST_POLL_SECONDS", "0.2,1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import Postgres, postgres_server  # noqa: E402 - tests/ is not a package

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
FIXED = ("activity_fields", "activity_answers", "member_profiles", "member_profile_values")
MODES = ("tap", "record", "batch")
LABELS = {
    "tap": "a. tap alone → /dev/null (RECORD)",
    "record": "b. tap → target-postgres, RECORD",
    "batch": "c. tap → target-postgres, BATCH (gzip JSONL, local folder)",
}


def tap_command(work: Path, config: dict[str, Any], name: str) -> list[str]:
    path = work / f"{name}.json"
    path.write_text(json.dumps(config))
    return [sys.executable, "-m", "tap_alida", "--config", str(path), "--catalog", str(work / "catalog.json")]


def expected_rows(url: str) -> dict[str, int]:
    """Rows per stream kind, from the sandbox's truth."""
    with urllib.request.urlopen(url + "/_sandbox/truth", timeout=60) as response:
        truth = json.load(response)
    surveys = [a for a in truth["activities"] if "records" in a]
    return {
        "activity streams": sum(a["records"] for a in surveys),
        "activity_fields": sum(a["fields"] for a in surveys),
        "activity_answers": sum(a["values"] for a in surveys),
        "member_profiles": truth["members"]["members"],
        "member_profile_values": truth["members"]["member_variables"],
    }


def loaded_rows(postgres: Postgres, schema: str) -> dict[str, int]:
    counts: dict[str, int] = {"activity streams": 0}
    tables = postgres.sql(f"select table_name from information_schema.tables where table_schema = '{schema}'")
    for (table,) in tables:
        (n,) = postgres.sql(f'select count(*) from "{schema}"."{table}"')[0]
        key = table if table in FIXED else "activity streams"
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def run_mode(
    mode: str, run: int, work: Path, config: dict[str, Any], *, loader: Path, postgres: Postgres
) -> tuple[float, float]:
    """One run of a mode: (wall seconds until the last process exits, seconds until the tap exits)."""
    schema = f"bench_{mode}_{run}"
    if mode == "batch":
        folder = work / f"batches-{run}"
        folder.mkdir()
        config = {
            **config,
            "batch_config": {
                "encoding": {"format": "jsonl", "compression": "gzip"},
                "storage": {"root": folder.as_uri(), "prefix": "alida-"},
            },
        }
    tap_err = open(work / f"{mode}-{run}.tap.log", "w")  # noqa: SIM115 - closed below
    target_err = open(work / f"{mode}-{run}.target.log", "w")  # noqa: SIM115
    target_config = work / f"target-{mode}-{run}.json"
    target_config.write_text(
        json.dumps(postgres.target_config(schema, activate_version=True, hard_delete=False))
    )
    started = time.monotonic()
    if mode == "tap":
        tap = subprocess.Popen(
            tap_command(work, config, mode), stdout=subprocess.DEVNULL, stderr=tap_err, env=ENV
        )
        tap.wait()
        tap_done = wall = time.monotonic() - started
        target = None
    else:
        tap = subprocess.Popen(
            tap_command(work, config, mode), stdout=subprocess.PIPE, stderr=tap_err, env=ENV
        )
        target = subprocess.Popen(
            [str(loader), "--config", str(target_config)],
            stdin=tap.stdout,
            stdout=subprocess.DEVNULL,
            stderr=target_err,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        assert tap.stdout is not None
        tap.stdout.close()  # the target holds the pipe's read end
        tap.wait()
        tap_done = time.monotonic() - started
        target.wait()
        wall = time.monotonic() - started
    tap_err.close()
    target_err.close()
    if tap.returncode != 0:
        sys.exit(f"{mode}: tap-alida failed:\n{(work / f'{mode}-{run}.tap.log').read_text()[-3000:]}")
    if target is not None:
        if target.returncode != 0:
            log = (work / f"{mode}-{run}.target.log").read_text()
            sys.exit(f"{mode}: target-postgres failed:\n{log[-3000:]}")
        loaded = loaded_rows(postgres, schema)
        expected = expected_rows(config["api_url"])
        if loaded != expected:
            sys.exit(f"{mode}: loaded {loaded}, the sandbox holds {expected}")
        postgres.sql(f'drop schema "{schema}" cascade')
    if mode == "batch":
        shutil.rmtree(work / f"batches-{run}")
    return wall, tap_done


def summary(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} [{format(min(values), fmt)}–{format(max(values), fmt)}]"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--activities", type=int, default=2)
    parser.add_argument("--responses", type=int, default=25_000, help="per activity")
    parser.add_argument("--fields", type=int, default=12, help="per activity")
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--loader",
        type=Path,
        default=ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres",
        help="target-postgres executable (default: the one `meltano install` put in the project)",
    )
    args = parser.parse_args()
    if not args.loader.exists():
        sys.exit(f"{args.loader} not found: `python3 dev.py test` runs `meltano install`; or pass --loader")

    with tempfile.TemporaryDirectory(prefix="tap-alida-loaders-") as tmp:
        work = Path(tmp)
        sandbox = subprocess.Popen(
            [
                *(sys.executable, "-m", "alida_sandbox", "--port", "0"),
                *("--activities", str(args.activities), "--responses", str(args.responses)),
                *("--fields", str(args.fields), "--members", str(args.members)),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        servers = postgres_server()
        postgres: Postgres | None = None
        try:
            assert sandbox.stdout is not None
            url = sandbox.stdout.readline().strip()
            postgres = next(servers)
            config = {
                "api_url": url,
                "client_id": "sandbox",
                "client_secret": "sandbox",
                "community_api_key_name": "sandbox",
            }
            (work / "discover.json").write_text(json.dumps(config))
            discovered = subprocess.run(
                [sys.executable, "-m", "tap_alida", "--discover", "--config", str(work / "discover.json")],
                capture_output=True,
                text=True,
                env=ENV,
                check=False,
            )
            if discovered.returncode != 0:
                sys.exit(f"discovery failed:\n{discovered.stderr[-3000:]}")
            catalog = json.loads(discovered.stdout)
            for stream in catalog["streams"]:
                for entry in stream["metadata"]:
                    if entry["breadcrumb"] == []:
                        entry["metadata"]["selected"] = True
            (work / "catalog.json").write_text(json.dumps(catalog))
            expected = expected_rows(url)
            rows = sum(expected.values())
            print(
                f"tap-alida → target-postgres, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
                f"{args.activities} activities × {args.responses:,} responses × {args.fields} fields, "
                f"{args.members:,} members: {rows:,} rows ("
                + ", ".join(f"{k} {v:,}" for k, v in expected.items())
                + ")",
                flush=True,
            )
            walls: dict[str, list[float]] = {m: [] for m in MODES}
            taps: dict[str, list[float]] = {m: [] for m in MODES}
            for run in range(args.repeats):
                order = MODES[run % 3 :] + MODES[: run % 3]  # rotated: no mode always runs first
                for mode in order:
                    wall, tap_done = run_mode(mode, run, work, config, loader=args.loader, postgres=postgres)
                    walls[mode].append(wall)
                    taps[mode].append(tap_done)
                    print(f"run {run + 1} {mode}: {wall:.1f} s (tap exited at {tap_done:.1f} s)", flush=True)
        finally:
            sandbox.terminate()
            sandbox.wait(30)
            if postgres is not None:
                next(servers, None)  # runs the generator's cleanup: stops PostgreSQL

    base = statistics.median(walls["tap"])
    print(f"\nMedian of {args.repeats} interleaved runs [min–max]; {rows:,} rows per run.\n")
    print("| mode | wall s | rows/s | wall / tap alone | tap exited at, s |")
    print("|:--|--:|--:|--:|--:|")
    for mode in MODES:
        rates = [rows / w for w in walls[mode]]
        print(
            f"| {LABELS[mode]} | {summary(walls[mode], '.1f')} | {summary(rates, ',.0f')} "
            f"| {statistics.median(walls[mode]) / base:.2f} | {summary(taps[mode], '.1f')} |"
        )


if __name__ == "__main__":
    main()
