"""What a night costs as a community grows: discovery and sync of 100, 400 and 1,000 surveys.

Figures, not pass/fail. For each size one sandbox (every survey's export ready at once),
one discovery, then one sync of every stream (discovery's batches re-used, as ``meltano
run`` does), with default settings. Printed per size: discovery wall and catalog size;
sync wall, wall per survey and its ratio to the smallest size's (the floor measured in
the same run: a ratio near 1.0 means the night costs the same per survey); STATE
messages and bytes, their share of the sync's output; peak RSS (``wait4``) and the
highest thread count seen (``/proc``).

    .venv/bin/python benchmarks/scale.py                          # 100, 400, 1000 surveys
    .venv/bin/python benchmarks/scale.py --sizes 100,1000 --responses 5 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import bench  # the sibling script: benchmarks/ is on sys.path when this one runs

BIN = Path(sys.executable).parent


def run(work: Path, config: dict[str, Any], *args: str) -> dict[str, Any]:
    """One tap process: wall, peak RSS (MB), peak threads, stdout bytes and its STATE lines."""
    (work / "config.json").write_text(json.dumps(config))
    out_path, err_path = work / "stdout", work / "stderr"
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.monotonic()
        process = subprocess.Popen(
            [str(BIN / "tap-alida"), "--config", str(work / "config.json"), *args],
            stdout=out,
            stderr=err,
            env=env,
        )
        threads = [0]

        def sample() -> None:
            status = Path(f"/proc/{process.pid}/status")
            while process.returncode is None:
                try:
                    line = next(x for x in status.read_text().splitlines() if x.startswith("Threads:"))
                    threads[0] = max(threads[0], int(line.split()[1]))
                except (OSError, StopIteration, ValueError):
                    return
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
    if process.returncode != 0:
        sys.exit(f"tap-alida failed ({process.returncode}):\n{err_path.read_text()[-3000:]}")
    states = messages = 0
    state_bytes = 0
    with open(out_path, "rb") as out:
        for line in out:
            messages += 1
            if line.startswith(b'{"type":"STATE"'):
                states += 1
                state_bytes += len(line)
    return {
        "wall": wall,
        "rss_mb": usage.ru_maxrss / 1024,
        "threads": threads[0],
        "bytes": out_path.stat().st_size,
        "states": states,
        "state_bytes": state_bytes,
        "messages": messages,
        "stdout": out_path,
    }


def night(surveys: int, responses: int) -> dict[str, Any]:
    """Discovery, then a sync of every stream, on a new sandbox of ``surveys`` open surveys."""
    with (
        bench.Sandbox(
            "--activities", str(surveys), "--members", "20", "--responses", str(responses), "--clean"
        ) as sandbox,
        tempfile.TemporaryDirectory() as folder,
    ):
        work = Path(folder)
        config = sandbox.credentials()
        discovery = run(work, config, "--discover")
        catalog = json.loads(discovery["stdout"].read_text())
        for stream in catalog["streams"]:
            for entry in stream["metadata"]:
                if entry["breadcrumb"] == []:
                    entry["metadata"]["selected"] = True
        (work / "catalog.json").write_text(json.dumps(catalog))
        sync = run(work, config, "--catalog", str(work / "catalog.json"))
        return {"discovery": discovery, "sync": sync}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,400,1000", help="comma list of survey counts")
    parser.add_argument("--responses", type=int, default=5, help="responses per survey")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (interleaved); medians shown")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    for _ in range(args.repeat):
        for n in sizes:  # interleaved: the machine's noise falls on every size alike
            results[n].append(night(n, args.responses))

    def med(n: int, part: str, key: str) -> float:
        return statistics.median(r[part][key] for r in results[n])

    floor = med(sizes[0], "sync", "wall") / sizes[0]
    print(
        f"\n{args.responses} responses per survey, 20 members, every stream selected, median of "
        f"{args.repeat} run(s); per-survey ratio against {sizes[0]} surveys in the same run.\n"
    )
    print(
        "| surveys | discovery | catalog | sync wall | per survey | ratio | STATE messages | STATE bytes "
        "| STATE share | output | peak RSS | threads |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for n in sizes:
        wall = med(n, "sync", "wall")
        walls = [r["sync"]["wall"] for r in results[n]]
        spread = f" ({min(walls):.1f}-{max(walls):.1f})" if len(walls) > 1 else ""
        state_bytes = med(n, "sync", "state_bytes")
        output = med(n, "sync", "bytes")
        print(
            f"| {n:,} | {med(n, 'discovery', 'wall'):.1f} s | {med(n, 'discovery', 'bytes') / 1e6:.1f} MB "
            f"| {wall:.1f} s{spread} | {1000 * wall / n:.0f} ms | {wall / n / floor:.2f} "
            f"| {med(n, 'sync', 'states'):,.0f} | {state_bytes / 1e6:.2f} MB "
            f"| {100 * state_bytes / output:.1f} % "
            f"| {output / 1e6:.1f} MB | {med(n, 'sync', 'rss_mb'):.0f} MB | {med(n, 'sync', 'threads'):.0f} |"
        )


if __name__ == "__main__":
    main()
