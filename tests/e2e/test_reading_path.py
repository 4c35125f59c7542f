"""The README's "Reading the code" names every module one record passes, and only those.

A survey stream is synced in this process (``harness.run_tap_here``, against the sandbox over
a real socket) with a profiler on every thread; each ``tap_alida`` module with a function
called during the sync must be named in that README section, and each module the section
names must have been called. A module added to a record's path, or one that leaves it,
fails here until the README says so.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import Any

from harness import discover, run_tap_here, select_all, without_batches

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tap_alida"


def readme_modules() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Reading the code", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(tap_alida/[\w/]+\.py)`", section))


def test_the_readme_names_every_module_a_record_passes(start_sandbox: Any, tmp_path: Path) -> None:
    sandbox = start_sandbox()
    config = sandbox.config()
    catalog = without_batches(discover(tmp_path, config))
    survey = "customer_satisfaction"
    assert survey in {s["tap_stream_id"] for s in catalog["streams"]}
    called: set[str] = set()
    prefix = str(PACKAGE) + "/"

    import tap_alida.tap  # noqa: F401 - imported first: module bodies run at import are no one's path

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_name != "<module>":
            name = frame.f_code.co_filename
            if name.startswith(prefix):
                called.add("tap_alida/" + name[len(prefix) :])

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        run = run_tap_here(tmp_path, config, catalog=select_all(catalog, {survey}))
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.records[survey], "the survey stream emitted no record"
    called -= {"tap_alida/__init__.py", "tap_alida/__main__.py"}
    listed = readme_modules()
    assert sorted(called - listed) == [], (
        f"modules a record passes that the README does not name: {sorted(called - listed)}"
    )
    assert sorted(listed - called) == [], (
        f"modules the README names that no record passes: {sorted(listed - called)}"
    )
