"""One HTTP policy: what to do after each answer or error, and how long to wait.

Every request of the tap (API calls, the token call, storage downloads) asks
``decide`` what an outcome means, from one table:

| outcome | API host | storage host | token endpoint |
|---|---|---|---|
| connection refused / reset, timeout, dropped body | RETRY | RETRY | RETRY |
| 429, 500, 502, 503, 504 | RETRY | RETRY | RETRY |
| 401 | RENEW_TOKEN | NEW_LINK | FAIL |
| 400, 403 | FAIL | NEW_LINK (pre-signed links expire) | FAIL |
| 404 | NOT_FOUND | FAIL | FAIL |
| other 4xx | FAIL | FAIL | FAIL |

A POST that creates a batch is not repeated blindly: it is repeated only when
the server certainly did not act on it (the connection was never made, 429,
503). After a read timeout or a 500/502/504 Alida may have created the batch;
the Batch Data Extract API has no way to list batches (``docs/api.md`` §2-3),
so the tap repeats it and says that a duplicate export may exist
(``may_have_acted``).

The mechanics (counting tries, waiting, ``Retry-After``, the "gave up"
message) are ``retry.RetryPolicy.attempts``, the one retry loop every request uses.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

import requests
import urllib3

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    ConnectionResetError,
)
# Raised while a body is being read (urllib3 raises its own when read directly,
# requests wraps them in iter_content): all mean "the connection broke".
STREAM_ERRORS = (
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    urllib3.exceptions.DecodeError,
)


# Sees every HTTP response (token, API, storage) as it arrives, before retries
# decide anything: ``(response, streamed)``; a streamed body is not read yet.
# Only the contract probe (``probe``) sets one; it must not read streamed bodies.
Observer = Callable[[requests.Response, bool], None]


class Action(enum.Enum):
    """What to do next."""

    OK = "ok"
    RETRY = "retry"
    RENEW_TOKEN = "renew token"
    NEW_LINK = "new link"
    NOT_FOUND = "not found"
    FAIL = "fail"


API, STORAGE, TOKEN = "api", "storage", "token"


def decide(host: str, status: int | None = None, error: BaseException | None = None) -> Action:
    """The policy table above: ``host`` is API, STORAGE or TOKEN; give a status or an error."""
    if error is not None:
        return Action.RETRY if isinstance(error, (*TRANSIENT_ERRORS, *STREAM_ERRORS)) else Action.FAIL
    if status is None or status < 400:
        return Action.OK
    if status in RETRY_STATUSES:
        return Action.RETRY
    if host == API:
        return {401: Action.RENEW_TOKEN, 404: Action.NOT_FOUND}.get(status, Action.FAIL)
    if host == STORAGE and status in (400, 401, 403):
        return Action.NEW_LINK
    return Action.FAIL


def may_have_acted(status: int | None = None, error: BaseException | None = None) -> bool:
    """Whether the server may have carried out a request that did not answer 2xx.

    False only where it certainly did not: no connection was made, or it said
    so (429 rate limited, 503 unavailable).
    """
    if error is not None:
        return not isinstance(error, requests.exceptions.ConnectTimeout) and not (
            isinstance(error, requests.ConnectionError)
            and isinstance(getattr(error, "args", [None])[0], urllib3.exceptions.MaxRetryError)
            and isinstance(error.args[0].reason, urllib3.exceptions.NewConnectionError)
        )
    return status not in (429, 503)


def connect_failure(exc: BaseException) -> str | None:
    """Why a connection could not be made at all (name not resolved, refused), else None."""
    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.Timeout):
        return None
    reason: Any = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return "the host name does not resolve"
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return "no connection could be made (refused, or the host is unreachable)"
    return None


def error_detail(response: requests.Response) -> str:
    """Alida's error object (§8) as one short line, or the status text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        parts = [str(body[k]) for k in ("message", "developerMessage") if body.get(k)]
        if body.get("errorId"):
            parts.append(f"errorId {body['errorId']}")
        if parts:
            return "; ".join(parts)
    return response.reason or f"HTTP {response.status_code}"
