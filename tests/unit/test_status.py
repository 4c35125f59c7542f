"""Unit tests (no sockets) of status words and error text (tap_alida.export.status)."""

from __future__ import annotations

import pytest

from tap_alida.export.status import BatchState, classify, error_text, normalise, status_word


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("pending", BatchState.PENDING),
        ("Pending", BatchState.PENDING),
        (" QUEUED ", BatchState.PENDING),
        ("Not_Started", BatchState.PENDING),
        (None, BatchState.PENDING),
        ("", BatchState.PENDING),
        ("running", BatchState.RUNNING),
        ("In Progress", BatchState.RUNNING),
        ("in_progress", BatchState.RUNNING),
        ("in-progress", BatchState.RUNNING),
        ("InProgress", BatchState.RUNNING),
        ("Processing", BatchState.RUNNING),
        ("Succeeded", BatchState.SUCCEEDED),
        ("SUCCESS", BatchState.SUCCEEDED),
        ("Completed", BatchState.SUCCEEDED),
        ("done", BatchState.SUCCEEDED),
        ("Failed", BatchState.FAILED),
        ("error", BatchState.FAILED),
        ("Errored", BatchState.FAILED),
        ("Cancelled", BatchState.CANCELLED),
        ("canceled", BatchState.CANCELLED),
        ("Aborted", BatchState.CANCELLED),
        ("expired", BatchState.CANCELLED),
        ("Deleted", BatchState.CANCELLED),
        ("Exporting", BatchState.UNKNOWN),
        ("succeeded partially", BatchState.UNKNOWN),
    ],
)
def test_status_words_map_case_and_separator_insensitively(word, state):
    assert classify(word) is state


def test_waiting_states_and_normalise():
    waiting = [s for s in BatchState if s.waiting]
    assert waiting == [BatchState.PENDING, BatchState.RUNNING, BatchState.UNKNOWN]
    assert normalise(" In_Progress - now ") == "inprogressnow"


def test_status_word_reads_the_raw_word_under_any_key_case():
    assert status_word({"status": " Succeeded "}) == "Succeeded"
    assert status_word({"Status": "Running"}) == "Running"
    assert status_word({"id": "x"}) == ""


@pytest.mark.parametrize(
    ("status", "text"),
    [
        ({"status": "failed", "errorMessage": "timed out"}, "timed out"),
        ({"status": "Failed", "errormessage": "lower-case key"}, "lower-case key"),
        ({"status": "failed", "error": "plain error"}, "plain error"),
        ({"status": "failed", "error": {"message": "nested", "code": 7}}, "nested"),
        ({"status": "failed", "message": "message text"}, "message text"),
        ({"status": "failed", "errorMessage": None, "errormessage": "second key wins"}, "second key wins"),
        # errorMessage beats message; a message object with only an artifact is no text
        ({"errorMessage": "first", "message": "second"}, "first"),
        ({"status": "failed", "message": {"artifact": "file-1"}, "errorMessage": "  "}, None),
        ({"status": "failed", "errorMessage": None, "message": None}, None),
        ({"status": "failed", "error": {"code": 7}}, None),
    ],
)
def test_error_text(status, text):
    assert error_text(status) == text
