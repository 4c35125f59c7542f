"""Rules of the code's layout that a refactor must not break."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

from alida_sandbox.community import parse_iso

ROOT = Path(__file__).resolve().parent.parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_sandbox_shares_no_code_with_the_tap():
    """The sandbox is an independent oracle: it imports nothing from tap_alida."""
    files = sorted((ROOT / "alida_sandbox").glob("*.py"))
    assert files
    for path in files:
        leaks = {m for m in imported_modules(path) if m == "tap_alida" or m.startswith("tap_alida.")}
        assert not leaks, f"{path.name} imports {sorted(leaks)}"


def test_sandbox_parses_the_date_times_its_contract_accepts():
    utc = dt.UTC
    assert parse_iso("2026-11-20T00:00:00Z") == dt.datetime(2026, 11, 20, tzinfo=utc)
    assert parse_iso("2026-11-20T01:30:00+01:30") == dt.datetime(2026, 11, 20, tzinfo=utc)
    assert parse_iso("2026-11-20T00:00:00.1234567Z") == dt.datetime(2026, 11, 20, 0, 0, 0, 123456, tzinfo=utc)
    assert parse_iso("2026-11-20T00:00:00") == dt.datetime(2026, 11, 20, tzinfo=utc)
    for bad in ("yesterday", "2026-13-01T00:00:00Z", "", None, 5):
        assert parse_iso(bad) is None
