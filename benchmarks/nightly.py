"""What a nightly run costs a tenant and how long it takes (figures, not a test).

1. Batch POSTs per night for a community of N surveys of which C are closed:
   night 1 (empty state), night 2 (night 1's state) and night 3 (night 2's state in a fresh
   container: an empty ``cache_dir``) with ``closed_activities``
   ``export`` (every survey every night, the tap before closed surveys were
   skipped) and ``skip`` (the default), counted from the sandbox's request log.
   Discovery and sync are counted separately, as ``meltano run`` does both.
2. Wall time of one sync of S surveys whose exports each take T seconds on the
   sandbox, plus the member export, at default settings, against T itself: the
   sync alone (given a catalog without discovery's batches, so it creates every
   export), and discovery + sync as ``meltano run`` does them (the sync re-uses
   the batches discovery made).

    .venv/bin/python benchmarks/nightly.py                 # 200 surveys / 180 closed; 20 × 5 s
    .venv/bin/python benchmarks/nightly.py --surveys 40 --closed 36 --sync-surveys 10 --delay 3
    .venv/bin/python benchmarks/nightly.py --only wall --repeat 5      # wall times only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import bench  # the sibling script: benchmarks/ is on sys.path when this one runs

# Status checks as often as before they became constants (docs/development.md).
os.environ.setdefault("ALIDA_TEST_POLL_SECONDS", "0.2")

BIN = Path(sys.executable).parent


class Sandbox(bench.Sandbox):
    """bench.py's sandbox process, plus its request log (batch POSTs) and its /_sandbox routes."""

    def call(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def activity_posts(self, after: int) -> int:
        log = self.call("/_sandbox/requests")
        return sum(
            1
            for r in log
            if r["seq"] > after and r["method"] == "POST" and r["path"].endswith("/responses/batch")
        )

    def last_seq(self) -> int:
        return max((r["seq"] for r in self.call("/_sandbox/requests")), default=-1)


def tap(work: Path, config: dict[str, Any], *args: str) -> tuple[str, float]:
    (work / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "tap-alida"), "--config", str(work / "config.json"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return done.stdout, time.monotonic() - started


def selected(catalog_text: str, keep_batches: bool = True) -> str:
    catalog = json.loads(catalog_text)
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = True
                if not keep_batches:
                    entry["metadata"].pop("alida-batch", None)
    return json.dumps(catalog)


def last_state(output: str) -> dict[str, Any]:
    states = [json.loads(line)["value"] for line in output.splitlines() if '"type":"STATE"' in line]
    return states[-1]


def posts_per_night(surveys: int, closed: int, mode: str) -> dict[str, int]:
    with Sandbox(
        "--activities", str(surveys), "--members", "5", "--responses", "3", "--fields", "6"
    ) as sandbox:
        ids = [
            a["id"] for a in sandbox.call("/_sandbox/truth")["activities"] if a["activityType"] == "Survey"
        ]
        already = len(ids) // 2  # the sandbox closes every other survey
        for activity_id in ids[0::2][: max(0, closed - already)]:
            sandbox.call(f"/_sandbox/activities/{activity_id}/close", {})
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            config = {**sandbox.credentials(), "closed_activities": mode}
            counts = {}
            state: dict[str, Any] = {}
            for night in (1, 2, 3):
                if night == 3:  # a fresh container: an empty cache_dir, STATE from the orchestrator
                    config = {**config, "cache_dir": str(work / "fresh-container")}
                seq = sandbox.last_seq()
                catalog, _ = tap(work, config, "--discover")
                counts[f"night {night} discovery"] = sandbox.activity_posts(seq)
                (work / "catalog.json").write_text(selected(catalog))
                (work / "state.json").write_text(json.dumps(state))
                seq = sandbox.last_seq()
                output, _ = tap(
                    work, config, "--catalog", str(work / "catalog.json"), "--state", str(work / "state.json")
                )
                counts[f"night {night} sync"] = sandbox.activity_posts(seq)
                state = last_state(output)
            return counts


def sync_wall_time(surveys: int, delay: float) -> tuple[float, float]:
    """Seconds of (the sync alone, discovery + sync)."""
    with (
        Sandbox(
            "--activities", str(surveys), "--members", "20", "--responses", "20", "--job-delay", str(delay)
        ) as sandbox,
        tempfile.TemporaryDirectory() as folder,
    ):
        work = Path(folder)
        config = sandbox.credentials()  # default settings: this is what is timed
        catalog, discovery = tap(work, config, "--discover")
        (work / "catalog.json").write_text(selected(catalog, keep_batches=False))
        _, alone = tap(work, config, "--catalog", str(work / "catalog.json"))
        # Discovery and sync again, as one `meltano run` (a fresh cache: every survey is
        # open, so discovery exports each; the sync re-uses those batches).
        config["cache_dir"] = str(work / "cache2")
        catalog, discovery = tap(work, config, "--discover")
        (work / "catalog.json").write_text(selected(catalog))
        _, sync = tap(work, config, "--catalog", str(work / "catalog.json"))
        return alone, discovery + sync


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--surveys", type=int, default=200)
    parser.add_argument("--closed", type=int, default=180)
    parser.add_argument("--sync-surveys", type=int, default=20)
    parser.add_argument("--delay", type=float, default=5.0, help="seconds each export takes (T)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["posts", "wall"], default=None)
    args = parser.parse_args()

    if args.only != "wall":
        print(f"Batch POSTs per night, {args.surveys} surveys of which {args.closed} closed:\n")
        print(
            "| closed_activities | night 1 discovery | night 1 sync | night 2 discovery | night 2 sync "
            "| night 3 discovery (fresh container) | night 3 sync (fresh container) |"
        )
        print("|---|---|---|---|---|---|---|")
        for mode in ("export", "skip"):
            c = posts_per_night(args.surveys, args.closed, mode)
            row = [c[f"night {n} {part}"] for n in (1, 2, 3) for part in ("discovery", "sync")]
            print(f"| {mode} | " + " | ".join(str(n) for n in row) + " |")
    if args.only == "posts":
        return

    runs = [sync_wall_time(args.sync_surveys, args.delay) for _ in range(args.repeat)]
    for label, times in (
        ("the sync alone", [a for a, _ in runs]),
        ("discovery + sync", [b for _, b in runs]),
    ):
        median = statistics.median(times)
        print(
            f"\n{args.sync_surveys} surveys + members, each export T = {args.delay:g} s, default settings, "
            f"{label}: median {median:.1f} s = {median / args.delay:.2f} T "
            f"(range {min(times):.1f}-{max(times):.1f} s, {args.repeat} runs)"
        )


if __name__ == "__main__":
    main()
