"""The tap's own catalog keys: written into a discovery catalog, read back from a given one."""

from __future__ import annotations

import copy
import json
from typing import Any

from tap_alida.catalog_keys import ACTIVITY_ID_KEY, DISCOVERY_BATCH_KEY, CatalogKeys, add_keys
from tap_alida.modelling.naming import assign_names

BATCH = {"id": "b-1", "kind": "activity", "created_at": 1795847267.6, "activity_id": "A-1"}


def catalog() -> dict[str, Any]:
    def entry(name: str) -> dict[str, Any]:
        return {
            "tap_stream_id": name,
            "stream": name,
            "schema": {"type": "object", "properties": {}},
            "metadata": [
                {"breadcrumb": ["properties", "x"], "metadata": {"inclusion": "available"}},
                {"breadcrumb": [], "metadata": {"inclusion": "available", "selected": True}},
            ],
        }

    return {"streams": [entry("survey_one"), entry("survey_two"), entry("activity_answers")]}


def test_keys_written_at_discovery_are_read_back_at_sync():
    written = catalog()
    add_keys(written, {"survey_one": "A-1", "survey_two": "A-2"}, {"A-1": BATCH})
    root = {s["tap_stream_id"]: s["metadata"][1]["metadata"] for s in written["streams"]}
    assert root["survey_one"] == {
        "inclusion": "available",
        "selected": True,
        ACTIVITY_ID_KEY: "A-1",
        DISCOVERY_BATCH_KEY: BATCH,
    }
    assert root["survey_two"] == {"inclusion": "available", "selected": True, ACTIVITY_ID_KEY: "A-2"}
    assert ACTIVITY_ID_KEY not in root["activity_answers"]

    keys = CatalogKeys.read(json.loads(json.dumps(written)))  # as a file carries it
    assert keys.stream_names == {"a-1": "survey_one", "a-2": "survey_two"}
    assert keys.batch("A-1") == BATCH
    assert keys.batch("a-1") == BATCH  # ids compared ignoring case
    assert keys.batch("A-2") is None


def test_a_stream_without_top_level_metadata_gets_one():
    written = catalog()
    written["streams"][0]["metadata"] = []
    add_keys(written, {"survey_one": "A-1"}, {})
    assert written["streams"][0]["metadata"] == [{"breadcrumb": [], "metadata": {ACTIVITY_ID_KEY: "A-1"}}]


def test_malformed_catalogs_give_no_keys_and_no_error():
    for given in (None, [], "x", {"streams": "x"}, {"streams": [1, None, {"metadata": "x"}]}):
        keys = CatalogKeys.read(given)
        assert (keys.stream_names, keys.batches) == ({}, {})
    bad = catalog()
    add_keys(bad, {"survey_one": "A-1", "survey_two": "A-2"}, {"A-1": BATCH})
    bad["streams"][0]["metadata"][1]["metadata"][DISCOVERY_BATCH_KEY] = "not an object"
    bad["streams"][1]["metadata"][1]["metadata"][ACTIVITY_ID_KEY] = 7  # not a string
    keys = CatalogKeys.read(bad)
    assert keys.stream_names == {"a-1": "survey_one"}
    assert keys.batches == {}


def test_one_stream_name_claimed_by_two_ids_keeps_the_first():
    edited = catalog()
    add_keys(edited, {"survey_one": "A-1"}, {})
    twin = copy.deepcopy(edited["streams"][0])
    twin["metadata"][1]["metadata"][ACTIVITY_ID_KEY] = "A-9"
    edited["streams"].append(twin)
    assert CatalogKeys.read(edited).stream_names == {"a-1": "survey_one"}


def test_one_activity_claimed_by_two_streams_keeps_the_first_entry_whole(caplog):
    edited = catalog()
    add_keys(edited, {"survey_one": "A-1", "survey_two": "A-1"}, {"A-1": BATCH})
    edited["streams"][1]["metadata"][1]["metadata"][DISCOVERY_BATCH_KEY] = {**BATCH, "id": "b-2"}
    keys = CatalogKeys.read(edited)
    assert keys.stream_names == {"a-1": "survey_one"}
    assert keys.batch("A-1") == BATCH  # the first entry's batch, with the first entry's name
    assert "gives activity A-1 to more than one stream" in caplog.text


def test_pinned_names_win_and_others_avoid_them():
    items = [("A-1", "Renamed survey"), ("A-2", "Old name"), ("A-3", "Brand new")]
    names = assign_names(items, fallback_prefix="activity", pinned={"A-1": "old_name"})
    # A-1 keeps the catalog's name although it was renamed; A-2 now carries the
    # old text but must not take A-1's stream, so it gets a suffix from its id.
    assert names == {"A-1": "old_name", "A-2": "old_name_38e8b6b8", "A-3": "brand_new"}


def test_a_name_the_catalog_gave_a_vanished_activity_is_not_handed_to_another():
    catalog_names = {"a-gone": "old_name"}  # the catalog's stream for an activity no longer listed
    names = assign_names(
        [("A-2", "Old name")], fallback_prefix="activity", reserved=catalog_names.values(), pinned={}
    )
    assert names == {"A-2": "old_name_38e8b6b8"}
