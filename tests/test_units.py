"""Unit tests of the pure parts: naming, date-times, value conversion, definition reads."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from tap_alida.errors import ExportFileError, TruncatedFileError
from tap_alida.export import Batch
from tap_alida.export_file import ExportFile, check_complete, read_definition_from_stream
from tap_alida.naming import assign_names, snake_case
from tap_alida.schema import (
    ActivityRecordMapper,
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
    mapper = ActivityRecordMapper(activity_id="A", activity_label="activity 'A'", batch_id="B", fields=fields)
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
