"""Unit tests of the pure parts: naming, date-times, value conversion, definition reads."""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path

import pytest

from tap_alida.errors import ExportFileError, TruncatedFileError
from tap_alida.export.batch import Batch
from tap_alida.export.file import ExportFile, check_complete, read_definition_from_stream
from tap_alida.modelling.layout import ActivityLayout
from tap_alida.modelling.naming import assign_names, snake_case
from tap_alida.modelling.records import ActivityRecordMapper
from tap_alida.modelling.types import (
    FieldDefinition,
    canonical_type,
    is_canonical_datetime,
    normalize_datetime,
    to_number,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is your gender?", "what_is_your_gender"),
        ("Brand Tracker — été 2026", "brand_tracker_ete_2026"),
        ("  Net Promoter Score (Q4)  ", "net_promoter_score_q4"),
        ("2026 wave", "_2026_wave"),
        ("ご意見をお聞かせください", ""),
    ],
)
def test_snake_case(text, expected):
    assert snake_case(text) == expected


def test_assign_names_unique_bounded_and_stable():
    items = [("id-aaaaaaaa", "Comments"), ("id-bbbbbbbb", "Comments"), ("x", "ご意見"), ("y", "a" * 100)]
    names = assign_names(items, fallback_prefix="field", reserved={"member_id"})
    assert names["id-aaaaaaaa"] == "comments"
    assert names["id-bbbbbbbb"] == "comments_idbbbbbb"
    assert names["x"].startswith("field_") and len(names["y"]) == 63
    assert assign_names(items, fallback_prefix="field") == names  # deterministic
    assert assign_names([("m", "Member ID")], fallback_prefix="f", reserved={"member_id"})["m"] != "member_id"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-10-01T00:00:00Z", "2026-10-01T00:00:00Z"),
        ("2026-10-01T00:00:00.000Z", "2026-10-01T00:00:00Z"),
        ("2026-10-01T02:00:00+02:00", "2026-10-01T00:00:00Z"),
        ("2026-10-01T00:00:00", "2026-10-01T00:00:00Z"),
        ("2026-10-01T00:00:00.1234567Z", "2026-10-01T00:00:00.123456Z"),
        ("2026-10-01", "2026-10-01T00:00:00Z"),
        ("not a date", None),
        (12, None),
    ],
)
def test_normalize_datetime(raw, expected):
    assert normalize_datetime(raw) == expected


@pytest.mark.parametrize(
    ("raw", "fast"),
    [
        ("2026-10-01T00:00:00Z", True),
        ("2026-02-30T00:00:00Z", False),  # not a date: the slow path turns it into null
        ("2026-10-01 00:00:00Z", False),
        ("2026-10-01T00:00:00+00", False),
        (20261001, False),
    ],
)
def test_datetime_fast_path_only_takes_canonical_values(raw, fast):
    assert is_canonical_datetime(raw) is fast
    if fast:
        assert normalize_datetime(raw) == raw


def test_numbers_and_type_synonyms():
    assert to_number("7.5") == 7.5 and to_number(3) == 3.0
    assert to_number("NaN") is None and to_number(True) is None and to_number("x") is None
    assert canonical_type("datetime") == canonical_type("date-time") == "date-time"
    assert canonical_type("number") == "double" and canonical_type("geo-point") is None


def test_mapper_fills_every_column_and_counts_member_records():
    fields = [
        FieldDefinition.from_api(
            {"id": "s", "name": "S", "type": {"dataType": "set", "values": [{"id": "o", "name": "O"}]}}
        ),
        FieldDefinition.from_api({"id": "d", "name": "D", "type": {"dataType": "double"}}),
    ]
    mapper = ActivityRecordMapper(
        activity_id="A", activity_label="activity 'A'", batch_id="B", layout=ActivityLayout(fields)
    )
    rows = [
        mapper.map({"ownerId": "m", "fields": [{"id": "s", "values": ["O"]}]}),
        mapper.map({"ownerId": "m"}),
    ]
    assert rows == [
        {"activity_id": "A", "response_id": "m:0", "member_id": "m", "batch_id": "B", "s": ["O"], "d": None},
        {"activity_id": "A", "response_id": "m:1", "member_id": "m", "batch_id": "B", "s": [], "d": None},
    ]


class CountingReader(io.RawIOBase):
    """A byte stream that counts how much of it was read."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = self._inner.readinto(buffer)
        self.bytes_read += n
        return n


def test_definition_read_stops_early():
    record = {"ownerId": "m", "fields": [{"id": "q", "values": ["x" * 100]}]}
    body = json.dumps(
        {
            "id": "b",
            "datasetId": "a",
            "definition": {"fields": [{"id": "q", "name": "Q"}]},
            "records": [record] * 50_000,
        }
    ).encode()
    reader = CountingReader(body)
    definition = read_definition_from_stream(reader, Batch("activity", "b", "activity 'A'"))
    assert definition == {"fields": [{"id": "q", "name": "Q"}]}
    assert len(body) > 5_000_000 and reader.bytes_read < 200_000


BATCH = Batch("activity", "b-123", "activity 'A' (a1)")
GOOD = b'{"definition": {"fields": []}, "records": [{"ownerId": "m", "fields": []}, {"ownerId": "n"}]}\n'


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_complete_and_truncated_files(tmp_path, packed):
    def write(data: bytes) -> Path:
        path = tmp_path / "export.json"
        path.write_bytes(gzip.compress(data) if packed else data)
        return path

    check_complete(write(GOOD), BATCH)  # no error
    with pytest.raises(TruncatedFileError, match=r"b-123.*ends at byte 60 before its JSON does"):
        check_complete(write(GOOD[:60]), BATCH)
    if packed:  # a gzip stream cut short is truncated too
        path = tmp_path / "export.json"
        path.write_bytes(gzip.compress(GOOD)[:-12])
        with pytest.raises(TruncatedFileError):
            check_complete(path, BATCH)


def test_malformed_file_names_batch_and_byte_offset(tmp_path):
    path = tmp_path / "export.json"
    path.write_bytes(GOOD.replace(b'{"ownerId": "n"}', b'{"ownerId": nope}'))
    records = ExportFile(path, BATCH).items("records.item")
    assert next(records)["ownerId"] == "m"
    with pytest.raises(
        ExportFileError, match=r"activity 'A' \(a1\), batch b-123 is truncated or malformed near byte"
    ):
        next(records)


# --------------------------------------------------------------------------- modelling (issue 5)


def _set_field(field_id: str, name: str, options: list[tuple[str, str]]) -> FieldDefinition:
    values = [{"id": i, "name": n} for i, n in options]
    return FieldDefinition.from_api(
        {"id": field_id, "name": name, "type": {"dataType": "set", "values": values}}
    )


def test_indicator_names_are_bounded_unique_and_deterministic():
    long_question = (
        "Which of the following very long list of brands have you ever heard of, seen or used? " * 2
    )
    options = [("o1", "Acme"), ("o2", "ACME!"), ("o3", "ご意見"), ("o4", "x" * 80), ("o5", "x" * 80 + "y")]
    fields = [_set_field("f1", long_question, options), _set_field("f2", "Comments", [("p1", "Other")])]
    for naming in ("name", "id"):
        layout = ActivityLayout(fields, column_naming=naming, set_columns="both")
        names = list(layout.schema()["properties"])
        assert len(names) == len(set(names)) == 4 + 2 + 5 + 1
        assert all(len(n.encode()) <= 63 and n.isascii() for n in names)
        again = ActivityLayout(fields, column_naming=naming, set_columns="both")
        assert again.indicator_columns == layout.indicator_columns
    layout = ActivityLayout(fields, set_columns="indicators")
    assert layout.value_column["f1"] is None and layout.indicator_columns["f1"]["o1"].endswith("__acme")
    assert re.search(r"__acme_[0-9a-f]{8}$", layout.indicator_columns["f1"]["o2"])  # a clash: id suffix


def test_column_naming_id_survives_rewording():
    before = [FieldDefinition.from_api({"id": "q-1", "name": "Why?", "type": {"dataType": "string"}})]
    after = [FieldDefinition.from_api({"id": "q-1", "name": "Why, really?", "type": {"dataType": "string"}})]
    by_name = [ActivityLayout(f).value_column["q-1"] for f in (before, after)]
    by_id = [ActivityLayout(f, column_naming="id").value_column["q-1"] for f in (before, after)]
    assert by_name == ["why", "why_really"]
    assert by_id == ["field_q_1", "field_q_1"]


def test_drift_compare_and_resolve_per_mode():
    import pytest as _pytest

    from tap_alida.errors import SchemaDriftError
    from tap_alida.modelling import drift

    old = [
        FieldDefinition.from_api({"id": "q-1", "name": "Why?", "type": {"dataType": "string"}}),
        FieldDefinition.from_api({"id": "q-2", "name": "Spend", "type": {"dataType": "double"}}),
        FieldDefinition.from_api({"id": "q-3", "name": "Gone", "type": {"dataType": "string"}}),
    ]
    new = [
        FieldDefinition.from_api({"id": "q-1", "name": "Why, really?", "type": {"dataType": "string"}}),
        FieldDefinition.from_api({"id": "q-2", "name": "Spend", "type": {"dataType": "string"}}),
        FieldDefinition.from_api({"id": "q-4", "name": "New", "type": {"dataType": "date-time"}}),
    ]
    catalog = ActivityLayout(old).schema()
    layout = ActivityLayout(new)
    found = drift.compare(catalog["properties"], layout)
    assert [c.name for c in found.added] == ["new"] and found.removed == ["gone"]
    assert found.renamed == {"why_really": "why"} and [c.name for c, _ in found.retyped] == ["spend"]

    evolve = drift.resolve("evolve", catalog, layout, "A")
    assert evolve.schema_changed
    assert list(evolve.schema["properties"])[-2:] == ["why_really", "new"]
    assert evolve.schema["properties"]["spend"]["type"] == ["string", "null"]
    assert evolve.targets == {"why_really": "why_really", "spend": "spend", "new": "new"}

    ignore = drift.resolve("ignore", catalog, layout, "A")
    assert ignore.schema == catalog and not ignore.schema_changed
    assert ignore.targets == {"why_really": "why", "spend": "spend", "new": None}
    mapper = ActivityRecordMapper(
        activity_id="A", activity_label="A", batch_id=None, layout=layout, plan=ignore
    )
    row = mapper.map(
        {"ownerId": "m", "fields": [{"id": "q-1", "values": ["x"]}, {"id": "q-2", "values": ["12.5"]}]}
    )
    assert row["why"] == "x" and row["spend"] == 12.5 and row["gone"] is None and "new" not in row

    with _pytest.raises(
        SchemaDriftError, match=r"new: new .*renamed.*why → why_really.*removed: gone.*spend"
    ):
        drift.resolve("fail", catalog, layout, "A")
    assert not drift.resolve("fail", catalog, ActivityLayout(old), "A").schema_changed


def test_answer_rows_type_every_value():
    from tap_alida.modelling.answers import AnswerMapper

    fields = [
        _set_field("s", "S", [("o1", "One")]),
        FieldDefinition.from_api({"id": "d", "name": "D", "type": {"dataType": "double"}}),
        FieldDefinition.from_api({"id": "t", "name": "T", "type": {"dataType": "date-time"}}),
    ]
    mapper = AnswerMapper("A", fields)
    record = {
        "ownerId": "m",
        "fields": [
            {"id": "s", "values": ["o1", "o9"]},
            {"id": "d", "values": [3, "n/a"]},
            {"id": "t", "values": ["2026-01-01T00:00:00+01:00"]},
            {"id": "undeclared", "values": [{"k": 1}]},
            {"id": "d", "values": []},
        ],
    }
    rows = mapper.rows(record)
    picked = [
        (
            r["field_id"],
            r["value_index"],
            r["option_id"],
            r["option_label"],
            r["value_number"],
            r["value_string"],
        )
        for r in rows
    ]
    assert picked == [
        ("s", 0, "o1", "One", None, None),
        ("s", 1, "o9", None, None, None),
        ("d", 0, None, None, 3.0, None),
        ("d", 1, None, None, None, "n/a"),
        ("t", 0, None, None, None, None),
        ("undeclared", 0, None, None, None, '{"k": 1}'),
    ]
    assert rows[4]["value_datetime"] == "2025-12-31T23:00:00Z"
    assert {r["response_id"] for r in rows} == {"m:0"} and mapper.rows({"ownerId": "m"}) == []


def test_sensitive_values_hash_and_drop():
    import hashlib

    from tap_alida.modelling.privacy import SensitiveValues

    hashed = SensitiveValues("hash", "salt")
    assert hashed.protect("a@b.c") == hashlib.sha256(b"salta@b.c").hexdigest()
    assert hashed.protect(42.0) == hashlib.sha256(b"salt42").hexdigest()
    assert hashed.protect(["x", "y"]) == [hashed.digest("x"), hashed.digest("y")]
    assert SensitiveValues("drop", None).protect("a@b.c") is None
    assert SensitiveValues("include", None).protect("a@b.c") == "a@b.c"
    assert "salt" not in repr(hashed)
