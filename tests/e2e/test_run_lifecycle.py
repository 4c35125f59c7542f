"""A run's lifetime: what one sync leaves behind must not break the next in the same process."""

from __future__ import annotations

import json

import pytest
from harness import FIXTURES, discover, select_all

from tap_alida.errors import AlidaError
from tap_alida.tap import TapAlida


def records_in(output: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in output.splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            counts[message["stream"]] = counts.get(message["stream"], 0) + 1
    return counts


def test_a_sync_after_a_failed_sync_in_the_same_process_succeeds(start_sandbox, tmp_path, capfd):
    """An orchestrator or a notebook runs several taps in one process: a failed sync stops its
    own export workers, and the next tap starts with a clear stop signal of its own."""
    good = start_sandbox("--fixtures", str(FIXTURES))
    catalog = select_all(discover(tmp_path, good.config()), only={"quick_poll", "product_feedback_q4"})
    failing = start_sandbox("--fixtures", str(FIXTURES), "--faults", "fail_job=1.0")

    first = TapAlida(config=failing.config(), catalog=catalog, validate_config=True)
    with pytest.raises(AlidaError, match="export failed"):
        first.sync_all()
    capfd.readouterr()

    second = TapAlida(config=good.config(), catalog=catalog, validate_config=True)
    second.sync_all()
    counts = records_in(capfd.readouterr().out)
    truth = {a["name"]: a.get("records") for a in good.truth()["activities"]}
    assert counts == {
        "product_feedback_q4": truth["Product Feedback — Q4 ✓"],
        "quick_poll": truth["Quick Poll"],
    }
    assert first.client.stop.is_set() and not second.client.stop.is_set()
