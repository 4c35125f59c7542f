"""The HTTP policy table, the POST duplicate rule, and the settings object (no sockets).

The retry mechanics (tries, waits, Retry-After) are in ``test_retry.py``."""

from __future__ import annotations

import pytest
import requests
import urllib3

from tap_alida.http.policy import (
    API,
    STORAGE,
    TOKEN,
    Action,
    decide,
    may_have_acted,
)
from tap_alida.settings import AlidaSettings


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


def test_poll_intervals_are_constants_unless_the_test_knob_is_set(monkeypatch):
    from tap_alida.settings import TEST_POLL_ENV, poll_intervals

    monkeypatch.delenv(TEST_POLL_ENV, raising=False)
    assert poll_intervals() == (1.0, 60.0)
    for value, expected in (("0.05,0.2", (0.05, 0.2)), ("0.2", (0.2, 60.0)), ("86400", (86400.0, 86400.0))):
        monkeypatch.setenv(TEST_POLL_ENV, value)
        assert poll_intervals() == expected
    monkeypatch.setenv(TEST_POLL_ENV, "soon")
    assert poll_intervals() == (1.0, 60.0)
