"""Tap settings: their checks and a typed, read-only view.

``CONFIG_SCHEMA`` (``config_schema``) is what the SDK validates (required keys,
types, defaults, ranges).
``AlidaSettings`` adds the checks JSON Schema cannot express (a base URL must be
derivable, plain http only on loopback) and gives the rest of the tap typed,
read-only access. Both run before any request is made.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tap_alida.config_schema import CONFIG_SCHEMA, MAXIMUMS, REMOVED
from tap_alida.modelling.types import parse_datetime

__all__ = ["CONFIG_SCHEMA", "MAXIMUMS", "REMOVED", "AlidaSettings"]

# Batch status checks start this far apart and grow to 10 % of the export's age, at most
# POLL_MAX_INTERVAL_SECONDS (``export.api.poll_wait``). Settings until this release: no user had a
# reason to change them (the deadlines bound the waits, and a poll costs one small GET).
POLL_INTERVAL_SECONDS = 1.0
POLL_MAX_INTERVAL_SECONDS = 60.0
# Test-only: "MIN[,MAX]" seconds between status checks, for tests and benchmarks against
# the sandbox, whose exports finish in milliseconds (docs/development.md).
TEST_POLL_ENV = "ALIDA_TEST_POLL_SECONDS"
# Batches created per export when Alida reports one `failed` or its file is truncated
# (``export.plan``). A setting until this release: a third failure in a row is Alida's problem to
# fix, not a reason to create more batches, so no user had a reason to change it.
EXPORT_ATTEMPTS = 3
# The longest Retry-After (on a 429) the tap waits; a longer one fails the run (``http.policy``).
MAX_RETRY_AFTER_SECONDS = 300.0

_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


def is_loopback(host: str | None) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_errors(config: Mapping[str, Any]) -> list[str]:
    """Which Alida host: ``api_url`` (an https URL, or http on loopback), else ``region``."""
    api_url, region = config.get("api_url"), config.get("region")
    if api_url:
        problem = _check_url("api_url", str(api_url))
        return [problem] if problem else []
    if region:
        if _REGION.match(str(region)):
            return []
        return [f"Setting 'region' must be a region code such as 'na1' or 'eu1', got {region!r}."]
    return [
        "Set 'region' (e.g. 'na1', 'eu1') or 'api_url': the tap cannot tell which Alida host "
        "serves your community."
    ]


def poll_intervals() -> tuple[float, float]:
    """The first and the longest wait between status checks (``TEST_POLL_ENV`` for tests)."""
    given = os.environ.get(TEST_POLL_ENV, "").split(",")
    try:
        first = float(given[0]) if given[0] else POLL_INTERVAL_SECONDS
        longest = float(given[1]) if len(given) > 1 else max(first, POLL_MAX_INTERVAL_SECONDS)
    except ValueError:
        return POLL_INTERVAL_SECONDS, POLL_MAX_INTERVAL_SECONDS
    return first, longest


def removed_settings(config: Mapping[str, Any]) -> list[str]:
    """One warning for each removed setting the config still sets, naming what replaced it."""
    return [
        f"Setting {key!r} was removed and is ignored; it was replaced by {REMOVED[key]}."
        for key in sorted(REMOVED)
        if key in config
    ]


def _setting(config: Mapping[str, Any], key: str) -> Any:
    """The setting's value, else its default as the schema declares it (declared once)."""
    value = config.get(key)
    return CONFIG_SCHEMA["properties"][key].get("default") if value is None else value


def range_error(key: str, value: Any) -> str | None:
    """The schema's own range of a number setting (declared once, above), in plain words."""
    prop = CONFIG_SCHEMA["properties"].get(key, {})
    if not {"minimum", "maximum", "exclusiveMinimum"} & set(prop):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None  # a type error: JSON Schema names it
    shown = f"{number:g}"
    if "exclusiveMinimum" in prop and number <= prop["exclusiveMinimum"]:
        return f"Setting '{key}' is {shown}; it must be greater than {_bound(prop['exclusiveMinimum'])}."
    if "minimum" in prop and number < prop["minimum"]:
        return f"Setting '{key}' is {shown}; it must be at least {_bound(prop['minimum'])}."
    if "maximum" in prop and number > prop["maximum"]:
        return f"Setting '{key}' is {shown}; it must be at most {_bound(prop['maximum'])}."
    return None


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _check_url(name: str, url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"Setting '{name}' must be an absolute http(s) URL, got {url!r}."
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return (
            f"Setting '{name}' uses plain http on {parts.hostname!r}; credentials would travel "
            "unencrypted. Use https (plain http is allowed only for loopback hosts)."
        )
    if parts.query or parts.fragment:
        return f"Setting '{name}' must not carry a query string or fragment."
    return None


@dataclass(frozen=True)
class AlidaSettings:
    """Validated, typed view of the tap's config."""

    community: str
    client_id: str
    client_secret: str
    api_key: str | None
    base_url: str
    token_url: str
    activity_ids: tuple[str, ...] | None
    shard_count: int
    shard_index: int
    shard_validity_hours: float
    start_date: str | None
    poll_interval: float
    poll_max_interval: float
    max_wait_to_start: float
    max_wait: float
    timeout: float
    max_attempts: int
    max_retry_after: float
    max_concurrent_exports: int
    set_columns: str
    column_naming: str
    stream_naming: str
    sensitive_values: str
    sensitive_values_salt: str | None
    schema_drift: str
    member_profiles_incremental: bool
    emit_activate_version: bool
    closed_activities: str
    closed_activity_refresh_days: float
    cache_dir: str | None
    fail_fast: bool
    probe_activity_id: str | None

    @classmethod
    def errors(cls, config: Mapping[str, Any]) -> list[str]:
        """Problems JSON Schema cannot see (and its range checks in plain words); empty when
        the config is usable."""
        errors = _host_errors(config)
        if config.get("token_url") and (problem := _check_url("token_url", str(config["token_url"]))):
            errors.append(problem)
        for key in ("community_api_key_name", "client_id", "client_secret"):
            if key in config and not str(config[key]).strip():
                errors.append(f"Setting '{key}' is empty.")
        ids = config.get("activity_ids")
        if ids is not None and any(not str(i).strip() for i in ids):
            errors.append("Setting 'activity_ids' contains an empty id.")
        count, index = config.get("shard_count", 1), config.get("shard_index", 0)
        if isinstance(count, int) and isinstance(index, int) and not 0 <= index < count:
            errors.append(
                f"Setting 'shard_index' is {index}; with 'shard_count' {count} it must be 0 to {count - 1}."
            )
        start = config.get("start_date")
        if start not in (None, "") and parse_datetime(start) is None:
            errors.append(
                f"Setting 'start_date' is {start!r}; give an ISO-8601 date or date-time such as "
                "2026-01-01 or 2026-01-01T00:00:00Z."
            )
        errors += [problem for key in config if (problem := range_error(key, config[key]))]
        if config.get("sensitive_values") == "hash" and not config.get("sensitive_values_salt"):
            errors.append(
                "Setting 'sensitive_values' is 'hash' but 'sensitive_values_salt' is not set: set a "
                "secret salt (unsalted hashes of e-mails can be reversed by guessing)."
            )
        return errors

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AlidaSettings:
        """Build from an SDK-validated config (defaults filled in)."""
        if config.get("api_url"):
            base_url = str(config["api_url"]).rstrip("/")
        else:
            base_url = f"https://api.{config['region']}.alida.com"
        ids = config.get("activity_ids")
        poll_interval, poll_max_interval = poll_intervals()
        return cls(
            community=str(config["community_api_key_name"]).strip(),
            client_id=str(config["client_id"]),
            client_secret=str(config["client_secret"]),
            api_key=config.get("api_key") or None,
            base_url=base_url,
            token_url=str(config.get("token_url") or f"{base_url}/oauth2/token"),
            activity_ids=tuple(str(i).strip() for i in ids) if ids else None,
            start_date=config.get("start_date"),
            shard_count=int(_setting(config, "shard_count")),
            shard_index=int(_setting(config, "shard_index")),
            shard_validity_hours=float(_setting(config, "shard_validity_hours")),
            poll_interval=poll_interval,
            poll_max_interval=poll_max_interval,
            max_wait_to_start=float(_setting(config, "max_wait_to_start_seconds")),
            max_wait=float(_setting(config, "max_wait_seconds")),
            timeout=float(_setting(config, "request_timeout_seconds")),
            max_attempts=int(_setting(config, "max_request_attempts")),
            max_retry_after=MAX_RETRY_AFTER_SECONDS,
            max_concurrent_exports=int(_setting(config, "max_concurrent_exports")),
            set_columns=str(_setting(config, "set_columns")),
            column_naming=str(_setting(config, "column_naming")),
            stream_naming=str(_setting(config, "stream_naming")),
            sensitive_values=str(_setting(config, "sensitive_values")),
            sensitive_values_salt=config.get("sensitive_values_salt") or None,
            schema_drift=str(_setting(config, "schema_drift")),
            member_profiles_incremental=bool(_setting(config, "member_profiles_incremental")),
            emit_activate_version=bool(_setting(config, "emit_activate_version_messages")),
            # Removed (``--probe ACTIVITY_ID``); a bare ``--probe`` still uses it.
            probe_activity_id=str(config.get("probe_activity_id") or "").strip() or None,
            closed_activities=str(_setting(config, "closed_activities")),
            closed_activity_refresh_days=float(_setting(config, "closed_activity_refresh_days")),
            cache_dir=config.get("cache_dir") or None,
            fail_fast=bool(_setting(config, "fail_fast")),
        )


def unknown_settings(config: Mapping[str, Any], known: Iterable[str]) -> list[str]:
    """A warning for each config key that is no setting, with the closest setting name.

    JSON Schema lets unknown keys through, so a misspelt key (``poll_intervall_seconds``)
    would silently leave its setting at the default. Removed settings are
    ``removed_settings``'s to warn about.
    """
    names = sorted(set(known))
    warnings = []
    for key in sorted(set(config) - set(names) - set(REMOVED)):
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "`tap-alida --about` lists the settings."
        warnings.append(f"Setting {key!r} is not a tap-alida setting and is ignored; {hint}")
    return warnings


_SCHEMA_KEY = re.compile(r"in config\['(\w+)'\]$")


def plain_schema_error(error: str, config: Mapping[str, Any]) -> str:
    """A JSON-schema range error in the words of ``range_error``.

    jsonschema says "Decimal('1E+12') is greater than the maximum of 86400 in
    config['max_wait_seconds']"; a user reads the setting and its bound better.
    """
    match = _SCHEMA_KEY.search(error)
    if match is None:
        return error
    return range_error(match.group(1), config.get(match.group(1))) or error
