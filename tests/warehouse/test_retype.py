"""A question whose data type changes, loaded by MeltanoLabs target-postgres.

target-postgres 0.8.1 cannot change a column's type. Under ``schema_drift: evolve``
a retyped question's column becomes a string column, and the load fails; under
``schema_drift: ignore`` values keep the catalog's type and the load goes on.
docs/streams.md's drift section says so; this test holds it to what the target does.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from harness import FIXED_STREAM_KEYS, ROOT, discover, run_tap, select_all


def load(tmp_path: Path, config: dict[str, Any], messages: str) -> subprocess.CompletedProcess:
    path = tmp_path / "target-postgres.json"
    path.write_text(json.dumps(config))
    executable = ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"
    return subprocess.run(
        [str(executable), "--config", str(path)],
        input=messages,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_retyped_question_fails_target_postgres_under_evolve_and_loads_under_ignore(
    start_sandbox, postgres, tmp_path
):
    sandbox = start_sandbox("--activities", "1", "--members", "3", "--responses", "6")
    config = sandbox.config()
    catalog = discover(tmp_path, config)
    survey = next(
        s["tap_stream_id"] for s in catalog["streams"] if s["tap_stream_id"] not in FIXED_STREAM_KEYS
    )
    catalog = select_all(catalog, only={survey})
    target = postgres.target_config("retype")

    first = run_tap(tmp_path, config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    loaded = load(tmp_path, target, first.stdout)
    assert loaded.returncode == 0, loaded.stderr[-3000:]

    activity_id = first.records[survey][0]["activity_id"]
    drift = sandbox.post(f"/_sandbox/activities/{activity_id}/drift", {"kinds": ["retyped"]})
    assert drift["kinds"] == ["retyped"]

    # evolve: the tap says which column changed type and emits it as a string column;
    # target-postgres refuses to alter the column, so the load fails and nothing changes.
    evolve = run_tap(tmp_path, config, catalog=catalog, state=first.state)
    assert evolve.returncode == 0, evolve.stderr[-3000:]
    assert "type changed: monthly_spend" in evolve.stderr
    refused = load(tmp_path, target, evolve.stdout)
    assert refused.returncode != 0
    assert "Altering columns is not supported" in refused.stderr
    assert "'retype.customer_satisfaction.monthly_spend' from 'NUMERIC' to 'TEXT'" in refused.stderr

    # ignore: the catalog's type stays; the load goes on (values that are no number are null).
    ignore = run_tap(tmp_path, sandbox.config(schema_drift="ignore"), catalog=catalog, state=first.state)
    assert ignore.returncode == 0, ignore.stderr[-3000:]
    loaded = load(tmp_path, target, ignore.stdout)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    column = postgres.sql(
        "select data_type from information_schema.columns where table_schema = 'retype' "
        "and table_name = 'customer_satisfaction' and column_name = 'monthly_spend'"
    )
    assert column == [["numeric"]]
    assert postgres.sql("select count(*) from retype.customer_satisfaction")[0][0] == "6"
