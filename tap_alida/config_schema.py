"""Every setting of the tap, declared once: name, type, default, range, choices, description.

This is what the SDK validates, Meltano and ``--about`` show, and what
``settings.AlidaSettings`` reads its defaults and ranges from.

Settings that were removed (``REMOVED``) are still accepted in a config: each
gets one WARNING naming what replaced it, never a failure.
"""

from __future__ import annotations

from singer_sdk import typing as th

# Largest values of the numeric settings. Why: beyond them a value is a typo (a
# 1e12 s wait overflows the sleep call), and the message should say so
# before any request. Waits are also capped by their deadlines (export.wait).
MAXIMUMS: dict[str, int] = {
    "max_wait_to_start_seconds": 30 * 86400,
    "max_wait_seconds": 30 * 86400,
    "request_timeout_seconds": 3600,
    "max_request_attempts": 100,
    "max_concurrent_exports": 64,
    "shard_count": 1000,
    "shard_validity_hours": 24 * 365,
}

CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "community_api_key_name",
        th.StringType,
        required=True,
        title="Community API key name",
        description="Your community's API key name, the `{communityApiKeyName}` path segment "
        "of every API URL (e.g. `panel_mycommunity`).",
    ),
    th.Property(
        "client_id",
        th.StringType,
        required=True,
        title="Client ID",
        description="Client ID of an API credential (Alida: Product Settings > API > API Credentials).",
    ),
    th.Property(
        "client_secret",
        th.StringType,
        required=True,
        secret=True,
        title="Client secret",
        description="Client secret of the same API credential.",
    ),
    th.Property(
        "api_key",
        th.StringType,
        secret=True,
        title="API key",
        description="Optional Alida API key; sent as `x-api-key` to the Alida API host only "
        "(never to the file storage host).",
    ),
    th.Property(
        "region",
        th.StringType,
        title="Region",
        description="Your Alida region code, e.g. `na1` or `eu1`; the API is then "
        "`https://api.{region}.alida.com`. Either this or `api_url` is required.",
        examples=["na1", "eu1"],
    ),
    th.Property(
        "api_url",
        th.StringType,
        title="API base URL",
        description="Overrides `region` with a full base URL. Must be https, except for "
        "loopback hosts (a local sandbox).",
    ),
    th.Property(
        "token_url",
        th.StringType,
        title="Token URL",
        description="OAuth2 token endpoint. Default: `{api base URL}/oauth2/token`.",
    ),
    th.Property(
        "activity_ids",
        th.ArrayType(th.StringType),
        title="Activity IDs",
        description="Activities to export, one stream each. Default: every activity of type "
        "`Survey` that `/activities` lists.",
    ),
    th.Property(
        "shard_count",
        th.IntegerType(minimum=1, maximum=MAXIMUMS["shard_count"]),
        default=1,
        title="Shard count",
        description="Split the community's surveys over this many runs that load one warehouse "
        "(e.g. parallel Meltano jobs, each with its own state ID). A survey belongs to shard "
        "`hash(activity id) mod shard_count`; shard 0 also loads `activities` and the member "
        "streams. See docs/state.md (Sharding).",
    ),
    th.Property(
        "shard_index",
        th.IntegerType(minimum=0, maximum=MAXIMUMS["shard_count"] - 1),
        default=0,
        title="Shard index",
        description="Which shard this run loads, from 0 to `shard_count` - 1.",
    ),
    th.Property(
        "shard_validity_hours",
        th.NumberType(exclusive_minimum=0, maximum=MAXIMUMS["shard_validity_hours"]),
        default=36,
        title="Shard row validity (hours)",
        description="With `shard_count` above 1: how long a shard's rows in `activity_answers` and "
        "`activity_fields` stay valid without that shard loading them again, so that the other "
        "shards' `ACTIVATE_VERSION` keeps them. Counted from the start of the shard's run: set it "
        "above the longest time from the start of one complete run of a shard to the start of any "
        "other shard's run before its next complete run (a missed night included); a row deleted "
        "in Alida leaves those two tables at most this long after the last load that had it.",
    ),
    th.Property(
        "start_date",
        th.DateTimeType,
        title="Start date",
        description="First `sinceDatetime` for member profile exports. Absent: the first run "
        "exports every active member's profile.",
    ),
    th.Property(
        "max_wait_to_start_seconds",
        th.NumberType(exclusive_minimum=0, maximum=MAXIMUMS["max_wait_to_start_seconds"]),
        default=3600,
        title="Maximum wait to start (seconds)",
        description="How long a batch may stay `pending` before the export is given up.",
    ),
    th.Property(
        "max_wait_seconds",
        th.NumberType(exclusive_minimum=0, maximum=MAXIMUMS["max_wait_seconds"]),
        default=7200,
        title="Maximum wait to finish (seconds)",
        description="How long a batch may take from creation to `succeeded`.",
    ),
    th.Property(
        "request_timeout_seconds",
        th.NumberType(exclusive_minimum=0, maximum=MAXIMUMS["request_timeout_seconds"]),
        default=300,
        title="Request timeout (seconds)",
        description="Connect and read timeout of each HTTP request.",
    ),
    th.Property(
        "max_request_attempts",
        th.IntegerType(minimum=1, maximum=MAXIMUMS["max_request_attempts"]),
        default=6,
        title="Maximum request attempts",
        description="Tries per HTTP request on 429, 5xx, timeouts and dropped connections "
        "(capped exponential backoff with jitter).",
    ),
    th.Property(
        "max_concurrent_exports",
        th.IntegerType(minimum=1, maximum=MAXIMUMS["max_concurrent_exports"]),
        default=8,
        title="Maximum concurrent exports",
        description="Export files downloaded (spooled to disk) at the same time; every export is "
        "created and awaited at once, whatever this is. Records are still emitted one stream at a "
        "time, in name order.",
    ),
    th.Property(
        "set_columns",
        th.StringType,
        default="array",
        allowed_values=["array", "indicators", "both"],
        title="Multi-select columns",
        description="Shape of `set` (multi-select) fields in activity streams: `array` (one array "
        "column of option labels), `indicators` (one boolean column per option, named "
        "`<question>__<option>`), or `both`.",
    ),
    th.Property(
        "column_naming",
        th.StringType,
        default="name",
        allowed_values=["name", "id"],
        title="Column naming",
        description="Column names of activity fields and member variables: `name` (snake_case of "
        "the question text or variable name) or `id` (`field_<field id>`, `variable_<variable "
        "id>`: unchanged when a question is reworded). Names are unique and at most 63 bytes; "
        "`activity_fields` records the mapping.",
    ),
    th.Property(
        "stream_naming",
        th.StringType,
        default="name",
        allowed_values=["name", "id"],
        title="Stream naming",
        description="Names of activity streams: `name` (snake_case of the activity name) or `id` "
        "(`activity_<activity id>`: unchanged when an activity is renamed).",
    ),
    th.Property(
        "sensitive_values",
        th.StringType,
        default="include",
        allowed_values=["include", "hash", "drop"],
        title="Sensitive values",
        description="Values of member variables flagged `isSensitive`, in both member streams: "
        "`include` as exported, `hash` (hex SHA-256 of `sensitive_values_salt` + value), or "
        "`drop` (column left out of `member_profiles`, values null in `member_profile_values`).",
    ),
    th.Property(
        "sensitive_values_salt",
        th.StringType,
        secret=True,
        title="Salt for hashed sensitive values",
        description="Secret prefix hashed with each sensitive value when `sensitive_values` is "
        "`hash` (required then). Keep it stable: the same value hashes the same across runs.",
    ),
    th.Property(
        "schema_drift",
        th.StringType,
        default="evolve",
        allowed_values=["evolve", "ignore", "fail"],
        title="Schema drift",
        description="When an activity's export defines other fields than the catalog in use (new, "
        "removed, or retyped questions): `evolve` emits an updated SCHEMA first (new columns "
        "nullable, a changed type widens to string), `ignore` keeps the catalog (new fields only "
        "in `activity_answers`), `fail` stops the run naming the fields.",
    ),
    th.Property(
        "member_profiles_incremental",
        th.BooleanType,
        default=False,
        title="Incremental member_profiles",
        description="`false` (default): `member_profiles` is read from a full member export every "
        "run (full table), because an incremental export carries only the variables that changed "
        "and a partial row would blank the other columns in an upserting target. `true`: use the "
        "incremental export (`sinceDatetime` = bookmark) for `member_profiles` too; only safe if "
        "your Alida tenant's incremental export returns every variable of each changed member. "
        "`member_profile_values` is incremental either way.",
    ),
    th.Property(
        "emit_activate_version_messages",
        th.BooleanType,
        default=True,
        title="Emit ACTIVATE_VERSION",
        description="After a full-table stream's last record (activity streams, `activity_answers`, "
        "`activity_fields`, and `member_profiles` unless incremental), emit `ACTIVATE_VERSION` so "
        "that a target that honours it soft- or hard-deletes rows that left the export. Never "
        "emitted for a stream that failed, nor in BATCH mode (batch files carry no table version).",
    ),
    th.Property(
        "closed_activities",
        th.StringType,
        default="skip",
        allowed_values=["skip", "export"],
        title="Closed activities",
        description="`skip`: a survey that `/activities` lists as closed is not exported again once "
        "an export made after it closed was loaded (its rows stay as they are; its stream emits "
        "nothing). `export`: every survey is exported every run.",
    ),
    th.Property(
        "closed_activity_refresh_days",
        th.NumberType(minimum=0, maximum=3650),
        default=30,
        title="Closed activity refresh (days)",
        description="Export a skipped closed survey again when its last export is older than this "
        "many days, so that responses deleted in Alida after it closed still leave the warehouse. "
        "0: never.",
    ),
    th.Property(
        "fail_fast",
        th.BooleanType,
        default=False,
        title="Fail fast",
        description="`false` (default): an export that fails (stuck, failed, a bad file) fails its "
        "stream only; the other streams complete and keep their STATE, and the run then exits "
        "non-zero naming each stream that failed. `true`: the first failure stops the run.",
    ),
    th.Property(
        "cache_dir",
        th.StringType,
        title="Cache folder",
        description="Where field definitions of closed surveys are kept between runs, so that "
        "discovery does not export them again. Default: the user cache folder "
        "(`$XDG_CACHE_HOME/tap-alida`, else `~/.cache/tap-alida`). A missing or unwritable folder "
        "only costs time (one WARNING).",
    ),
).to_dict()

# Settings of earlier versions: the key, and what replaced it (one WARNING each when a
# config still sets it; the value is ignored, except probe_activity_id's, see tap.cb_probe).
REMOVED: dict[str, str] = {
    "poll_interval_seconds": "a constant: status checks start 1 s apart and grow to 10 % of the "
    "export's age, at most 60 s",
    "poll_max_interval_seconds": "a constant: status checks are at most 60 s apart",
    "max_retry_after_seconds": "a constant: a Retry-After longer than 300 s fails the run",
    "max_export_attempts": "a constant: 3 batches per export when Alida reports one `failed` or "
    "its file is truncated",
    "probe_activity_id": "the argument of `--probe`: `tap-alida --probe ACTIVITY_ID` (the setting "
    "is still used by a bare `--probe`)",
}
