"""Fixtures for every test tier; the helpers they use live in ``harness``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from harness import FAULT_RESULTS, FIXTURES, SIMULATED_NIGHTS, Postgres, Sandbox, postgres_server


def pytest_terminal_summary(terminalreporter: Any) -> None:
    write = terminalreporter.write_line
    if SIMULATED_NIGHTS:
        nights, compared = (sum(counts) for counts in zip(*SIMULATED_NIGHTS, strict=True))
        write(
            f"Simulation of random nights: {nights} nights in {len(SIMULATED_NIGHTS)} sequences, "
            f"{compared} comparisons with a fresh full load (after every night or rerun that succeeded)."
        )
    if not FAULT_RESULTS:
        return
    write("")
    write("Fault matrix (fault | outcome | faults injected | retries by the tap | wall s):")
    for r in FAULT_RESULTS:
        write(f"| {r['fault']} | {r['outcome']} | {r['fired']} | {r['retries']} | {r['seconds']} |")


@pytest.fixture
def start_sandbox() -> Iterator[Any]:
    """Factory: ``start_sandbox(*args)`` starts a sandbox, stopped after the test."""
    started: list[Sandbox] = []

    def start(*args: str) -> Sandbox:
        sandbox = Sandbox(*args)
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def fixture_sandbox(start_sandbox: Any) -> Sandbox:
    return start_sandbox("--fixtures", str(FIXTURES))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throw-away PostgreSQL server on loopback (trust auth), for the whole session."""
    yield from postgres_server()
