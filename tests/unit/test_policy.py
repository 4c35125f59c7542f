"""The HTTP policy table, the POST duplicate rule, and the retry mechanics (no sockets)."""

from __future__ import annotations

import time

import pytest
import requests
import urllib3

from tap_alida.errors import APIError, StoppedError
from tap_alida.http.policy import (
    API,
    STORAGE,
    TOKEN,
    Action,
    RetryPolicy,
    decide,
    may_have_acted,
    parse_retry_after,
)
from tap_alida.settings import AlidaSettings
from tap_alida.stop import RunStop


@pytest.mark.parametrize(
    ("host", "status", "action"),
    [
        (API, 200, Action.OK),
        (API, 302, Action.OK),
        (API, 401, Action.RENEW_TOKEN),
        (API, 404, Action.NOT_FOUND),
        (API, 400, Action.FAIL),
        (API, 403, Action.FAIL),
        (API, 429, Action.RETRY),
        (API, 500, Action.RETRY),
        (API, 502, Action.RETRY),
        (API, 503, Action.RETRY),
        (API, 504, Action.RETRY),
        (API, 501, Action.FAIL),
        (STORAGE, 200, Action.OK),
        (STORAGE, 400, Action.NEW_LINK),
        (STORAGE, 401, Action.NEW_LINK),
        (STORAGE, 403, Action.NEW_LINK),
        (STORAGE, 404, Action.FAIL),
        (STORAGE, 503, Action.RETRY),
        (TOKEN, 401, Action.FAIL),
        (TOKEN, 403, Action.FAIL),
        (TOKEN, 500, Action.RETRY),
    ],
)
def test_the_policy_table(host, status, action):
    assert decide(host, status) is action


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (requests.ConnectionError("reset"), Action.RETRY),
        (requests.ReadTimeout("slow"), Action.RETRY),
        (requests.exceptions.ChunkedEncodingError("cut"), Action.RETRY),
        (urllib3.exceptions.ProtocolError("cut"), Action.RETRY),
        (ConnectionResetError(), Action.RETRY),
        (ValueError("a bug"), Action.FAIL),
    ],
)
def test_errors_in_the_policy_table(error, action):
    assert decide(API, error=error) is action


def test_a_post_is_called_possibly_acted_on_unless_the_server_certainly_did_not():
    refused = requests.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/", urllib3.exceptions.NewConnectionError(None, "refused"))
    )
    assert may_have_acted(error=refused) is False
    assert may_have_acted(error=requests.exceptions.ConnectTimeout()) is False
    assert may_have_acted(error=requests.ReadTimeout()) is True
    assert may_have_acted(error=requests.ConnectionError("reset mid-answer")) is True
    assert may_have_acted(status=429) is False and may_have_acted(status=503) is False
    assert may_have_acted(status=500) and may_have_acted(status=502) and may_have_acted(status=504)


def settings(**overrides):
    config = {
        "community_api_key_name": "c",
        "client_id": "i",
        "client_secret": "s",
        "api_url": "http://127.0.0.1:1",
        **overrides,
    }
    return AlidaSettings.from_config(config)


def response(status, headers=None):
    answer = requests.Response()
    answer.status_code = status
    answer.headers.update(headers or {})
    return answer


def test_retry_after_is_honoured_and_bounded():
    policy = RetryPolicy(settings(max_retry_after_seconds=5), RunStop())
    started = time.monotonic()
    policy.pause(1, "list things", "HTTP 429", response(429, {"Retry-After": "0"}))
    assert time.monotonic() - started < 0.5
    with pytest.raises(APIError, match="asked to wait 60 s, more than 'max_retry_after_seconds'"):
        policy.pause(1, "list things", "HTTP 429", response(429, {"Retry-After": "60"}))


def test_the_last_attempt_fails_naming_the_call_and_the_setting():
    policy = RetryPolicy(settings(max_request_attempts=2), RunStop())
    with pytest.raises(APIError, match=r"Could not list things after 2 attempts .*'max_request_attempts'"):
        policy.pause(2, "list things", "HTTP 503", response(503))


def test_a_stopped_run_wakes_a_backoff_at_once():
    stop = RunStop()
    policy = RetryPolicy(settings(), stop)
    stop.set()
    started = time.monotonic()
    with pytest.raises(StoppedError):
        policy.pause(5, "list things", "HTTP 503", response(503))  # would sleep 8-16 s
    assert time.monotonic() - started < 0.5


def test_backoff_is_capped_exponential_with_jitter():
    policy = RetryPolicy(settings(), RunStop())
    for attempt, base in ((1, 1), (2, 2), (3, 4), (7, 60), (20, 60)):
        waits = [policy.backoff(attempt) for _ in range(50)]
        assert all(base * 0.5 <= w <= base for w in waits)


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("7") == 7
    assert parse_retry_after(" 0 ") == 0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 <= parse_retry_after(in_a_minute) <= 61


def test_every_setting_reaches_the_settings_object():
    """Each key of the config schema changes the typed settings (none is dropped on the way)."""
    from tap_alida.settings import CONFIG_SCHEMA

    base = {
        "community_api_key_name": "c",
        "client_id": "i",
        "client_secret": "s",
        "api_url": "http://127.0.0.1:1",
    }
    plain = AlidaSettings.from_config(base)
    examples = {
        "boolean": lambda d: not d,
        "integer": lambda d: (d or 0) + 1,
        "number": lambda d: (d or 0) + 1,
    }
    for key, prop in CONFIG_SCHEMA["properties"].items():
        if key in base or key in ("region", "api_url", "token_url", "api_key", "start_date", "activity_ids"):
            continue
        kind = prop["type"][0] if isinstance(prop["type"], list) else prop["type"]
        if "enum" in prop:
            value = next(v for v in prop["enum"] if v != prop.get("default"))
        elif kind in examples:
            value = examples[kind](prop.get("default"))
        else:
            value = "x-" + key
        extra = {"sensitive_values_salt": "salt"} if key == "sensitive_values" else {}
        assert AlidaSettings.from_config({**base, **extra, key: value}) != AlidaSettings.from_config(
            {**base, **extra}
        ), key
    assert plain == AlidaSettings.from_config(dict(base))


def _connect_error(cause: Exception) -> requests.ConnectionError:
    """What requests raises when urllib3 could not connect (its MaxRetryError wraps the cause)."""
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/oauth2/token", cause))


@pytest.mark.parametrize(
    ("exc", "why"),
    [
        (
            _connect_error(urllib3.exceptions.NewConnectionError(None, "refused")),
            "no connection could be made",
        ),
        (
            _connect_error(urllib3.exceptions.NameResolutionError("x.invalid", None, OSError())),
            "does not resolve",
        ),
        (requests.ConnectTimeout("slow"), None),
        (requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.")), None),
        (requests.exceptions.ChunkedEncodingError("cut"), None),
    ],
)
def test_only_a_refused_or_unresolved_first_contact_fails_at_once(exc, why):
    policy = RetryPolicy(settings(), RunStop())
    found = policy.first_contact_failed("http://127.0.0.1:1/oauth2/token", exc)
    assert (found is None) if why is None else (found is not None and why in found)


def test_a_host_that_answered_once_is_retried_again():
    policy = RetryPolicy(settings(), RunStop())
    refused = _connect_error(urllib3.exceptions.NewConnectionError(None, "refused"))
    policy.answered("http://API.example:8443/v1/x")
    assert policy.first_contact_failed("http://api.example:8443/v2/y", refused) is None
    assert policy.first_contact_failed("http://other.example/v2/y", refused) is not None
