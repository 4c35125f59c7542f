"""The one retry loop (``policy.RetryPolicy``): tries, waits, Retry-After, "gave up" (no sockets)."""

from __future__ import annotations

import logging
import time

import pytest
import requests
import urllib3

from tap_alida.errors import APIError, StoppedError
from tap_alida.http.policy import RetryPolicy, check_retry_after, parse_retry_after
from tap_alida.settings import AlidaSettings
from tap_alida.stop import RunStop


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


def tries(policy, failures, *, backoff=None, what="list things"):
    """Run the loop: the n-th try fails with ``failures[n]`` (a response or a reason), then
    succeeds. Returns the number of tries; raises what the loop raises after the last."""
    if backoff is not None:
        policy.backoff = lambda attempt: backoff
    retries = policy.attempts(what)
    for attempt in retries:
        if attempt.number > len(failures):
            return attempt.number
        failure = failures[attempt.number - 1]
        if isinstance(failure, str):
            attempt.failed(failure)
        else:
            attempt.failed(f"HTTP {failure.status_code}", failure)
    raise retries.gave_up()


def test_a_call_that_succeeds_at_once_is_tried_once():
    assert tries(RetryPolicy(settings(), RunStop()), []) == 1


def test_each_failure_waits_the_backoff_then_tries_again(caplog):
    policy = RetryPolicy(settings(max_request_attempts=4), RunStop())
    waited = []
    policy.backoff = lambda attempt: waited.append(attempt) or 0.0
    with caplog.at_level(logging.WARNING, logger="tap_alida.http.policy"):
        assert tries(policy, ["ReadTimeout", "HTTP 503"]) == 3
    assert waited == [1, 2]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "Could not list things (ReadTimeout); retry 1 of 3 in 0.0 s.",
        "Could not list things (HTTP 503); retry 2 of 3 in 0.0 s.",
    ]


def test_the_loop_ends_after_max_request_attempts_tries_without_a_last_wait():
    policy = RetryPolicy(settings(max_request_attempts=3), RunStop())
    waited = []
    policy.backoff = lambda attempt: waited.append(attempt) or 0.0
    retries = policy.attempts("list things")
    numbers = []
    for attempt in retries:
        numbers.append(attempt.number)
        attempt.failed("ConnectionError")
    assert numbers == [1, 2, 3] and waited == [1, 2]
    error = retries.gave_up()
    assert str(error) == (
        "Could not list things after 3 attempts (last: ConnectionError). Alida or the network is "
        "failing; rerun later or raise 'max_request_attempts'."
    )
    assert error.status is None


def test_gave_up_carries_the_last_status():
    policy = RetryPolicy(settings(max_request_attempts=1), RunStop())
    with pytest.raises(APIError) as raised:
        tries(policy, [response(502)])
    assert raised.value.status == 502


def test_a_pass_without_failed_is_a_try_that_does_not_wait():
    """A renewed token repeats the request at once, and the renewal uses one of the tries."""
    policy = RetryPolicy(settings(max_request_attempts=3), RunStop())
    policy.backoff = lambda attempt: pytest.fail("no wait expected before a renewal's repeat")
    retries = policy.attempts("list things")
    numbers = []
    for attempt in retries:
        numbers.append(attempt.number)
        if attempt.number == 3:
            break
    assert numbers == [1, 2, 3]


def test_retry_after_replaces_the_backoff_on_a_429_only(caplog):
    policy = RetryPolicy(settings(), RunStop())
    slept = []
    policy.stop.sleep = slept.append
    policy.backoff = lambda attempt: 0.25
    tries(policy, [response(429, {"Retry-After": "2"}), response(503, {"Retry-After": "3"})])
    assert slept == [2.0, 0.25]


def test_the_retry_after_ceiling_names_who_refused_and_the_setting():
    check_retry_after(5, 5, "Alida refused")
    with pytest.raises(
        APIError,
        match=r"^Alida refused and asked to wait 6 s, more than the tap waits \(5 s, MAX_RETRY_AFTER_SECONDS",
    ):
        check_retry_after(6, 5, "Alida refused")


def test_retry_after_is_honoured_and_bounded():
    policy = RetryPolicy(settings(), RunStop())
    assert policy.max_retry_after == 300  # settings.MAX_RETRY_AFTER_SECONDS
    policy.max_retry_after = 5
    started = time.monotonic()
    assert tries(policy, [response(429, {"Retry-After": "0"})]) == 2
    assert time.monotonic() - started < 0.5
    with pytest.raises(APIError, match=r"asked to wait 60 s, more than the tap waits \(5 s"):
        tries(policy, [response(429, {"Retry-After": "60"})])


def test_the_last_attempt_fails_naming_the_call_and_the_setting():
    policy = RetryPolicy(
        settings(max_request_attempts=2),
        RunStop(),
    )
    with pytest.raises(APIError, match=r"Could not list things after 2 attempts .*'max_request_attempts'"):
        tries(policy, [response(503)] * 5, backoff=0)


def test_a_stopped_run_wakes_a_backoff_at_once():
    stop = RunStop()
    policy = RetryPolicy(settings(), stop)
    stop.set()
    started = time.monotonic()
    with pytest.raises(StoppedError):
        policy.wait(5, "list things", "HTTP 503", response(503))  # would sleep 8-16 s
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
