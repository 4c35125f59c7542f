"""dbt_alida (docs/dbt.md): `dbt build` (models and their dbt tests) on the warehouses the tap loads.

- DuckDB: `meltano run tap-alida target-duckdb dbt-duckdb:build`, twice on one file (dbt's
  duckdb writes the file target-duckdb's older duckdb loads into again the next night);
- a warehouse without some streams (no member streams, no activity_answers, no activities)
  still builds: the staging models of absent tables are empty, one message each;
- a user's own dbt project installs the package by local path (`dbt deps`) and builds it;
- PostgreSQL: `meltano run tap-alida target-postgres dbt-postgres:build`, then a second,
  incremental night (deleted responses, changed members, an added question) gives the
  same question_summary, nps and responses as a fresh load of the same community.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from harness import ROOT, Sandbox, clean_env, discover, run_loader, run_meltano, run_tap, select_all
from test_warehouse import change_community

DBT_DUCKDB = ROOT / ".meltano" / "utilities" / "dbt-duckdb" / "venv" / "bin" / "dbt"
DBT_POSTGRES = ROOT / ".meltano" / "utilities" / "dbt-postgres" / "venv" / "bin" / "dbt"
PACKAGE = ROOT / "dbt_alida"
MODELS = {
    "surveys", "questions", "options", "responses", "answers", "question_summary",
    "option_summary", "nps", "members",
}  # fmt: skip


def dbt_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """dbt's own files (target/, logs/) in the test's folder, not in the checkout."""
    return {
        "DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        "DBT_LOG_PATH": str(tmp_path / "dbt-logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **extra,
    }


def dbt_result(output: str) -> dict[str, Any]:
    """dbt's closing lines: counts of models and tests run, of PASS/WARN/ERROR, and seconds."""
    done = re.findall(
        r"Done\. PASS=(\d+) WARN=(\d+) ERROR=(\d+) SKIP=(\d+)(?: NO-OP=\d+)? TOTAL=(\d+)", output
    )
    assert done, output[-3000:]
    passed, warned, errors, skipped, total = map(int, done[-1])
    finished = re.findall(r"Finished running (.*?) in .*?\(([\d.]+)s\)", output)
    assert finished, output[-3000:]
    what, seconds = finished[-1]
    kinds = {kind: int(n) for n, kind in re.findall(r"(\d+) ([a-z ]+?)s?(?:,|$)", what)}
    return {"pass": passed, "warn": warned, "error": errors, "skip": skipped, "total": total,
            "kinds": kinds, "seconds": float(seconds)}  # fmt: skip


def assert_green(output: str) -> dict[str, Any]:
    result = dbt_result(output)
    assert result["error"] == 0 and result["skip"] == 0 and result["pass"] == result["total"], output[-4000:]
    return result


def dbt(
    tmp_path: Path, *args: str, project: Path = PACKAGE, env: dict[str, str], executable: Path = DBT_DUCKDB
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(executable), *args, "--project-dir", str(project), "--profiles-dir", str(project / "profiles")],
        cwd=tmp_path,
        env=clean_env(tmp_path, **dbt_env(tmp_path, **env)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


# --------------------------------------------------------------------------- DuckDB


@pytest.fixture(scope="module")
def duck_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A DuckDB warehouse loaded and modelled by two `meltano run tap-alida target-duckdb
    dbt-duckdb:build` (the second one incremental, after the community changed)."""
    tmp_path = tmp_path_factory.mktemp("duck")
    sandbox = Sandbox("--activities", "3", "--members", "40", "--responses", "30", "--seed", "11", "--clean")
    try:
        database = tmp_path / "warehouse.duckdb"
        env = {
            "MELTANO_ENVIRONMENT": "sandbox",
            "TAP_ALIDA_API_URL": sandbox.url,
            "TARGET_DUCKDB_FILEPATH": str(database),
            "DBT_DUCKDB_PATH": str(database),
            **dbt_env(tmp_path),
        }
        runs = []
        for night in (0, 1):
            if night:
                sandbox.post("/_sandbox/members/touch", {"count": 2, "effectiveDate": "2026-11-21T00:00:00Z"})
                survey = sandbox.truth()["activities"][0]["id"]
                sandbox.post(f"/_sandbox/activities/{survey}/drift", {"kinds": ["added"]})
            done = run_meltano(tmp_path, "run", "tap-alida", "target-duckdb", "dbt-duckdb:build", env=env)
            assert done.returncode == 0, done.stderr[-4000:]
            runs.append(done.stdout + done.stderr)
        yield {"database": database, "runs": runs, "sandbox": sandbox.truth()}
    finally:
        sandbox.stop()


def test_meltano_run_builds_the_models_on_duckdb_night_after_night(duck_warehouse):
    for output in duck_warehouse["runs"]:
        result = assert_green(output)
        assert result["kinds"].get("data test", 0) >= 50, result
        assert result["kinds"].get("table model", 0) + result["kinds"].get("view model", 0) == 14, result
        print(f"dbt build on DuckDB: {result}")
    truth = duck_warehouse["sandbox"]
    with duckdb.connect(str(duck_warehouse["database"]), read_only=True) as db:
        tables = {t for (t,) in db.execute("select table_name from information_schema.tables "
                                           "where table_schema = 'analytics'").fetchall()}  # fmt: skip
        assert tables >= MODELS
        assert db.execute("select count(*) from analytics.members").fetchone() == (40,)
        assert db.execute("select count(*) from analytics.responses").fetchone() == (90,)
        surveys = db.execute("select stream_name, responses from analytics.surveys order by 1").fetchall()
        assert len(surveys) == 3 and all(n == 30 for _, n in surveys), surveys
        # The question added on night 1 is there, its options in survey order.
        added = db.execute(
            "select option_label from analytics.option_summary "
            "where question = 'Which of these features do you use?' order by option_position"
        ).fetchall()
        assert [label for (label,) in added] == ["Dashboards", "Alerts", "Exports", "Mobile app"]
        channel = db.execute(
            "select option_label from analytics.options o join analytics.questions q using (question_key) "
            "where q.question = 'Preferred contact channel' and q.activity_id = ? order by option_position",
            [truth["activities"][0]["id"]],
        ).fetchall()
        assert [label for (label,) in channel] == ["Email", "Phone", "SMS", "Post", "Fax"]  # not alphabetical
        nps = db.execute("select count(*), min(respondents) from analytics.nps").fetchone()
        assert nps[0] == 3 and nps[1] > 20, nps


def test_models_build_without_some_streams(duck_warehouse, tmp_path):
    """Only the survey streams and activity_fields loaded: every model builds, those without
    their source are empty, and each absent table is named once."""
    database = tmp_path / "warehouse.duckdb"  # same stem: DuckDB names the catalog after it
    shutil.copy(duck_warehouse["database"], database)
    absent = ("member_profiles", "member_profile_values", "activity_answers", "activities")
    with duckdb.connect(str(database)) as db:
        for table in absent:
            db.execute(f"drop table alida.{table}")
        db.execute("drop schema analytics cascade")
        wide = db.execute("select count(*) from alida.customer_satisfaction").fetchone()[0]
    done = dbt(tmp_path, "build", "--target", "duckdb", env={"DBT_DUCKDB_PATH": str(database)})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert_green(output)
    for table in absent:
        assert (
            len(re.findall(rf'alida: \S*"{table}" does not exist \(stream {table} not selected', output)) == 1
        ), output[-4000:]
    with duckdb.connect(str(database), read_only=True) as db:
        assert db.execute("select count(*) from analytics.members").fetchone() == (0,)
        assert db.execute("select count(*) from analytics.answers").fetchone() == (0,)
        # responses still come from the survey tables; no answers: 0 answered questions
        got = db.execute(
            "select count(*), max(answered_questions) from analytics.responses "
            "where stream_name = 'customer_satisfaction'"
        ).fetchone()
        assert got == (wide, 0)
        assert db.execute("select count(*) from analytics.questions").fetchone()[0] > 30


def test_package_installs_into_a_users_dbt_project(duck_warehouse, tmp_path):
    """A fresh dbt project with `packages.yml` naming dbt_alida by local path: `dbt deps`,
    then `dbt build` passes (the package's models and tests, and the user's own model)."""
    database = tmp_path / "warehouse.duckdb"
    shutil.copy(duck_warehouse["database"], database)
    project = tmp_path / "my_project"
    (project / "models").mkdir(parents=True)
    (project / "profiles").mkdir()
    (project / "dbt_project.yml").write_text(
        "name: my_project\nversion: '1.0'\nconfig-version: 2\nprofile: my_profile\n"
        "vars:\n  alida_schema: alida\n"
        "models:\n  alida:\n    +schema: alida_models\n"
    )
    (project / "packages.yml").write_text(f"packages:\n  - local: {PACKAGE}\n")
    (project / "profiles" / "profiles.yml").write_text(
        f"my_profile:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: {database}\n"
        "      schema: reporting\n      threads: 1\n"
    )
    (project / "models" / "detractors_by_survey.sql").write_text(
        "select stream_name, detractors from {{ ref('nps') }}\n"
    )
    deps = dbt(tmp_path, "deps", project=project, env={})
    assert deps.returncode == 0, deps.stdout[-3000:] + deps.stderr[-3000:]
    built = dbt(tmp_path, "build", project=project, env={})
    output = built.stdout + built.stderr
    assert built.returncode == 0, output[-4000:]
    result = assert_green(output)
    assert result["kinds"].get("table model", 0) == 9, result  # the package's marts
    assert result["kinds"].get("view model", 0) == 6, result  # its staging views and the user's model
    with duckdb.connect(str(database), read_only=True) as db:
        assert db.execute("select count(*) from reporting.detractors_by_survey").fetchone() == (3,)
        assert db.execute("select count(*) from reporting_alida_models.members").fetchone() == (40,)


# --------------------------------------------------------------------------- PostgreSQL


def summary_rows(postgres: Any, schema: str, model: str, columns: str) -> Counter:
    return Counter(
        row for (row,) in postgres.sql(f"select json_build_array({columns})::text from {schema}.{model}")
    )


COMPARED = {
    "question_summary": "question_key, stream_name, position, question, data_type, responses, respondents, "
    "round(answered_share::numeric, 9), answer_values, number_count, round(number_mean::numeric, 6), "
    "number_median, number_min, number_max, option_distribution",
    "option_summary": "option_key, option_label, option_answers, option_respondents, question_respondents",
    "nps": "question_key, respondents, promoters, passives, detractors, round(nps::numeric, 6)",
    "responses": "response_key, member_id, answered_questions, questions",
    "members": "member_id, segment, email, age",
}


def test_postgres_dbt_build_and_an_incremental_night_equals_a_fresh_load(start_sandbox, postgres, tmp_path):
    """target-postgres soft-deletes (_sdc_deleted_at): after night 1 (5 responses deleted,
    members changed, a question added) and an incremental run, the models equal those of a
    fresh load of the same community."""
    sandbox = start_sandbox("--activities", "2", "--members", "30", "--responses", "20", "--seed", "7")

    def run(folder: Path, schema: str, *args: str) -> dict[str, Any]:
        folder.mkdir(exist_ok=True)
        env = {
            "MELTANO_ENVIRONMENT": "sandbox",
            "TAP_ALIDA_API_URL": sandbox.url,
            "TAP_ALIDA_CLOSED_ACTIVITIES": "export",  # night 1's deletions arrive at once
            "TARGET_POSTGRES_PORT": str(postgres.port),
            "TARGET_POSTGRES_PASSWORD": "unused-trust-auth",
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
            "DBT_POSTGRES_PORT": str(postgres.port),
            "DBT_POSTGRES_PASSWORD": "unused-trust-auth",
            "DBT_POSTGRES_SOURCE_SCHEMA": schema,
            "DBT_POSTGRES_SCHEMA": f"{schema}_models",
            **dbt_env(folder),
        }
        started = time.monotonic()
        done = run_meltano(
            folder, "run", *args, "tap-alida", "target-postgres", "dbt-postgres:build", env=env
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        result = assert_green(output)
        seconds = time.monotonic() - started
        print(f"meltano run … dbt-postgres:build into {schema}: {seconds:.1f} s; dbt: {result}")
        return result

    first = run(tmp_path, "wh_inc")
    assert first["kinds"].get("data test", 0) >= 50, first
    changed = change_community(sandbox, 1)
    survey = next(iter(changed["deleted"]))
    sandbox.post(f"/_sandbox/activities/{survey}/drift", {"kinds": ["added"]})
    run(tmp_path, "wh_inc")
    run(tmp_path / "fresh", "wh_fresh", "--full-refresh")

    deleted = postgres.sql(
        "select count(*) from wh_inc.customer_satisfaction where _sdc_deleted_at is not null"
    )
    assert deleted == [["5"]]  # still in the loaded table, marked deleted; left out by the models
    surveys = postgres.sql("select activity_id, stream_name, responses from wh_inc_models.surveys")
    assert [survey, "customer_satisfaction", "15"] in surveys, (survey, surveys)
    for model, columns in COMPARED.items():
        incremental = summary_rows(postgres, "wh_inc_models", model, columns)
        fresh = summary_rows(postgres, "wh_fresh_models", model, columns)
        assert incremental == fresh, (model, list(incremental - fresh)[:2], list(fresh - incremental)[:2])
        assert fresh, model
    added = postgres.sql(
        "select respondents from wh_inc_models.question_summary "
        "where question = 'Which of these features do you use?'"
    )
    assert len(added) == 1 and int(added[0][0]) > 10


def test_dbt_build_on_a_batch_load_of_some_streams_into_postgres(start_sandbox, postgres, tmp_path):
    """BATCH messages (no RECORD) of the survey streams and activity_fields only (no
    activity_answers, no activities, no member streams), loaded by target-postgres: dbt build
    passes, responses equal the survey tables' rows, the models without a source are empty."""
    sandbox = start_sandbox("--activities", "2", "--members", "10", "--responses", "15", "--seed", "5")
    batches = tmp_path / "batches"
    batches.mkdir()
    catalog = discover(tmp_path, sandbox.config())
    surveys = {s["tap_stream_id"] for s in catalog["streams"]} - {
        "activity_answers", "activities", "member_profiles", "member_profile_values", "activity_fields",
    }  # fmt: skip
    assert len(surveys) == 2
    catalog = select_all(catalog, only={*surveys, "activity_fields"})
    config = sandbox.config(
        batch_config={
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": f"file://{batches}", "prefix": "alida-"},
        }
    )
    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not run.records and any(m["type"] == "BATCH" for m in run.messages)
    messages = "".join(json.dumps(m) + "\n" for m in run.messages)
    run_loader(tmp_path, "target-postgres", postgres.target_config("wh_batch"), messages)
    env = {
        "DBT_POSTGRES_PORT": str(postgres.port),
        "DBT_POSTGRES_PASSWORD": "unused-trust-auth",
        "DBT_POSTGRES_SOURCE_SCHEMA": "wh_batch",
        "DBT_POSTGRES_SCHEMA": "wh_batch_models",
    }
    done = dbt(tmp_path, "build", "--target", "postgres", env=env, executable=DBT_POSTGRES)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert_green(output)
    for table in ("activity_answers", "activities", "member_profiles", "member_profile_values"):
        assert len(re.findall(rf'alida: \S*"{table}" does not exist', output)) == 1, output[-4000:]
    assert postgres.sql("select count(*) from wh_batch_models.responses") == [["30"]]
    assert postgres.sql("select count(*) from wh_batch_models.members") == [["0"]]
    assert postgres.sql("select count(*) from wh_batch_models.surveys") == [["2"]]
    positions = postgres.sql(
        "select string_agg(option_label, ',' order by option_position) from wh_batch_models.options o "
        "join wh_batch_models.questions q using (question_key) "
        "where q.question = 'Preferred contact channel' group by q.activity_id"
    )
    assert positions == [["Email,Phone,SMS,Post,Fax"]] * 2
