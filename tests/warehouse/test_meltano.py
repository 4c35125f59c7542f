"""`meltano run tap-alida <target>` end to end, row counts equal to the sandbox's truth.

Needs the project's Meltano plugins installed (`meltano install`), which the
README's test command does first.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest
from harness import FIXED_STREAM_KEYS, discover, run_loader, run_meltano, run_tap, select_all

from tap_alida.state import streams_of_activities

FIXED = set(FIXED_STREAM_KEYS)


def meltano(
    tmp_path: Path, sandbox, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    (tmp_path / "jsonl").mkdir(exist_ok=True)
    sandbox_env = {
        "MELTANO_ENVIRONMENT": "sandbox",
        "TAP_ALIDA_API_URL": sandbox.url,
        "TARGET_JSONL_DESTINATION_PATH": str(tmp_path / "jsonl"),
        "TARGET_DUCKDB_FILEPATH": str(tmp_path / "warehouse.duckdb"),
    }
    return run_meltano(tmp_path, *args, env={**sandbox_env, **(env or {})})


def expected_counts(sandbox) -> dict[str, int]:
    truth = sandbox.truth()
    return {
        "activity_fields": sum(a["fields"] for a in truth["activities"] if "fields" in a),
        "activity_answers": sum(a["values"] for a in truth["activities"] if "values" in a),
        "member_profiles": truth["members"]["members"],
        "member_profile_values": truth["members"]["member_variables"],
        "activities": len(truth["activities"]),
        "activity_responses": sum(a["records"] for a in truth["activities"] if "records" in a),
    }


@pytest.fixture
def sandbox(start_sandbox):
    return start_sandbox("--activities", "3", "--members", "40", "--responses", "30")


def test_meltano_run_into_jsonl(sandbox, tmp_path):
    done = meltano(tmp_path, sandbox, "run", "tap-alida", "target-jsonl")
    assert done.returncode == 0, done.stderr[-3000:]
    counts = {p.stem: len(p.read_text().splitlines()) for p in (tmp_path / "jsonl").glob("*.jsonl")}
    expected = expected_counts(sandbox)
    assert {k: counts[k] for k in FIXED} == {k: expected[k] for k in FIXED}
    activity_tables = set(counts) - FIXED
    assert len(activity_tables) == 3
    assert sum(counts[t] for t in activity_tables) == expected["activity_responses"] == 90

    def activity_posts(after: int) -> list[str]:
        return [
            r["path"]
            for r in sandbox.requests()
            if r["seq"] > after and r["method"] == "POST" and r["path"].endswith("/responses/batch")
        ]

    # The first night has no STATE: its sync exports again what its discovery exported
    # (nothing shows discovery's batches are not older than rows loaded before).
    assert len(activity_posts(-1)) == 6 and len(set(activity_posts(-1))) == 3
    # The next night, with the STATE Meltano kept: one export per open survey for the whole
    # `meltano run`, the sync re-uses the batches its discovery made (Meltano passes the
    # tap's catalog keys through); the closed survey is skipped (its definition is cached).
    seq = max(r["seq"] for r in sandbox.requests())
    again = meltano(tmp_path, sandbox, "run", "tap-alida", "target-jsonl")
    assert again.returncode == 0, again.stderr[-3000:]
    opened = [
        a for a in sandbox.truth()["activities"] if a["activityType"] == "Survey" and a["status"] == "open"
    ]
    assert len(opened) == 2
    assert sorted(activity_posts(seq)) == sorted(
        f"/v2/applications/sandbox/data/activities/{a['id']}/responses/batch" for a in opened
    )
    assert again.stderr.count("from discovery (status succeeded)") == 2


def test_meltano_run_into_duckdb_twice(sandbox, tmp_path):
    done = meltano(tmp_path, sandbox, "run", "tap-alida", "target-duckdb")
    assert done.returncode == 0, done.stderr[-3000:]
    expected = expected_counts(sandbox)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        tables = [
            t
            for (t,) in db.execute(
                "select table_name from information_schema.tables where table_schema = 'alida'"
            ).fetchall()
        ]
        counts = {t: db.execute(f'select count(*) from alida."{t}"').fetchone()[0] for t in tables}
        types = dict(
            db.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'alida' and table_name = 'member_profiles'"
            ).fetchall()
        )
    assert {k: counts[k] for k in FIXED} == {k: expected[k] for k in FIXED}
    assert sum(v for k, v in counts.items() if k not in FIXED) == expected["activity_responses"]
    assert types["age"] == "DOUBLE" and types["date_joined"].startswith("TIMESTAMP")

    # Second run: state from Meltano's system database; 2 members changed.
    state = json.loads(
        meltano(tmp_path, sandbox, "state", "get", "sandbox:tap-alida-to-target-duckdb").stdout
    )
    assert state["singer_state"]["bookmarks"]["member_profile_values"]["replication_key_value"]
    sandbox.post("/_sandbox/members/touch", {"count": 2, "effectiveDate": "2026-11-21T00:00:00Z"})
    done = meltano(tmp_path, sandbox, "run", "tap-alida", "target-duckdb")
    assert done.returncode == 0, done.stderr[-3000:]
    member_posts = [
        r["body"]
        for r in sandbox.requests()
        if r["method"] == "POST" and r["path"].endswith("/members/profiles/batch")
    ]
    assert member_posts[-1] is None  # member_profiles selected: a full export (no partial rows)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        updated = db.execute(
            "select count(*) from alida.member_profile_values where effective_date = '2026-11-21 00:00:00'"
        ).fetchone()[0]
        total = db.execute("select count(*) from alida.member_profile_values").fetchone()[0]
    assert updated == 2
    assert total == expected["member_profile_values"]  # upserted on (member_id, variable_id)


def test_meltano_run_into_postgres_twice(sandbox, postgres, tmp_path):
    """MeltanoLabs target-postgres on a real server: tables, column types, counts, increments."""
    pg_env = {
        "TARGET_POSTGRES_PORT": str(postgres.port),
        "TARGET_POSTGRES_PASSWORD": "unused-trust-auth",
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": "alida_pg",
    }
    done = meltano(tmp_path, sandbox, "run", "tap-alida", "target-postgres", env=pg_env)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = expected_counts(sandbox)
    tables = {
        t
        for (t,) in postgres.sql(
            "select table_name from information_schema.tables where table_schema = 'alida_pg'"
        )
    }
    activity_tables = tables - FIXED
    assert tables >= FIXED and len(activity_tables) == 3

    def counts() -> dict[str, int]:
        return {
            t: int(postgres.sql(f'select count(*) from alida_pg."{t}" where _sdc_deleted_at is null')[0][0])
            for t in tables
        }

    first = counts()
    assert {k: first[k] for k in FIXED} == {k: expected[k] for k in FIXED}
    assert sum(first[t] for t in activity_tables) == expected["activity_responses"] == 90
    types = {
        (table, column): data_type
        for table, column, data_type in postgres.sql(
            "select table_name, column_name, data_type from information_schema.columns "
            "where table_schema = 'alida_pg'"
        )
    }
    survey = sorted(activity_tables)[0]
    assert types["member_profiles", "age"] == "numeric"
    assert types["member_profiles", "date_joined"].startswith("timestamp")
    assert types[survey, "how_likely_are_you_to_recommend_us"] == "numeric"
    assert types[survey, "when_did_you_last_buy_from_us"].startswith("timestamp")
    assert types[survey, "what_is_your_gender"] == "ARRAY"
    assert types[survey, "why_did_you_give_that_score"] == "text"
    assert types["activity_fields", "position"] == "bigint"
    assert types["member_profile_values", "is_sensitive"] == "boolean"

    # Second run: Meltano's state; 2 members changed → a full member export again.
    sandbox.post("/_sandbox/members/touch", {"count": 2, "effectiveDate": "2026-11-21T00:00:00Z"})
    seq = max(r["seq"] for r in sandbox.requests())
    done = meltano(tmp_path, sandbox, "run", "tap-alida", "target-postgres", env=pg_env)
    assert done.returncode == 0, done.stderr[-3000:]
    posts = [
        r for r in sandbox.requests() if r["seq"] > seq and r["path"].endswith("/members/profiles/batch")
    ]
    assert posts and posts[0]["body"] is None  # member_profiles is full table
    second = counts()
    assert second == first  # upserted on the primary keys, nothing duplicated
    changed = postgres.sql(
        "select count(*) from alida_pg.member_profile_values where effective_date = '2026-11-21 00:00:00'"
    )
    assert int(changed[0][0]) == 2


def test_batch_messages_into_postgres(fixture_sandbox, postgres, tmp_path):
    """SDK BATCH messages (gzip JSONL files in a local folder), loaded by target-postgres."""
    batches = tmp_path / "batches"
    batches.mkdir()
    config = fixture_sandbox.config(
        batch_config={
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": f"file://{batches}", "prefix": "alida-"},
        }
    )
    catalog = select_all(discover(tmp_path, fixture_sandbox.config()))
    run = run_tap(tmp_path, config, catalog=catalog)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not run.records
    manifests = {m["stream"]: m["manifest"] for m in run.messages if m["type"] == "BATCH"}
    assert set(manifests) == {s["tap_stream_id"] for s in catalog["streams"]}
    counts = {}
    for stream, files in manifests.items():
        counts[stream] = sum(
            len(gzip.decompress(Path(f.removeprefix("file://")).read_bytes()).splitlines()) for f in files
        )
    truth = fixture_sandbox.truth()
    assert counts["member_profiles"] == truth["members"]["members"]
    assert "replication_key_value" in run.state["bookmarks"]["member_profile_values"]
    # Full-table streams of one thing empty their table before their files load (their rows
    # carry no version); the streams of several surveys and the incremental one do not.
    activated = [m["stream"] for m in run.messages if m["type"] == "ACTIVATE_VERSION"]
    several = {"activity_answers", "activity_fields", "member_profile_values"}
    assert sorted(activated) == sorted(set(manifests) - several)
    for stream in activated:
        kinds = [m["type"] for m in run.messages if m.get("stream") == stream and m["type"] != "SCHEMA"]
        assert kinds[0] == "ACTIVATE_VERSION" and set(kinds[1:]) == {"BATCH"}, stream

    target_config = postgres.target_config("alida_batch")
    run_loader(
        tmp_path, "target-postgres", target_config, "".join(json.dumps(m) + "\n" for m in run.messages)
    )
    for stream, expected in counts.items():
        (n,) = postgres.sql(f'select count(*) from alida_batch."{stream}" where _sdc_deleted_at is null')[0]
        assert int(n) == expected > 0, stream


def test_sharded_meltano_runs_in_parallel_into_one_database(sandbox, postgres, tmp_path):
    """docs/state.md's sharding, as written: the first night one shard after the other (the first
    creates the schema and the tables both shards load), then two `meltano run`s at once, each with
    its own state id, into that schema: every survey loaded by exactly one shard, live rows equal
    to the community's."""
    surveys = [a["id"] for a in sandbox.truth()["activities"] if a["activityType"] == "Survey"]
    pg_env = {
        "TARGET_POSTGRES_PORT": str(postgres.port),
        "TARGET_POSTGRES_PASSWORD": "unused-trust-auth",
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": "alida_shards",
    }
    # meltano.yml's inherited extractors: each its own run dir, catalog and state id, and its
    # shard_index of shard_count 2 (set there).
    shards = {"tap-alida--shard-1": {}, "tap-alida--shard-2": {}}
    # The first night, one after the other: two target-postgres processes creating one schema or
    # table at once can fail (each checks, then creates; CI saw `schema "alida_shards" already exists`).
    for name in shards:
        first = meltano(tmp_path, sandbox, "run", name, "target-postgres", env=pg_env)
        assert first.returncode == 0, first.stderr[-3000:]
    sandbox.post("/_sandbox/members/touch", {"count": 2, "effectiveDate": "2026-11-21T00:00:00Z"})
    with ThreadPoolExecutor(2) as pool:
        runs = {
            name: pool.submit(
                meltano,
                tmp_path,
                sandbox,
                "run",
                name,
                "target-postgres",
                env={**pg_env, **extra},
            )
            for name, extra in shards.items()
        }
        done = {name: future.result() for name, future in runs.items()}
    for name, result in done.items():
        assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
    expected = expected_counts(sandbox)
    tables = {
        t
        for (t,) in postgres.sql(
            "select table_name from information_schema.tables where table_schema = 'alida_shards'"
        )
    }
    # Live rows: a row another shard's ACTIVATE_VERSION soft-deleted would not count.
    counts = {
        t: int(postgres.sql(f'select count(*) from alida_shards."{t}" where _sdc_deleted_at is null')[0][0])
        for t in tables
    }
    assert {k: counts[k] for k in FIXED} == {k: expected[k] for k in FIXED}
    assert sum(v for k, v in counts.items() if k not in FIXED) == expected["activity_responses"]
    states = {}
    for name in shards:
        listed = meltano(tmp_path, sandbox, "state", "get", f"sandbox:{name}-to-target-postgres")
        assert listed.returncode == 0, listed.stderr[-2000:]
        states[name] = json.loads(listed.stdout)["singer_state"]["bookmarks"]
    one, two = states["tap-alida--shard-1"], states["tap-alida--shard-2"]
    assert "replication_key_value" in one["member_profile_values"] and "member_profile_values" not in two
    loaded = [set(streams_of_activities({"bookmarks": bookmarks})) for bookmarks in (one, two)]
    assert loaded[0] and loaded[1] and not loaded[0] & loaded[1]
    assert loaded[0] | loaded[1] == {s.lower() for s in surveys}


def test_meltano_fixed_catalog_meets_drift_then_refresh(start_sandbox, tmp_path):
    """What docs/streams.md says about catalogs in Meltano: a run on a catalog made before the survey
    changed meets drift (evolve: the new column appears); a fresh discovery does not."""
    sandbox = start_sandbox("--activities", "1", "--members", "10", "--responses", "20")
    dumped = meltano(tmp_path, sandbox, "invoke", "--dump=catalog", "tap-alida")
    assert dumped.returncode == 0, dumped.stderr[-3000:]
    (tmp_path / "catalog.json").write_text(dumped.stdout)
    pinned = {"TAP_ALIDA__CATALOG": str(tmp_path / "catalog.json")}  # the `catalog` extra
    first = meltano(tmp_path, sandbox, "run", "tap-alida", "target-duckdb", env=pinned)
    assert first.returncode == 0, first.stderr[-3000:]
    activity_id = sandbox.truth()["activities"][0]["id"]
    sandbox.post(f"/_sandbox/activities/{activity_id}/drift", {})
    second = meltano(tmp_path, sandbox, "run", "tap-alida", "target-duckdb", env=pinned)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "differ from the catalog" in second.stderr
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        columns = {r[0] for r in con.sql("DESCRIBE alida.customer_satisfaction").fetchall()}
    assert "which_of_these_features_do_you_use" in columns
    third = meltano(tmp_path, sandbox, "run", "--refresh-catalog", "tap-alida", "target-duckdb")
    assert third.returncode == 0, third.stderr[-3000:]
    assert "Running catalog discovery" in third.stderr and "differ from the catalog" not in third.stderr
