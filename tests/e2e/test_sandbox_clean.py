"""The sandbox's default community has no deliberate anomalies; `--anomalies` adds them and
changes nothing else."""

from __future__ import annotations

import re

from harness import discover, run_tap, select_all

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
    default = GeneratedCommunity(seed=3, n_members=50, n_responses=200, anomalies=True)
    clean = GeneratedCommunity(seed=3, n_members=50, n_responses=200)
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


def test_default_sandbox_reads_like_survey_data_and_a_sync_logs_no_warning(start_sandbox, tmp_path):
    """The README's sandbox (no options but the sizes): no WARNING, no `#n` suffixes, no close
    scheduled years ahead, and each INFO line names an activity once."""
    sandbox = start_sandbox("--members", "50", "--responses", "300")
    config = sandbox.config()
    run = run_tap(tmp_path, config, catalog=select_all(discover(tmp_path, config)))
    assert run.returncode == 0, run.stderr[-3000:]
    assert [line for line in run.stderr.splitlines() if "WARNING" in line] == []
    texts = [v["value_string"] for v in run.records["activity_answers"] if v["value_string"] is not None]
    assert texts and not [t for t in texts if re.search(r"#\d+$", t)]
    open_surveys = [a for a in run.records["activities"] if a["status"] == "open"]
    assert open_surveys and all(a["closed_on"] is None for a in open_surveys)
    named = [line for line in run.stderr.splitlines() if "activity '" in line]
    assert any("activity_answers:" in line for line in named)
    for line in named:
        name = re.search(r"activity ('[^']*' \([^)]*\))", line)
        assert name and line.count(name.group(1)) == 1, line
