"""Discovery against the sandbox: stream names, schemas from field definitions."""

from __future__ import annotations

from harness import FIXED_STREAM_KEYS, discover, run_tap, stream_schema

FEEDBACK = "product_feedback_q4"


def test_streams_are_surveys_plus_fixed_streams(fixture_sandbox, tmp_path):
    catalog = discover(tmp_path, fixture_sandbox.config())
    names = sorted(s["tap_stream_id"] for s in catalog["streams"])
    # The forum activity is not a survey and gets no stream.
    assert names == sorted([FEEDBACK, "quick_poll", *FIXED_STREAM_KEYS])
    feedback = next(s for s in catalog["streams"] if s["tap_stream_id"] == FEEDBACK)
    assert feedback["key_properties"] == ["activity_id", "response_id"]


def test_schema_maps_all_six_data_types(fixture_sandbox, tmp_path):
    props = stream_schema(discover(tmp_path, fixture_sandbox.config()), FEEDBACK)["properties"]
    assert props["what_is_your_gender"]["type"] == ["array", "null"]  # set
    assert props["what_is_your_gender"]["items"] == {"type": "string"}
    assert props["how_likely_are_you_to_recommend_us"]["type"] == ["number", "null"]  # double
    assert props["when_did_you_last_buy"] == {
        "type": ["string", "null"],
        "format": "date-time",
        "description": "When did you last buy? (Alida field q-when)",
    }
    assert props["preferred_contact_channel"]["type"] == ["string", "null"]  # enum → label
    assert props["who_referred_you"]["type"] == ["string", "null"]  # identifier
    assert props["why"]["type"] == ["string", "null"]  # string
    for fixed in ("activity_id", "response_id", "member_id", "batch_id"):
        assert fixed in props


def test_unknown_type_becomes_string_with_a_warning(fixture_sandbox, tmp_path):
    run = run_tap(tmp_path, fixture_sandbox.config(), "--discover")
    assert run.returncode == 0, run.stderr
    props = stream_schema(run.messages[0], FEEDBACK)["properties"]
    assert props["where_are_you"]["type"] == ["string", "null"]
    warning = [line for line in run.stderr.splitlines() if "geo-point" in line]
    assert len(warning) == 1
    assert "Product Feedback" in warning[0] and "q-geo" in warning[0] and "WARNING" in warning[0]


def test_column_names_are_unique_snake_case_and_short(fixture_sandbox, tmp_path):
    props = stream_schema(discover(tmp_path, fixture_sandbox.config()), FEEDBACK)["properties"]
    names = list(props)
    assert len(names) == len(set(names)) == 4 + 12
    assert all(len(n.encode()) <= 63 and n == n.lower() for n in names)
    # Duplicate question names: the first keeps the name, the second gets an id suffix.
    comments = [n for n in names if n.startswith("comments")]
    assert comments[0] == "comments" and len(comments) == 2 and comments[1].startswith("comments_")
    # A question called "Member ID" does not clobber the fixed member_id column.
    assert props["member_id"]["description"].startswith("The record's ownerId")
    assert any(n.startswith("member_id_") for n in names)
    # A 120-character French question is folded to ASCII and cut to 63 bytes.
    long = [n for n in names if n.startswith("dans_l_ensemble_a_quel_point_etes_vous")]
    assert len(long) == 1 and len(long[0]) <= 63


def test_activity_name_clash_gets_a_deterministic_suffix(start_sandbox, tmp_path):
    # The generated community names two surveys "Customer Satisfaction".
    sandbox = start_sandbox("--activities", "3", "--responses", "2")
    names_1 = sorted(s["tap_stream_id"] for s in discover(tmp_path, sandbox.config())["streams"])
    names_2 = sorted(s["tap_stream_id"] for s in discover(tmp_path, sandbox.config())["streams"])
    assert names_1 == names_2
    clashing = [n for n in names_1 if n.startswith("customer_satisfaction")]
    assert len(clashing) == 2 and "customer_satisfaction" in clashing


def test_activities_are_paged_through(start_sandbox, tmp_path):
    sandbox = start_sandbox("--activities", "5", "--responses", "1", "--page-max", "2")
    catalog = discover(tmp_path, sandbox.config())
    activity_streams = [s for s in catalog["streams"] if s["tap_stream_id"] not in FIXED_STREAM_KEYS]
    assert len(activity_streams) == 5
    pages = [r for r in sandbox.requests() if r["path"].endswith("/activities")]
    assert len(pages) == 3  # 6 activities (5 surveys + 1 forum), 2 per page


def test_member_profiles_schema_from_member_variables(fixture_sandbox, tmp_path):
    props = stream_schema(discover(tmp_path, fixture_sandbox.config()), "member_profiles")["properties"]
    assert props["age"]["type"] == ["number", "null"]
    assert props["date_joined"]["format"] == "date-time"
    assert props["interests"]["type"] == ["array", "null"]
    assert props["segment"]["type"] == ["string", "null"]
    assert "Sensitive" in props["email"]["description"]
    assert "legacy_score" not in props  # not in /membervariables
