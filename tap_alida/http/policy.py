"""One HTTP policy: what to do after each answer or error, and the one retry loop that waits.

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

One retry loop, used by every request, acts on that table: it counts tries, waits, honours
``Retry-After`` and words the "gave up" error (``RetryPolicy.attempts``):

    retries = client.retry.attempts("list the activities")
    for attempt in retries:
        ...                              # one try; on a retriable outcome:
        attempt.failed("HTTP 503", response)
        continue                         # (a pass ending without ``failed``: no wait)
    raise retries.gave_up()              # after the last try

``failed`` makes the next pass wait first: a capped exponential backoff with jitter
(1, 2, 4 … 60 s, times 0.5-1.0), or a 429's ``Retry-After`` (seconds or an HTTP date) up to
``settings.MAX_RETRY_AFTER_SECONDS``, beyond which the run fails rather than sleeping for an
unknown time. Every pass counts towards ``max_request_attempts``. Waits raise StoppedError at
once when the run stops. What an answer means (retry, renew, fail) is ``decide``'s.

Why not ``backoff``/``tenacity``: the waits must wake on the run's stop signal, honour a
per-response ``Retry-After`` with a ceiling that fails the run, and count tries across token
renewals shared by threads; the loop that needs all that is ``RetryPolicy`` below.
"""

from __future__ import annotations

import email.utils
import enum
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from tap_alida.errors import APIError
from tap_alida.settings import AlidaSettings
from tap_alida.stop import RunStop

logger = logging.getLogger("tap_alida.http.policy")

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


# -- the retry loop ------------------------------------------------------------------------


class Attempt:
    """One pass of the retry loop: its number (1, 2, …) and, after ``failed``, why."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.reason: str | None = None
        self.response: requests.Response | None = None

    def failed(self, reason: str, response: requests.Response | None = None) -> None:
        """This try failed in a way worth another (``reason`` goes into the log line);
        a 429 ``response`` lends its ``Retry-After`` to the wait."""
        self.reason = reason
        self.response = response


class Attempts:
    """The tries of one call; iterate to get them (see the module docstring)."""

    def __init__(self, policy: RetryPolicy, what: str) -> None:
        self.policy = policy
        self.what = what
        self.last = Attempt(0)

    def __iter__(self) -> Iterator[Attempt]:
        number = 0
        while True:
            number += 1
            self.last = Attempt(number)
            yield self.last
            if self.last.reason is None:
                continue  # ended without failing (a renewed token): try again at once
            if number >= self.policy.max_attempts:
                return
            self.policy.wait(number, self.what, self.last.reason, self.last.response)

    def gave_up(self) -> APIError:
        """The error after the last try: names the call, the tries, the last reason and the setting."""
        last = self.last
        msg = (
            f"Could not {self.what} after {last.number} attempts (last: {last.reason}). Alida or the "
            "network is failing; rerun later or raise 'max_request_attempts'."
        )
        return APIError(msg, status=last.response.status_code if last.response is not None else None)


class RetryPolicy:
    """How many tries, and how long to wait between them; one per client (its run's stop).

    Shared by API calls, the token call and storage downloads, so every path
    retries the same way and logs the same line.
    """

    def __init__(self, settings: AlidaSettings, stop: RunStop) -> None:
        self.stop = stop
        self.max_attempts = settings.max_attempts
        self.max_retry_after = settings.max_retry_after
        self._answered: set[str] = set()  # hosts that answered at least once

    def attempts(self, what: str) -> Attempts:
        """The tries of one call; ``what`` names it in messages ("list the activities")."""
        return Attempts(self, what)

    def answered(self, url: str) -> None:
        """Note that ``url``'s host answered (any HTTP status): from now on it may be retried."""
        self._answered.add(urlsplit(url).netloc.lower())

    def first_contact_failed(self, url: str, exc: BaseException) -> str | None:
        """Why the first request to a host that never answered could not connect, else None.

        Retries with backoff are for a connection that worked and then broke: a host
        refusing connections or a name that does not resolve at first contact is a
        wrong 'api_url'/'region' or a network rule, not a blip, and waiting ~20 s of
        backoffs before saying so only hides it. A timeout is not judged here (it is
        retried as before): a slow network may still answer.
        """
        if urlsplit(url).netloc.lower() in self._answered:
            return None
        return connect_failure(exc)

    def backoff(self, attempt: int) -> float:
        return jittered_backoff(attempt)

    def wait(self, attempt: int, what: str, reason: str, response: requests.Response | None) -> None:
        """Sleep before try ``attempt + 1``: the backoff, or a 429's ``Retry-After`` (capped)."""
        wait = self.backoff(attempt)
        if response is not None and response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                check_retry_after(
                    retry_after, self.max_retry_after, f"Alida rate-limited the request to {what}"
                )
                wait = retry_after
        logger.warning(
            "Could not %s (%s); retry %d of %d in %.1f s.",
            what,
            reason,
            attempt,
            self.max_attempts - 1,
            wait,
        )
        self.stop.sleep(wait)


def check_retry_after(retry_after: float, ceiling: float, refused: str) -> None:
    """Raise APIError when a ``Retry-After`` asks for longer than the run will wait.

    ``refused`` starts the message: "Alida rate-limited the request to list X".
    """
    if retry_after > ceiling:
        msg = (
            f"{refused} and asked to wait {retry_after:.0f} s, more than the tap waits "
            f"({ceiling:.0f} s, MAX_RETRY_AFTER_SECONDS). Rerun later."
        )
        raise APIError(msg, status=429)


def jittered_backoff(attempt: int, first: float = 1.0, cap: float = 60.0) -> float:
    """Seconds to wait before try ``attempt + 1``: first × 2^(attempt-1), at most ``cap``,
    times 0.5-1.0 (jitter, so that threads refused together do not come back together)."""
    return min(first * 2.0 ** (attempt - 1), cap) * (0.5 + random.random() / 2)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
