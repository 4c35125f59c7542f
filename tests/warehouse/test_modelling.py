"""Warehouse-ready modelling (issue 5), end to end: the real tap into the real target-duckdb.

* schema drift: discover, load, let the survey change (a question added, one
  reworded, one retyped, one removed), load again with the now stale catalog,
  in each ``schema_drift`` mode, and check the tables;
* ``activity_answers``: one row per value of the sandbox truth;
* ``set_columns``: indicator columns agree with the array column on every row;
* ``column_naming``/``stream_naming`` = id;
* ``sensitive_values``: hashes are SHA-256(salt + value), raw values appear nowhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from harness import FIXED_STREAM_KEYS, discover, run_loader, run_tap, select_all, stream_schema

ADDED = "which_of_these_features_do_you_use"
REWORDED_OLD, REWORDED_NEW = "why_did_you_give_that_score", "what_is_the_main_reason_for_your_score"
RETYPED = "monthly_spend"
REMOVED = "field_"  # 'ご意見をお聞かせください' has no ASCII: field_<id>


@pytest.fixture
def sandbox(start_sandbox):
    return start_sandbox("--activities", "1", "--members", "30", "--responses", "60", "--fields", "12")


def load(tmp_path: Path, messages: str, database: Path) -> None:
    """Pipe Singer messages into the real target-duckdb (installed by `meltano install`)."""
    run_loader(
        tmp_path, "target-duckdb", {"filepath": str(database), "default_target_schema": "alida"}, messages
    )


def table(database: Path, name: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """(column → DuckDB type, rows) of alida.<name>."""
    with duckdb.connect(str(database), read_only=True) as con:
        types = {row[0]: row[1] for row in con.sql(f'DESCRIBE alida."{name}"').fetchall()}
        cursor = con.execute(f'SELECT * FROM alida."{name}"')
        columns = [d[0] for d in cursor.description]
        rows = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
    return types, rows


def activity_stream(catalog: dict[str, Any]) -> str:
    return next(s["tap_stream_id"] for s in catalog["streams"] if s["tap_stream_id"] not in FIXED_STREAM_KEYS)


def drift_scenario(tmp_path: Path, sandbox, mode: str):
    """Run 1 with a fresh catalog, drift the survey, run 2 with the same (stale) catalog."""
    config = sandbox.config(schema_drift=mode)
    catalog = select_all(discover(tmp_path, config), {"activity_answers"} | set())
    stream = activity_stream(catalog)
    select_all(catalog, {stream, "activity_answers", "activity_fields"})
    database = tmp_path / "warehouse.duckdb"
    first = run_tap(tmp_path, config, catalog=catalog)
    assert first.returncode == 0, first.stderr[-3000:]
    load(tmp_path, first.stdout, database)
    activity_id = first.records[stream][0]["activity_id"]
    sandbox.post(f"/_sandbox/activities/{activity_id}/drift", {})
    second = run_tap(tmp_path, config, catalog=catalog)
    return stream, catalog, database, first, second


def test_drift_evolve(sandbox, tmp_path):
    stream, catalog, database, _, second = drift_scenario(tmp_path, sandbox, "evolve")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "differ from the catalog" in second.stderr
    schemas = [m["schema"] for m in second.messages if m["type"] == "SCHEMA" and m["stream"] == stream]
    assert len(schemas) == 2  # the catalog's, then the evolved one before the first record
    first_record = next(
        i for i, m in enumerate(second.messages) if m["type"] == "RECORD" and m["stream"] == stream
    )
    last_schema = max(
        i for i, m in enumerate(second.messages) if m["type"] == "SCHEMA" and m["stream"] == stream
    )
    assert last_schema < first_record
    evolved = schemas[-1]["properties"]
    old = stream_schema(catalog, stream)["properties"]
    assert list(evolved)[: len(old)] == list(old)  # catalog columns kept, in order
    assert evolved[RETYPED]["type"] == ["string", "null"] and old[RETYPED]["type"] == ["number", "null"]
    assert evolved[ADDED]["type"] == ["array", "null"]
    assert REWORDED_NEW in evolved and REWORDED_OLD in evolved  # name mode: a new column
    load(tmp_path, second.stdout, database)

    types, rows = table(database, stream)
    truth = sandbox.truth()["activities"][0]
    assert len(rows) == truth["records"] == 60  # upserted on the same response ids
    assert types[RETYPED] == "VARCHAR"  # target-duckdb keeps the old numbers in a versioned column
    assert any(t == "DOUBLE" and c.startswith(f"{RETYPED}_") for c, t in types.items())
    assert types[ADDED] == "JSON", types
    by_id = {r["response_id"]: r for r in rows}
    new_rows = {r["response_id"]: r for r in second.records[stream]}
    assert set(by_id) == set(new_rows)
    for response_id, row in new_rows.items():
        loaded = by_id[response_id]
        # (target-duckdb loads through CSV: an empty string arrives as NULL)
        assert loaded[RETYPED] == (row[RETYPED] or None)
        assert loaded[REWORDED_NEW] == (row[REWORDED_NEW] or None)
        assert loaded[REWORDED_OLD] is None  # the old column of the reworded question
    assert any(r[RETYPED] for r in new_rows.values())
    assert sum(len(r[ADDED] or []) for r in new_rows.values()) > 0
    answers_count(sandbox, second)


def test_drift_ignore(sandbox, tmp_path):
    stream, catalog, database, _, second = drift_scenario(tmp_path, sandbox, "ignore")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "'schema_drift' is 'ignore'" in second.stderr
    schemas = [m["schema"] for m in second.messages if m["type"] == "SCHEMA" and m["stream"] == stream]
    assert schemas == [stream_schema(catalog, stream)]
    load(tmp_path, second.stdout, database)
    types, rows = table(database, stream)
    assert ADDED not in types and REWORDED_NEW not in types and types[RETYPED] == "DOUBLE"
    assert len(rows) == 60
    new_rows = second.records[stream]
    assert all(set(r) <= set(stream_schema(catalog, stream)["properties"]) for r in new_rows)
    # The reworded question keeps writing to its column (same field id) ...
    assert sum(1 for r in new_rows if r[REWORDED_OLD]) > 30
    # ... the retyped one's text values do not fit the number column ...
    assert all(r[RETYPED] is None or isinstance(r[RETYPED], float) for r in new_rows)
    # ... and the new question is in activity_answers, with every other value.
    fields = {r["field_id"]: r for r in second.records["activity_fields"]}
    added_id = next(fid for fid, r in fields.items() if r["name"] == "Which of these features do you use?")
    assert any(a["field_id"] == added_id and a["option_label"] for a in second.records["activity_answers"])
    answers_count(sandbox, second)


def test_drift_fail(sandbox, tmp_path):
    stream, _, database, _, second = drift_scenario(tmp_path, sandbox, "fail")
    assert second.returncode == 1
    assert "Traceback" not in second.stderr
    error = next(line for line in second.stderr.splitlines() if "ERROR" in line and "schema_drift" in line)
    for needle in (stream, "Which of these features do you use?", REWORDED_NEW, RETYPED, "--refresh-catalog"):
        assert needle in error, needle
    assert "number → string" in error and "removed" in error
    assert not second.records[stream]  # nothing of the drifted export was emitted
    # A refreshed catalog loads the new shape without drift.
    refreshed = select_all(discover(tmp_path, sandbox.config(schema_drift="fail")), {stream})
    third = run_tap(tmp_path, sandbox.config(schema_drift="fail"), catalog=refreshed)
    assert third.returncode == 0, third.stderr[-3000:]
    load(tmp_path, third.stdout, database)
    types, rows = table(database, stream)
    assert ADDED in types and len(rows) == 60


def answers_count(sandbox, run) -> None:
    truth = sandbox.truth()["activities"]
    assert len(run.records["activity_answers"]) == sum(a["values"] for a in truth if "values" in a)


def test_activity_answers_carry_every_value(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "3", "--members", "40", "--responses", "200", "--anomalies")
    config = sandbox.config()
    catalog = select_all(discover(tmp_path, config), {"activity_answers", "activity_fields"})
    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    answers = run.records["activity_answers"]
    truth = [a for a in sandbox.truth()["activities"] if "values" in a]
    assert len(answers) == sum(a["values"] for a in truth)
    for activity in truth:
        mine = [a for a in answers if a["activity_id"] == activity["id"]]
        assert len(mine) == activity["values"]
        assert len({a["response_id"] for a in mine}) <= activity["records"]
    keys = [(a["activity_id"], a["response_id"], a["field_id"], a["value_index"]) for a in answers]
    assert len(set(keys)) == len(keys)
    types = {r["field_id"]: r["data_type"] for r in run.records["activity_fields"]}
    typed = {
        "double": "value_number",
        "date-time": "value_datetime",
        "string": "value_string",
        "identifier": "value_string",
        "enum": "option_id",
        "set": "option_id",
    }
    for a in answers:
        column = typed[types[a["field_id"]]]
        assert a[column] is not None or a["value_string"] is None, a
        assert a["option_label"] is not None or a["option_id"] is None or a["value_string"], a
    # extra values of single-value fields are there too (value_index 1)
    assert any(a["value_index"] == 1 and types[a["field_id"]] in ("string", "double") for a in answers)
    load(tmp_path, run.stdout, tmp_path / "w.duckdb")
    column_types, rows = table(tmp_path / "w.duckdb", "activity_answers")
    assert len(rows) == len(answers)
    assert column_types["value_number"] == "DOUBLE" and column_types["value_datetime"].startswith("TIMESTAMP")


def test_indicators_agree_with_array_and_names_by_id(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "2", "--members", "30", "--responses", "80")
    config = sandbox.config(set_columns="both", column_naming="id", stream_naming="id")
    catalog = select_all(discover(tmp_path, config))
    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    activity_streams = [s for s in run.records if s not in FIXED_STREAM_KEYS]
    assert len(activity_streams) == 2
    fields = run.records["activity_fields"]
    for stream in activity_streams:
        rows = run.records[stream]
        activity_id = rows[0]["activity_id"]
        assert stream == "activity_" + activity_id.replace("-", "_")
        properties = stream_schema(catalog, stream)["properties"]
        assert all(len(name.encode()) <= 63 for name in properties)
        sets = [f for f in fields if f["activity_id"] == activity_id and f["data_type"] == "set"]
        assert sets
        checked = 0
        for f in sets:
            assert f["column_name"] == "field_" + f["field_id"].replace("-", "_")
            assert f["stream_name"] == stream
            for row in rows:
                labels = row[f["column_name"]]
                for option in f["options"]:
                    column = option["indicator_column"]
                    assert properties[column]["type"] == ["boolean", "null"]
                    assert row[column] is (option["name"] in labels)
                    checked += 1
        assert checked > 500
    load(tmp_path, run.stdout, tmp_path / "w.duckdb")
    types, loaded = table(tmp_path / "w.duckdb", activity_streams[0])
    assert sum(1 for t in types.values() if t == "BOOLEAN") >= 8 and len(loaded) == 80


def test_indicators_only_replace_the_array(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "1", "--members", "20", "--responses", "20")
    config = sandbox.config(set_columns="indicators")
    catalog = select_all(discover(tmp_path, config))
    stream = activity_stream(catalog)
    properties = stream_schema(catalog, stream)["properties"]
    assert "what_is_your_gender" not in properties
    assert properties["what_is_your_gender__female"]["type"] == ["boolean", "null"]
    assert not any(p["type"][0] == "array" for p in properties.values())


@pytest.mark.parametrize("mode", ["hash", "drop"])
def test_sensitive_values_never_leave_raw(start_sandbox, tmp_path, mode):
    sandbox = start_sandbox("--activities", "1", "--members", "40", "--responses", "5")
    members = {"member_profiles", "member_profile_values"}
    plain = run_tap(
        tmp_path, sandbox.config(), catalog=select_all(discover(tmp_path, sandbox.config()), members)
    )
    assert plain.returncode == 0, plain.stderr[-3000:]
    sensitive = {
        r["variable_id"]: r["variable_name"]
        for r in plain.records["member_profile_values"]
        if r["is_sensitive"]
    }
    assert set(sensitive.values()) == {"email", "Prénom"}
    raw = {
        (r["member_id"], r["variable_id"]): r["values"]
        for r in plain.records["member_profile_values"]
        if r["variable_id"] in sensitive
    }
    salt = "pepper-7f3a"
    config = sandbox.config(sensitive_values=mode, sensitive_values_salt=salt if mode == "hash" else None)
    catalog = select_all(discover(tmp_path, config), members)
    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    leaked = {v for values in raw.values() for v in values if v and v in output}
    assert not leaked
    assert salt not in output
    profiles = stream_schema(catalog, "member_profiles")["properties"]
    values = {(r["member_id"], r["variable_id"]): r for r in run.records["member_profile_values"]}
    assert set(values) >= set(raw)
    for key, plain_values in raw.items():
        assert values[key]["is_sensitive"] is True
        if mode == "hash":
            expected = [hashlib.sha256((salt + v).encode()).hexdigest() for v in plain_values]
            assert values[key]["values"] == expected
        else:
            assert values[key]["values"] is None
    if mode == "hash":
        assert "SHA-256" in profiles["email"]["description"]
        by_member = {r["member_id"]: r for r in run.records["member_profiles"]}
        email = next(v for v, n in sensitive.items() if n == "email")
        for (member, variable), plain_values in raw.items():
            if variable == email:
                assert (
                    by_member[member]["email"]
                    == hashlib.sha256((salt + plain_values[0]).encode()).hexdigest()
                )
    else:
        assert "email" not in profiles and "prenom" not in profiles
        assert all("email" not in r for r in run.records["member_profiles"])
    load(tmp_path, run.stdout, tmp_path / "w.duckdb")
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        dumped = json.dumps(con.sql("SELECT * FROM alida.member_profiles").fetchall(), default=str)
        dumped += json.dumps(con.sql("SELECT * FROM alida.member_profile_values").fetchall(), default=str)
    assert not {v for values in raw.values() for v in values if v and v in dumped}


def test_hash_needs_a_salt(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "1", "--members", "5", "--responses", "5")
    run = run_tap(tmp_path, sandbox.config(sensitive_values="hash"), "--discover")
    assert run.returncode != 0
    assert "sensitive_values_salt" in run.stderr


def test_activity_answers_records_its_batches_for_a_rerun(start_sandbox, tmp_path):
    """activity_answers reads one batch per activity; each is in STATE while it is read."""
    sandbox = start_sandbox("--activities", "2", "--members", "20", "--responses", "30")
    config = sandbox.config()
    catalog = select_all(discover(tmp_path, config), {"activity_answers"})
    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    recorded = [
        s["bookmarks"]["activity_answers"]["alida_batches"]
        for s in run.states
        if s.get("bookmarks", {}).get("activity_answers", {}).get("alida_batches")
    ]
    assert recorded and max(len(r) for r in recorded) == 2  # both activities' batches at once
    assert "alida_batches" not in run.state["bookmarks"]["activity_answers"]  # forgotten once read
    # A run that died while reading: its rerun re-uses the recorded batches, creates none.
    seq = max(r["seq"] for r in sandbox.requests())
    rerun = run_tap(
        tmp_path,
        config,
        catalog=catalog,
        state={"bookmarks": {"activity_answers": {"alida_batches": max(recorded, key=len)}}},
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    posts = [
        r
        for r in sandbox.requests()
        if r["seq"] > seq and r["method"] == "POST" and r["path"].endswith("/batch")
    ]
    assert posts == []
    assert rerun.stderr.count("Re-using activity") == 2
    assert len(rerun.records["activity_answers"]) == len(run.records["activity_answers"])
