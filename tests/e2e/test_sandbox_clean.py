"""`tap-alida-sandbox --clean`: no deliberate anomalies, and nothing else changes."""

from __future__ import annotations

from alida_sandbox.generated import GeneratedCommunity


def multi_valued(community: GeneratedCommunity) -> tuple[int, int]:
    """(single-value string/double answers with several values, all answers) over every survey."""
    several = answers = 0
    for activity in community.activities:
        if activity["activityType"] != "Survey":
            continue
        fields = community.definition(activity["id"])
        types = {f["id"]: f["type"]["dataType"] for f in fields}
        for record in community.iter_records(activity["id"], fields):
            for value in record["fields"]:
                answers += 1
                several += types[value["id"]] in ("string", "double") and len(value["values"]) > 1
    return several, answers


def test_clean_community_has_no_second_values_and_the_same_answers_otherwise():
    default = GeneratedCommunity(seed=3, n_members=50, n_responses=200)
    clean = GeneratedCommunity(seed=3, n_members=50, n_responses=200, anomalies=False)
    several, answers = multi_valued(default)
    assert several > 10  # the deliberate 2 %
    assert multi_valued(clean) == (0, answers)
    # Same respondents and first values: only the extra values are gone.
    activity = next(a["id"] for a in clean.activities if a["activityType"] == "Survey")
    fields = clean.definition(activity)
    pairs = zip(default.iter_records(activity, fields), clean.iter_records(activity, fields), strict=True)
    for a, b in pairs:
        assert a["ownerId"] == b["ownerId"]
        firsts = [(v["id"], v["values"][:1]) for v in b["fields"]]
        assert [(v["id"], v["values"][:1]) for v in a["fields"]] == firsts
