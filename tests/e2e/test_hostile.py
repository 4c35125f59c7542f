"""Hostile export files (issue 17): a clear error or a correct load, never mixed data, never a traceback.

Each test writes its own fixture community (a copy of tests/fixtures/community
with one activity file replaced by hostile JSON text) and runs the real tap
against the sandbox serving it.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from harness import FIXTURES, discover, run_tap, select_all, without_batches

from tap_alida.modelling.layout import ActivityLayout
from tap_alida.modelling.records import ActivityRecordMapper, ResponseIds
from tap_alida.modelling.tally import Tally
from tap_alida.modelling.types import FieldDefinition

ACTIVITY = "5f3c2a10-1111-4b2c-9d3e-a62c0059cb00"  # "Quick Poll" in the fixture community
M1 = "14dfcbeb-b17a-464b-8372-a62c0065a966"
TRACEBACK = "Traceback (most recent call last)"


def write_community(
    tmp_path: Path, activity_file: str, *, fields: list[dict[str, Any]] | None = None
) -> Path:
    """A fixture community whose only activity is Quick Poll, served with ``activity_file`` as its export.

    ``activity_file`` is JSON *text* (numbers such as ``1e400`` must reach the tap as written);
    ``{definition}`` in it is replaced by a definition of ``fields``.
    """
    directory = tmp_path / "community"
    shutil.copytree(FIXTURES, directory)
    for path in (directory / "activities").glob("*.json"):
        path.unlink()
    listing = json.loads((FIXTURES / "activities.json").read_text(encoding="utf-8"))
    (directory / "activities.json").write_text(json.dumps([a for a in listing if a["id"] == ACTIVITY]))
    if fields is not None:
        activity_file = activity_file.replace("{definition}", json.dumps({"fields": fields}))
    (directory / "activities" / f"{ACTIVITY}.json").write_text(activity_file, encoding="utf-8")
    return directory


def field(
    field_id: str, data_type: str, name: str | None = None, options: tuple[str, ...] = ()
) -> dict[str, Any]:
    type_info: dict[str, Any] = {"dataType": data_type}
    if options:
        type_info["values"] = [{"id": o, "name": o.upper()} for o in options]
    return {"id": field_id, "name": name or field_id, "type": type_info}


def record(response_id: str | None, answers: str) -> str:
    """One record as JSON text; ``answers`` is the text of its ``fields`` array items."""
    own = "" if response_id is None else f'"id": "{response_id}", '
    return f'{{{own}"ownerId": "{M1}", "fields": [{answers}]}}'


def export_text(*records: str) -> str:
    head = f'{{"id": "file-1", "datasetId": "{ACTIVITY}", '
    return head + '"definition": {definition}, "records": [' + ", ".join(records) + "]}"


def sync(start_sandbox: Any, tmp_path: Path, directory: Path, **config: Any) -> Any:
    sandbox = start_sandbox("--fixtures", str(directory))
    run = run_tap(tmp_path, sandbox.config(**config))
    assert TRACEBACK not in run.stderr, run.stderr[-3000:]
    return run


def warnings_with(run: Any, text: str) -> list[str]:
    return [line for line in run.stderr.splitlines() if "WARNING" in line and text in line]


def answers(run: Any, field_id: str) -> dict[str, dict[str, Any]]:
    return {r["response_id"]: r for r in run.records["activity_answers"] if r["field_id"] == field_id}


# --------------------------------------------------------------------------- 1. numbers beyond a double


def test_numbers_too_big_for_a_double_load_as_null_with_one_warning(start_sandbox, tmp_path):
    text = export_text(
        record("r1", '{"id": "n", "values": [1e400]}'),
        record("r2", '{"id": "n", "values": [1180591620717411303424]}'),
        record("r3", '{"id": "n", "values": [-1e400]}'),
        record("r4", '{"id": "n", "values": [2.5]}'),
    )
    directory = write_community(tmp_path, text, fields=[field("n", "double", "Score")])
    run = sync(start_sandbox, tmp_path, directory)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {r["response_id"]: r["score"] for r in run.records["quick_poll"]}
    assert rows == {"r1": None, "r2": 1180591620717411303424.0, "r3": None, "r4": 2.5}
    lines = warnings_with(run, "too big for a double")
    assert len(lines) == 1, run.stderr
    assert "(n)" in lines[0] and "Quick Poll" in lines[0] and "(2 occurrence(s)" in lines[0]
    values = answers(run, "n")
    assert (values["r1"]["value_string"], values["r1"]["value_number"]) == ("1E+400", None)
    assert (values["r3"]["value_string"], values["r3"]["value_number"]) == ("-1E+400", None)
    assert (values["r2"]["value_string"], values["r2"]["value_number"]) == (None, 1180591620717411303424.0)
    assert values["r4"]["value_number"] == 2.5


# --------------------------------------------------------------------------- 2. a field id twice


def test_a_field_listed_twice_keeps_its_first_definition(start_sandbox, tmp_path):
    text = export_text(record("r1", '{"id": "q", "values": ["hello"]}, {"id": "x", "values": ["y"]}'))
    fields = [
        field("q", "string", "First text"),
        field("x", "string", "Other"),
        field("q", "double", "Again"),
    ]
    run = sync(start_sandbox, tmp_path, write_community(tmp_path, text, fields=fields))
    assert run.returncode == 0, run.stderr[-3000:]
    dictionary = run.records["activity_fields"]
    assert [(r["field_id"], r["name"], r["data_type"]) for r in dictionary] == [
        ("q", "First text", "string"),
        ("x", "Other", "string"),
    ]
    assert list(run.records["quick_poll"]) == [
        {
            "activity_id": ACTIVITY,
            "response_id": "r1",
            "member_id": M1,
            "batch_id": run.records["quick_poll"][0]["batch_id"],
            "first_text": "hello",
            "other": "y",
        }
    ]
    lines = warnings_with(run, "lists field q twice")
    assert len(lines) == 1, run.stderr
    assert "'First text'" in lines[0] and "'Again'" in lines[0] and "first definition is used" in lines[0]


# --------------------------------------------------------------------------- 3. a response id twice


def test_repeated_response_ids_get_unique_keys_and_one_counted_warning(start_sandbox, tmp_path):
    text = export_text(
        record("r1", '{"id": "q", "values": ["a"]}'),
        record("r1", '{"id": "q", "values": ["b"]}'),
        record("r2", '{"id": "q", "values": ["c"]}'),
        record("r1", '{"id": "q", "values": ["d"]}'),
    )
    run = sync(start_sandbox, tmp_path, write_community(tmp_path, text, fields=[field("q", "string", "Q")]))
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [(r["response_id"], r["q"]) for r in run.records["quick_poll"]]
    assert rows == [("r1", "a"), ("r1:1", "b"), ("r2", "c"), ("r1:2", "d")]
    long_rows = [(r["response_id"], r["value_string"]) for r in run.records["activity_answers"]]
    assert long_rows == rows  # the same keys in both streams: answers join to their row
    lines = warnings_with(run, "repeat a response id")
    assert len(lines) == 1, run.stderr  # once per activity and run, for both streams
    assert "Quick Poll" in lines[0] and "(3 occurrence(s)" not in lines[0] and "(2 occurrence(s)" in lines[0]


# ------------------------------------------------------------- 4. indicators and an unlisted option


def test_indicators_warn_about_an_option_the_definition_does_not_list(start_sandbox, tmp_path):
    text = export_text(
        record("r1", '{"id": "s", "values": ["o-a", "o-new"]}'),
        record("r2", '{"id": "s", "values": ["o-new"]}'),
    )
    fields = [field("s", "set", "Brands", options=("o-a", "o-b"))]
    run = sync(
        start_sandbox, tmp_path, write_community(tmp_path, text, fields=fields), set_columns="indicators"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [{k: v for k, v in r.items() if k.startswith("brands")} for r in run.records["quick_poll"]]
    assert rows == [{"brands__o_a": True, "brands__o_b": False}, {"brands__o_a": False, "brands__o_b": False}]
    lines = warnings_with(run, "'o-new'")
    assert len(lines) == 1, run.stderr
    assert "Quick Poll" in lines[0] and "(s)" in lines[0] and "activity_answers" in lines[0]
    kept = [(r["response_id"], r["option_id"]) for r in run.records["activity_answers"]]
    assert kept == [("r1", "o-a"), ("r1", "o-new"), ("r2", "o-new")]


# --------------------------------------------------------------------------- 5. structured values


def test_structured_values_are_null_in_the_column_and_json_in_answers(start_sandbox, tmp_path):
    text = export_text(
        record("r1", '{"id": "s", "values": {"a": 1}}, {"id": "t", "values": [{"k": [1, 2]}]}'),
        record("r2", '{"id": "s", "values": ["o-a", {"b": 2}]}, {"id": "n", "values": [[1]]}'),
    )
    fields = [
        field("s", "set", "Brands", options=("o-a",)),
        field("t", "string", "Text"),
        field("n", "double", "N"),
    ]
    run = sync(start_sandbox, tmp_path, write_community(tmp_path, text, fields=fields))
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [(r["brands"], r["text"], r["n"]) for r in run.records["quick_poll"]]
    assert rows == [([], None, None), (["O-A"], None, None)]
    assert "{'" not in json.dumps(run.records["quick_poll"])  # no Python repr anywhere
    structured = warnings_with(run, "holds a JSON object or array")
    assert sorted(line.split("field ")[1].split(")")[0] for line in structured) == [
        "'Brands' (s",
        "'N' (n",
        "'Text' (t",
    ]
    assert any("'Brands' (s)" in line and "(2 occurrence(s)" in line for line in structured)
    by_field = {
        (r["response_id"], r["field_id"], r["value_index"]): r for r in run.records["activity_answers"]
    }
    assert by_field[("r1", "s", 0)]["value_string"] == '{"a": 1}'
    assert by_field[("r1", "t", 0)]["value_string"] == '{"k": [1, 2]}'
    assert by_field[("r2", "s", 1)]["value_string"] == '{"b": 2}'
    assert by_field[("r2", "s", 0)]["option_id"] == "o-a"
    assert by_field[("r2", "n", 0)]["value_string"] == "[1]"


# --------------------------------------------------------------------------- 10. a bad file at discovery


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("", "is empty (0 bytes)"),
        ("<html><body>Service unavailable</body></html>", "is not valid JSON (lexical error"),
        ('{"records": []}', "has no 'definition' object"),
    ],
    ids=["empty", "not JSON", "no definition"],
)
def test_a_bad_file_at_discovery_fails_fast_naming_batch_and_cause(start_sandbox, tmp_path, text, cause):
    sandbox = start_sandbox("--fixtures", str(write_community(tmp_path, text)))
    started = time.monotonic()
    run = run_tap(tmp_path, sandbox.config(), "--discover")
    assert time.monotonic() - started < 15
    assert run.returncode == 1
    assert TRACEBACK not in run.stderr, run.stderr
    first = next(line for line in run.stderr.splitlines() if "| ERROR" in line)
    created = re.findall(r"Created batch ([0-9a-f-]{36}) for activity 'Quick Poll'", run.stderr)
    assert len(created) == 1 and f"batch {created[0]}" in first and cause in first, run.stderr
    assert "; retry " not in run.stderr  # not retried as if the network had failed
    assert "Service unavailable" not in run.stderr  # the file's text is not logged


# --------------------------------------------------------------------------- 11. malformed mid-way


def sync_a_bad_file(start_sandbox: Any, tmp_path: Path, text: str) -> tuple[Any, Any, Any, str, str]:
    """Sync Quick Poll served as ``text``, which fails: the sandbox, the catalog, the run, its
    first ERROR line and the one batch it created. As Meltano runs it: a catalog from an
    earlier discovery, so the sync's batches are its own."""
    sandbox = start_sandbox("--fixtures", str(write_community(tmp_path, text, fields=[field("q", "string")])))
    catalog = select_all(without_batches(discover(tmp_path, sandbox.config())))
    run = run_tap(tmp_path, sandbox.config(), catalog=catalog)
    assert run.returncode == 1
    assert TRACEBACK not in run.stderr, run.stderr
    first = next(line for line in run.stderr.splitlines() if "| ERROR" in line)
    (batch,) = set(re.findall(r"Created batch ([0-9a-f-]{36}) for activity 'Quick Poll'", run.stderr))
    return sandbox, catalog, run, first, batch


def test_a_file_malformed_midway_leaves_no_batch_in_state(start_sandbox, tmp_path):
    good = record("r1", '{"id": "q", "values": ["a"]}')
    text = export_text(good, '{"id": "r2", "ownerId": nope}', good.replace("r1", "r3"))
    sandbox, catalog, run, first, batch = sync_a_bad_file(start_sandbox, tmp_path, text)
    assert f"batch {batch} is truncated or malformed near byte" in first
    recorded = [s for s in run.states if batch in json.dumps(s)]
    assert recorded, "the batch was in STATE while it was read"
    assert batch not in json.dumps(run.state)  # …and the final STATE no longer holds it
    posts = [
        r for r in sandbox.requests() if r["method"] == "POST" and r["path"].endswith("/responses/batch")
    ]
    rerun = run_tap(tmp_path, sandbox.config(), catalog=catalog, state=run.state)
    assert rerun.returncode == 1 and "Re-using activity" not in rerun.stderr
    posts_after = [
        r for r in sandbox.requests() if r["method"] == "POST" and r["path"].endswith("/responses/batch")
    ]
    assert len(posts_after) > len(posts)  # the rerun exported afresh


def test_a_file_bad_on_arrival_leaves_no_batch_in_state(start_sandbox, tmp_path):
    """A file found bad when it arrives (here a vertical tab between values, which no JSON
    allows) fails the survey at once, as one found bad mid-way does, and its batch leaves
    STATE: re-reading that file cannot help, so the rerun must export afresh rather than
    re-use the batch (for 6 h, each rerun failing alike)."""
    good = record("r1", '{"id": "q", "values": ["a"]}')
    text = export_text(good, good.replace("r1", "r2")).replace('"records": [', '"records": [\x0b')
    sandbox, catalog, run, first, batch = sync_a_bad_file(start_sandbox, tmp_path, text)
    assert f"batch {batch} is not valid JSON: byte" in first, first
    assert "quick_poll" not in run.records  # nothing from the file was emitted
    assert batch not in json.dumps(run.state)  # the final STATE does not hold it
    rerun = run_tap(tmp_path, sandbox.config(), catalog=catalog, state=run.state)
    assert rerun.returncode == 1 and "Re-using activity" not in rerun.stderr, rerun.stderr
    (again,) = set(re.findall(r"Created batch ([0-9a-f-]{36}) for activity 'Quick Poll'", rerun.stderr))
    assert again != batch  # the rerun exported afresh


# --------------------------------------------------------------- 14. wider than a warehouse allows


def test_a_stream_wider_than_warehouses_allow_is_named_at_discovery(start_sandbox, tmp_path):
    options = tuple(f"o{i}" for i in range(1600))  # 4 fixed + 1,600 indicators + 1 text = 1,605 columns
    fields = [field("s", "set", "Brands", options=options), field("t", "string", "Text")]
    text = export_text(record("r1", '{"id": "t", "values": ["x"]}'))
    sandbox = start_sandbox("--fixtures", str(write_community(tmp_path, text, fields=fields)))
    run = run_tap(tmp_path, sandbox.config(set_columns="indicators"), "--discover")
    assert run.returncode == 0, run.stderr[-3000:]
    lines = warnings_with(run, "more than some warehouses allow")
    assert len(lines) == 1, run.stderr[-3000:]
    line = lines[0]
    assert "Stream quick_poll (activity 'Quick Poll'" in line and "has 1605 columns" in line
    assert "PostgreSQL 1,600" in line and "Redshift 1,600" in line and "SQL Server 1,024" in line
    assert "BigQuery" not in line
    assert "'set_columns' to 'array' (1600 of the columns are option indicators)" in line
    assert "deselect fields" in line and "activity_answers" in line
    narrow = run_tap(tmp_path, sandbox.config(set_columns="array"), "--discover")
    assert narrow.returncode == 0 and not warnings_with(narrow, "more than some warehouses allow")


def test_a_file_cut_before_its_definition_ends_is_exported_again(start_sandbox, tmp_path):
    """Not a network failure either: the body arrived whole, the file itself stops early.
    Like a truncated download, that is worth a new batch (3 batches in all: settings.EXPORT_ATTEMPTS)."""
    text = f'{{"id": "file-1", "datasetId": "{ACTIVITY}", "definition": {{"fields": [{{"id": "q", "na'
    sandbox = start_sandbox("--fixtures", str(write_community(tmp_path, text)))
    run = run_tap(tmp_path, sandbox.config(), "--discover")
    assert run.returncode == 1
    assert TRACEBACK not in run.stderr, run.stderr
    created = re.findall(r"Created batch ([0-9a-f-]{36}) for activity 'Quick Poll'", run.stderr)
    assert len(created) == 3
    first = next(line for line in run.stderr.splitlines() if "| ERROR" in line)
    assert f"batch {created[-1]} is truncated: its JSON stops at byte {len(text)}" in first
    assert "). 3 batches were tried. Rerun the sync later; if it keeps failing" in first
    assert "; retry " not in run.stderr


# --------------------------------------------------------------------------- units


def test_repeated_ids_never_collide_with_later_own_ids():
    repeats: list[str] = []
    ids = ResponseIds(repeats.append)
    given = [ids({"id": own}, "m") for own in ("a", "a", "a:1", "b", "a")]
    assert given == ["a", "a:1", "a:1:1", "b", "a:2"]
    assert len(set(given)) == len(given) and repeats == ["a", "a:1", "a"]


def test_warnings_about_bad_values_do_not_quote_the_value(caplog):
    fields = [FieldDefinition.from_api({"id": "d", "name": "D", "type": {"dataType": "double"}})]
    tally = Tally()
    mapper = ActivityRecordMapper("A", "activity 'A'", "B", ActivityLayout(fields), tally=tally)
    secret = "jane.doe@example.com"
    with caplog.at_level("WARNING"):
        rows = [
            mapper.map({"id": "r", "fields": [{"id": "d", "values": [v]}]}) for v in (secret, {"x": secret})
        ]
        tally.flush()
    assert [r["d"] for r in rows] == [None, None]
    assert caplog.records and secret not in caplog.text
    assert "holds a value that is not a number (a str)" in caplog.text
    assert "holds a JSON object or array" in caplog.text and "(1 occurrence(s)" in caplog.text
