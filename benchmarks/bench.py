"""tap-alida benchmark: throughput against a parse floor, peak memory, concurrent exports.

    .venv/bin/python benchmarks/bench.py                 # everything (about 10 minutes)
    .venv/bin/python benchmarks/bench.py --only throughput,concurrency --responses 50000

Figures, not pass/fail. Each part starts its own sandbox with generated data:

1. floor: records/s of ``ijson.items(file, "records.item")`` + ``json.dumps`` of each
   record written to /dev/null, in this process, over the very file the tap syncs;
2. tap: records/s of ``tap-alida`` syncing that activity with stdout on /dev/null
   (the stream's own "N records … in X s" line: parse, map, SDK, write), and tap/floor;
3. memory: the tap's peak RSS (``wait4`` rusage) on a ~10 MB and a ~1 GB export;
4. concurrency: wall time of a sync of 20 activities whose exports each take T s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import ijson
import requests

# Status checks as often as before they became constants (docs/development.md).
os.environ.setdefault("ALIDA_TEST_POLL_SECONDS", "0.2,1")

BIN = Path(sys.executable).parent
RECORDS_LINE = re.compile(r": (\d+) records from .* in ([\d.]+) s")
VALUES_LINE = re.compile(r"activity_answers: (\d+) values (?:of|from) .* in ([\d.]+) s")


class Sandbox:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "tap-alida-sandbox"), "--port", "0", *args], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()

    def credentials(self) -> dict[str, Any]:
        """What a tap config needs to reach this sandbox (every other setting at its default)."""
        return {
            "api_url": self.url,
            "client_id": "sandbox",
            "client_secret": "sandbox",
            "community_api_key_name": "sandbox",
        }

    def config(self, **extra: Any) -> dict[str, Any]:
        return {**self.credentials(), **extra}

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(30)


def run_tap(
    work: Path, config: dict[str, Any], *args: str, stdout: Any = subprocess.DEVNULL
) -> dict[str, Any]:
    """Run tap-alida; returns wall time, peak RSS (MB), stderr and the exit status."""
    (work / "config.json").write_text(json.dumps(config))
    command = [str(BIN / "tap-alida"), "--config", str(work / "config.json"), *args]
    err_path = work / "stderr.log"
    with open(err_path, "w") as err:
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=stdout, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = err_path.read_text()
    if process.returncode != 0:
        sys.exit(f"tap-alida failed:\n{stderr[-3000:]}")
    return {"wall": wall, "rss_mb": usage.ru_maxrss / 1024, "stderr": stderr}


def catalog_for(work: Path, config: dict[str, Any], streams: set[str] | None) -> Path:
    """Discover, then select the activity streams (all, or the named ones) only."""
    (work / "config.json").write_text(json.dumps(config))
    out = subprocess.run(
        [str(BIN / "tap-alida"), "--config", str(work / "config.json"), "--discover"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    catalog = json.loads(out)
    fixed = {"activity_fields", "member_profiles", "member_profile_values", "activity_answers"}
    for stream in catalog["streams"]:
        name = stream["tap_stream_id"]
        chosen = (name not in fixed and streams is None) or (streams is not None and name in streams)
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = chosen
    path = work / "catalog.json"
    path.write_text(json.dumps(catalog))
    return path


def download_export(sandbox: Sandbox, work: Path) -> Path:
    """The activity's export file, fetched the way any client would (token, batch, link)."""
    token_request = urllib.request.Request(
        sandbox.url + "/oauth2/token",
        data=b"grant_type=client_credentials&client_id=sandbox&client_secret=sandbox",
        method="POST",
    )
    token = json.load(urllib.request.urlopen(token_request))["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{sandbox.url}/v2/applications/sandbox"

    def call(url: str, method: str = "GET") -> Any:
        request = urllib.request.Request(
            url, headers=headers, method=method, data=b"" if method == "POST" else None
        )
        return json.load(urllib.request.urlopen(request))

    activities = json.load(
        urllib.request.urlopen(
            urllib.request.Request(f"{sandbox.url}/v1/applications/sandbox/activities", headers=headers)
        )
    )["items"]
    survey = next(a for a in activities if a["activityType"] == "Survey")
    batch = call(f"{base}/data/activities/{survey['id']}/responses/batch", "POST")
    while batch["status"] != "succeeded":
        time.sleep(0.5)
        batch = call(f"{base}/data/activities/responses/batch/{batch['id']}")
    path = work / "export.json"
    link = requests.get(batch["data"], headers=headers, allow_redirects=False, timeout=60)
    url = link.headers.get("Location", batch["data"])  # storage: no Authorization header
    with requests.get(url, stream=True, timeout=60) as response, open(path, "wb") as out:
        response.raise_for_status()
        for chunk in response.iter_content(1 << 20):
            out.write(chunk)
    return path


def floor(path: Path) -> tuple[int, float]:
    """ijson (C backend) + json.dumps per record to /dev/null: records, seconds."""
    items = ijson.get_backend("yajl2_c").items
    count = 0
    started = time.perf_counter()
    with open(path, "rb") as f, open(os.devnull, "w") as out:
        for record in items(f, "records.item", use_float=True):
            out.write(json.dumps(record))
            out.write("\n")
            count += 1
    return count, time.perf_counter() - started


def tap_rate(stderr: str) -> tuple[int, float]:
    match = RECORDS_LINE.search(stderr)
    assert match, stderr[-2000:]
    return int(match.group(1)), float(match.group(2))


def throughput(work: Path, responses: int, fields: int, repeats: int) -> None:
    print(f"\n## Throughput: 1 activity, {responses} responses x {fields} fields (mixed types)")
    with Sandbox(
        "--activities", "1", "--members", "5000", "--responses", str(responses), "--fields", str(fields)
    ) as sb:
        config = sb.config()
        export = download_export(sb, work)
        size = export.stat().st_size
        answers_catalog = work / "answers.json"
        answers_catalog.write_text(catalog_for(work, config, {"activity_answers"}).read_text())
        catalog = catalog_for(work, config, None)
        floors, taps, ratios, answers, answer_ratios = [], [], [], [], []
        for _ in range(repeats):  # interleaved: the VM is noisy
            n, seconds = floor(export)
            floors.append(n / seconds)
            result = run_tap(work, config, "--catalog", str(catalog))
            n_tap, tap_seconds = tap_rate(result["stderr"])
            assert n_tap == n, (n_tap, n)
            taps.append(n_tap / tap_seconds)
            ratios.append(taps[-1] / floors[-1])
            result = run_tap(work, config, "--catalog", str(answers_catalog))
            match = VALUES_LINE.search(result["stderr"])
            assert match, result["stderr"][-2000:]
            values, answer_seconds = int(match.group(1)), float(match.group(2))
            answers.append(values / answer_seconds)
            answer_ratios.append(n / answer_seconds / floors[-1])
        print(f"export file: {size / 1e6:.1f} MB, {n} records")
        print("| measure | median | runs |")
        print("|:--|--:|:--|")
        print(
            f"| floor: ijson + json.dumps, records/s | {statistics.median(floors):,.0f} | {_runs(floors)} |"
        )
        print(f"| tap-alida to /dev/null, records/s | {statistics.median(taps):,.0f} | {_runs(taps)} |")
        print(f"| tap / floor | {statistics.median(ratios):.2f} | {_runs(ratios, '.2f')} |")
        print(
            f"| activity_answers to /dev/null, rows (values)/s | {statistics.median(answers):,.0f} "
            f"| {_runs(answers)} |"
        )
        print(
            f"| activity_answers: records/s / floor | {statistics.median(answer_ratios):.2f} "
            f"| {_runs(answer_ratios, '.2f')} |"
        )
    export.unlink()


def memory(work: Path, small: int, large: int, fields: int) -> None:
    print(f"\n## Peak RSS of tap-alida ({fields} fields per response)")
    print("| export | records | file MB | peak RSS MB | wall s |")
    print("|:--|--:|--:|--:|--:|")
    rows = []
    for label, responses in (("small", small), ("large", large)):
        with Sandbox(
            "--activities", "1", "--members", "20000", "--responses", str(responses), "--fields", str(fields)
        ) as sb:
            config = sb.config()
            catalog = catalog_for(work, config, None)
            result = run_tap(work, config, "--catalog", str(catalog))
            n, _ = tap_rate(result["stderr"])
            mb = re.search(r"downloaded ([\d.]+) MB in", result["stderr"])
            rows.append(result["rss_mb"])
            row(label, n, mb.group(1) if mb else "?", f"{result['rss_mb']:.0f}", f"{result['wall']:.0f}")
    print(f"large/small peak RSS: {rows[1] / rows[0]:.2f}")


def concurrency(work: Path, activities: int, delay: float) -> None:
    print(f"\n## Concurrency: {activities} activities, each export takes T = {delay:.0f} s")
    with Sandbox(
        "--activities", str(activities), "--members", "100", "--responses", "200", "--job-delay", str(delay)
    ) as sb:
        config = sb.config()
        catalog = catalog_for(work, config, None)  # discovery itself runs the exports concurrently
        print("| sync | wall s | wall / T |")
        print("|:--|--:|--:|")
        for limit, note in ((8, " (default)"), (activities, ""), (1, " (one after another)")):
            result = run_tap(work, {**config, "max_concurrent_exports": limit}, "--catalog", str(catalog))
            label = f"{activities} activities, max_concurrent_exports={limit}{note}"
            row(label, f"{result['wall']:.1f}", f"{result['wall'] / delay:.2f}")


def row(*cells: Any) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |")


def _runs(values: list[float], fmt: str = ",.0f") -> str:
    return " ".join(format(v, fmt) for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="throughput,memory,concurrency")
    parser.add_argument("--responses", type=int, default=200_000)
    parser.add_argument("--fields", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-small", type=int, default=4_000, help="responses of the ~10 MB export")
    parser.add_argument("--memory-large", type=int, default=400_000, help="responses of the ~1 GB export")
    parser.add_argument("--activities", type=int, default=20)
    parser.add_argument("--job-delay", type=float, default=10.0)
    args = parser.parse_args()
    parts = set(args.only.split(","))
    print(
        f"tap-alida benchmark, Python {sys.version.split()[0]}, ijson backend yajl2_c, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="tap-alida-bench-") as tmp:
        work = Path(tmp)
        if "throughput" in parts:
            throughput(work, args.responses, args.fields, args.repeats)
        if "memory" in parts:
            memory(work, args.memory_small, args.memory_large, args.fields)
        if "concurrency" in parts:
            concurrency(work, args.activities, args.job_delay)


if __name__ == "__main__":
    main()
