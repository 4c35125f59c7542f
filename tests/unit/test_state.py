"""STATE: the batch ledger and the member export's sinceDatetime (fake tap and streams)."""

from __future__ import annotations

from typing import Any

from tap_alida.state import BATCH_STATE_KEY, BATCHES_STATE_KEY, BatchLedger, answers_slot, member_since


class FakeStream:
    def __init__(self, name: str, replication_key: str | None = "last_sync_date", bookmark: Any = None):
        self.name = name
        self.replication_key = replication_key
        self.stream_state: dict[str, Any] = {}
        if bookmark:
            self.stream_state["replication_key_value"] = bookmark


class FakeWriter:
    def __init__(self) -> None:
        self.written: list[str] = []

    def write_state(self, state: dict[str, Any]) -> None:
        self.written.append(repr(state))


class FakeTap:
    def __init__(self, *streams: FakeStream) -> None:
        self.streams = {s.name: s for s in streams}
        self.state_writer = FakeWriter()

    @property
    def state(self) -> dict[str, Any]:
        return {"bookmarks": {name: s.stream_state for name, s in self.streams.items()}}


def test_the_ledger_records_and_forgets_per_slot_and_writes_state_each_time():
    survey, answers = FakeStream("survey"), FakeStream("activity_answers")
    tap = FakeTap(survey, answers)
    ledger = BatchLedger(tap)  # type: ignore[arg-type]
    entry = {"id": "b1", "kind": "activity", "activity_id": "a1"}
    ledger.record(("survey", answers_slot("a1")), entry)
    assert survey.stream_state[BATCH_STATE_KEY] == entry
    assert answers.stream_state[BATCHES_STATE_KEY] == {"a1": entry}
    assert len(tap.state_writer.written) == 1
    ledger.forget("survey")
    assert BATCH_STATE_KEY not in survey.stream_state
    ledger.forget("survey")  # nothing left: no second STATE message
    assert len(tap.state_writer.written) == 2
    ledger.forget_everywhere("b1")
    assert BATCHES_STATE_KEY not in answers.stream_state


def test_forget_everywhere_drops_a_bad_batch_from_every_slot_only():
    survey, answers = FakeStream("survey"), FakeStream("activity_answers")
    ledger = BatchLedger(FakeTap(survey, answers))  # type: ignore[arg-type]
    ledger.record(("survey", answers_slot("a1")), {"id": "bad"})
    ledger.record((answers_slot("a2"),), {"id": "good"})
    ledger.forget_everywhere("bad")
    assert BATCH_STATE_KEY not in survey.stream_state
    assert answers.stream_state[BATCHES_STATE_KEY] == {"a2": {"id": "good"}}


def test_member_since_is_the_older_bookmark_or_a_full_export():
    values = FakeStream("member_profile_values", bookmark="2026-11-04T00:00:00+00:00")
    profiles = FakeStream("member_profiles", bookmark="2026-11-09T00:00:00Z")
    assert member_since([values, profiles], None) == "2026-11-04T00:00:00Z"
    assert member_since([values], "2026-01-01T00:00:00Z") == "2026-11-04T00:00:00Z"
    assert (
        member_since([FakeStream("member_profile_values")], "2026-01-01T00:00:00Z") == "2026-01-01T00:00:00Z"
    )
    assert member_since([FakeStream("member_profile_values")], None) is None
    full_table = FakeStream("member_profiles", replication_key=None)
    assert member_since([values, full_table], "2026-01-01T00:00:00Z") is None  # full rows need a full export
    assert member_since([], None) is None
