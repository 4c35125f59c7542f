"""STATE: the batch ledger and the member export's sinceDatetime (fake tap and streams)."""

from __future__ import annotations

from typing import Any

from tap_alida.state import (
    BATCH_STATE_KEY,
    BATCHES_STATE_KEY,
    STATE_EVERY_SECONDS,
    STATE_FLOOR_BYTES,
    STATE_SHARE,
    BatchLedger,
    StatePacer,
    answers_slot,
    member_since,
    recorded_batch,
)


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
    # per activity: what the key says (kind, activity) is not repeated, and is put back on reading
    assert answers.stream_state[BATCHES_STATE_KEY] == {"a1": {"id": "b1"}}
    assert recorded_batch(answers, "a1") == entry  # type: ignore[arg-type]
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
    """A bookmark is sent a minute early (values effective in its own second still arrive);
    start_date as given."""
    values = FakeStream("member_profile_values", bookmark="2026-11-04T00:00:00+00:00")
    profiles = FakeStream("member_profiles", bookmark="2026-11-09T00:00:00Z")
    assert member_since([values, profiles], None) == "2026-11-03T23:59:00Z"
    assert member_since([values], "2026-01-01T00:00:00Z") == "2026-11-03T23:59:00Z"
    assert (
        member_since([FakeStream("member_profile_values")], "2026-01-01T00:00:00Z") == "2026-01-01T00:00:00Z"
    )
    assert member_since([FakeStream("member_profile_values")], None) is None
    full_table = FakeStream("member_profiles", replication_key=None)
    assert member_since([values, full_table], "2026-01-01T00:00:00Z") is None  # full rows need a full export
    assert member_since([], None) is None


# --------------------------------------------------------------------------- the STATE pace


class Output:
    """Bytes written by message type, as ``sdk.CountingWriter`` counts them."""

    def __init__(self) -> None:
        self.bytes = {"STATE": 0, "RECORD": 0}

    def written(self, message_type: str) -> int:
        return self.bytes.get(message_type, 0)


def paced(size: int = 100) -> tuple[StatePacer, list[Any], Output, list[float]]:
    """A pacer on a hand-moved clock whose every STATE is ``size`` bytes."""
    emitted: list[Any] = []
    output = Output()
    now = [0.0]

    def emit(state: Any) -> None:
        emitted.append(state)
        output.bytes["STATE"] += size

    return StatePacer(emit, output, clock=lambda: now[0]), emitted, output, now


def test_the_first_state_goes_at_once_later_ones_at_most_every_few_seconds():
    pacer, emitted, _, now = paced()
    pacer.write({"bookmarks": {"s": {"n": 1}}})
    assert emitted == [{"bookmarks": {"s": {"n": 1}}}]
    now[0] = 1.0
    pacer.write({"bookmarks": {"s": {"n": 2}}})
    pacer.tick()
    assert len(emitted) == 1  # held back
    now[0] = STATE_EVERY_SECONDS
    pacer.tick()
    assert emitted[-1] == {"bookmarks": {"s": {"n": 2}}} and len(emitted) == 2
    pacer.tick()
    assert len(emitted) == 2  # nothing new: nothing written


def test_a_new_batch_id_goes_at_once_and_a_burst_makes_one_state():
    pacer, emitted, _, now = paced()
    pacer.write({"bookmarks": {}})
    now[0] = 0.5
    for n in range(3):
        pacer.write({"bookmarks": {"s": {"alida_batch": {"id": str(n)}}}}, urgent=True, now=False)
    assert len(emitted) == 1
    pacer.tick()
    assert len(emitted) == 2 and emitted[-1]["bookmarks"]["s"]["alida_batch"]["id"] == "2"


def test_beyond_the_floor_mid_run_state_stays_a_small_share_of_the_records():
    pacer, emitted, output, now = paced(size=STATE_FLOOR_BYTES // 2)
    pacer.write({"bookmarks": {"s": {"n": 0}}})
    pacer.write({"bookmarks": {"s": {"n": 1}}}, urgent=True)
    assert len(emitted) == 2  # the floor is used up
    pacer.write({"bookmarks": {"s": {"n": 2}}}, urgent=True)
    assert len(emitted) == 2  # over budget: held back
    output.bytes["RECORD"] = int(3 * (STATE_FLOOR_BYTES // 2) / STATE_SHARE)
    now[0] = STATE_EVERY_SECONDS
    pacer.tick()
    assert len(emitted) == 3 and emitted[-1]["bookmarks"]["s"]["n"] == 2


def test_finish_writes_now_and_what_comes_after_it_once_at_exit():
    pacer, emitted, _, _clock = paced(size=STATE_FLOOR_BYTES)
    pacer.write({"bookmarks": {"s": {"n": 0}}})
    pacer.write({"bookmarks": {"s": {"n": 1}}})
    assert len(emitted) == 1
    pacer.finish()  # over the budget too: the last STATE is always written
    assert emitted[-1]["bookmarks"]["s"]["n"] == 1
    pacer.write({"bookmarks": {"s": {"n": 2}}})
    pacer.write({"bookmarks": {"s": {"n": 3}}})
    pacer.tick()
    assert len(emitted) == 2
    pacer.flush()  # (registered with atexit)
    assert len(emitted) == 3 and emitted[-1]["bookmarks"]["s"]["n"] == 3


def test_flush_writes_what_is_held_back_and_empty_bookmarks_are_left_out():
    pacer, emitted, _, _clock = paced()
    pacer.write({"bookmarks": {"a": {"n": 0}}})
    pacer.write({"bookmarks": {"a": {"n": 1}, "survey_1": {}, "survey_2": {}}})
    pacer.flush()
    assert emitted[-1] == {"bookmarks": {"a": {"n": 1}}}
    pacer.flush()
    assert len(emitted) == 2


def test_the_message_writer_counts_bytes_by_message_type(capsysbinary):
    import singer_sdk.singerlib as singer

    from tap_alida.sdk import CountingWriter

    writer = CountingWriter()
    writer.write_message(singer.StateMessage(value={"bookmarks": {"s": {"n": 1}}}))
    writer.write_message(singer.RecordMessage(stream="s", record={"id": 1}))
    writer.write_message(singer.RecordMessage(stream="s", record={"id": 2}))
    out = capsysbinary.readouterr().out.splitlines(keepends=True)
    assert writer.written("STATE") == len(out[0]) > 0
    assert writer.written("RECORD") == len(out[1]) + len(out[2])
    assert writer.written("BATCH") == 0
