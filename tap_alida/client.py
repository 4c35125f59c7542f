"""HTTP to Alida: token, retries, error objects, and auth-free file downloads.

Why not ``RESTStream``'s request machinery: the tap calls the API at discovery
time and from the export-job lifecycle, outside any stream, and it must download
files with ``stream=True`` without credentials after a cross-host redirect. The
SDK's backoff decorator is bound to ``RESTStream._request`` and reads whole
bodies, so this module keeps the SDK's ``OAuthAuthenticator`` (token state,
header injection) and does its own small retry loop, which also honours
``Retry-After``.

Rules that hold for every request:

* ``Authorization`` and ``x-api-key`` go to the API host only.
* URLs are logged as host + path; query strings (pre-signed signatures) never.
* Secrets and tokens are never put into a message.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests
import urllib3
from singer_sdk.authenticators import OAuthAuthenticator
from singer_sdk.helpers._util import utc_now

from tap_alida import __version__
from tap_alida.errors import APIError, AuthenticationError, NotFoundError, StoppedError, StorageLinkError
from tap_alida.links import may_be_link, peek_link
from tap_alida.settings import AlidaSettings

logger = logging.getLogger("tap_alida.client")

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
# Refresh the token this long before Alida says it expires: exports, polls and
# downloads easily outlive a token, and a token that dies mid-request costs a retry.
TOKEN_EXPIRY_MARGIN_SECONDS = 120
# A 401 renews the token and repeats the request, up to this many times per
# request: with exports in parallel, a token this request renewed can already
# have expired under another thread's request. A refused credential fails after.
MAX_RENEWALS_AFTER_401 = 3

# Sees every HTTP response (token, API, storage) as it arrives, before retries
# decide anything: ``(response, streamed)``; a streamed body is not read yet.
# Only the contract probe (``probe``) sets one; it must not read streamed bodies.
Observer = Callable[[requests.Response, bool], None]


# Set when the run is stopping: worker threads blocked in a poll interval or a
# backoff wake up and give up, so a failed run exits at once instead of waiting
# for exports it no longer needs.
STOP = threading.Event()


def sleep(seconds: float) -> None:
    """``time.sleep`` that raises StoppedError as soon as the run is stopping."""
    if STOP.wait(max(0.0, seconds)):
        raise StoppedError("The run is stopping.")


_QUERY = re.compile(r"\?[^\s\"']*")


class RedactQueryStrings(logging.Filter):
    """Strips query strings from log records: urllib3 logs each request line at DEBUG,
    and a pre-signed storage URL's query string is a credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = _QUERY.sub("?<redacted>", message), None
        return True


logging.getLogger("urllib3.connectionpool").addFilter(RedactQueryStrings())


def safe_url(url: str) -> str:
    """``scheme://host/path`` of a URL: no query string (signatures), no credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


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


class RetryPolicy:
    """When and how long to wait before trying a request again.

    Capped exponential backoff with jitter (1, 2, 4 … 60 s, times 0.5-1.0) for
    5xx, timeouts and dropped connections; a 429's ``Retry-After`` (seconds or an
    HTTP date) is honoured up to ``max_retry_after_seconds``, beyond which the run
    fails rather than sleeping for an unknown time. ``max_request_attempts``
    bounds the tries. Shared by API calls, the token call and storage downloads,
    so every path retries the same way and logs the same line.
    """

    def __init__(self, settings: AlidaSettings) -> None:
        self.max_attempts = settings.max_attempts
        self.max_retry_after = settings.max_retry_after

    def backoff(self, attempt: int) -> float:
        return min(2.0 ** (attempt - 1), 60.0) * (0.5 + random.random() / 2)

    def pause(self, attempt: int, what: str, reason: str, response: requests.Response | None) -> None:
        """Sleep before try ``attempt + 1``, or raise APIError when the tries are used up."""
        if attempt >= self.max_attempts:
            msg = (
                f"Could not {what} after {attempt} attempts (last: {reason}). Alida or the "
                "network is failing; rerun later or raise 'max_request_attempts'."
            )
            raise APIError(msg, status=response.status_code if response is not None else None)
        wait = self.backoff(attempt)
        if response is not None and response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                if retry_after > self.max_retry_after:
                    msg = (
                        f"Alida rate-limited the request to {what} and asked to wait "
                        f"{retry_after:.0f} s, more than 'max_retry_after_seconds' "
                        f"({self.max_retry_after:.0f} s). Rerun later or raise that setting."
                    )
                    raise APIError(msg, status=429)
                wait = retry_after
        logger.warning(
            "Could not %s (%s); retry %d of %d in %.1f s.",
            what,
            reason,
            attempt,
            self.max_attempts - 1,
            wait,
        )
        sleep(wait)


class AlidaAuthenticator(OAuthAuthenticator):
    """OAuth2 client-credentials token for Alida, renewed ahead of expiry.

    Client id and secret go as HTTP Basic (what third-party clients do) with the
    form body ``grant_type=client_credentials``; ``x-api-key`` is added when set.
    """

    def __init__(self, settings: AlidaSettings, retry: RetryPolicy) -> None:
        headers = {"User-Agent": f"tap-alida/{__version__}"}
        if settings.api_key:
            headers["x-api-key"] = settings.api_key
        super().__init__(
            auth_endpoint=settings.token_url,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            oauth_headers=headers,
            default_expiration=3600,
        )
        self._timeout = settings.timeout
        self._retry = retry
        self.observer: Observer | None = None

    @property
    def oauth_request_body(self) -> dict:
        return {"grant_type": "client_credentials"}

    def is_token_valid(self) -> bool:
        if self.last_refreshed is None or self.access_token is None:
            return False
        if not self.expires_in:
            return True
        age = (utc_now() - self.last_refreshed).total_seconds()
        margin = min(TOKEN_EXPIRY_MARGIN_SECONDS, self.expires_in / 4)
        return age < self.expires_in - margin

    def invalidate(self) -> None:
        """Forget the token so the next request fetches a new one (after a 401)."""
        self.last_refreshed = None
        self.access_token = None

    def update_access_token(self) -> None:
        """Fetch a token; refused credentials become one clear, secret-free error.

        Replaces the SDK's version, which logs the response body and raises a bare
        RuntimeError, and whose retrying session covers https only.
        """
        request_time = utc_now()
        what = "obtain an access token"
        attempt = 0
        while True:
            attempt += 1
            try:
                response = requests.post(
                    self.auth_endpoint,
                    data=self.oauth_request_payload,
                    auth=(self.client_id or "", self.client_secret or ""),
                    headers=self._oauth_headers,
                    timeout=self._timeout,
                )
            except TRANSIENT_ERRORS as exc:
                try:
                    self._retry.pause(attempt, what, type(exc).__name__, None)
                except APIError:
                    msg = (
                        f"Could not reach the Alida token endpoint {safe_url(self.auth_endpoint)} "
                        f"({type(exc).__name__}). Check 'region'/'api_url' and 'token_url', "
                        "and that this machine can reach the host."
                    )
                    raise AuthenticationError(msg) from None
                continue
            if self.observer is not None:
                self.observer(response, False)
            if response.status_code not in RETRY_STATUSES:
                break
            response.close()
            self._retry.pause(attempt, what, f"HTTP {response.status_code}", response)
        if response.status_code >= 400:
            msg = (
                f"Alida refused the token request (HTTP {response.status_code} from "
                f"{safe_url(self.auth_endpoint)}: {error_detail(response)}). Check 'client_id' "
                "and 'client_secret' (an API credential from Product Settings > API), 'api_key' "
                "if your community needs one, and that 'region'/'api_url' is your community's region."
            )
            raise AuthenticationError(msg)
        try:
            token = response.json()
            self.access_token = str(token["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            msg = (
                f"The token endpoint {safe_url(self.auth_endpoint)} answered without an "
                "access_token; check 'token_url'."
            )
            raise AuthenticationError(msg) from exc
        expires = token.get("expires_in", self._default_expiration)
        self.expires_in = int(expires) if expires else None
        self.last_refreshed = request_time
        logger.info("Obtained an access token (valid %s s).", self.expires_in)


class AlidaClient:
    """Authenticated JSON calls to one community, with retries."""

    def __init__(self, settings: AlidaSettings) -> None:
        self.settings = settings
        self.retry = RetryPolicy(settings)
        self.authenticator = AlidaAuthenticator(settings, self.retry)
        # Exports run in worker threads; a requests.Session is not documented as
        # thread-safe, so each thread gets its own (and the token is shared under a lock).
        self._local = threading.local()
        self._auth_lock = threading.Lock()
        self._api_host = urlsplit(settings.base_url).netloc.lower()
        self.observer: Observer | None = None  # see Observer

    def _sessions(self) -> tuple[requests.Session, requests.Session]:
        sessions = getattr(self._local, "sessions", None)
        if sessions is None:
            api, storage = requests.Session(), requests.Session()
            api.headers["User-Agent"] = storage.headers["User-Agent"] = f"tap-alida/{__version__}"
            sessions = self._local.sessions = (api, storage)
        return sessions

    @property
    def session(self) -> requests.Session:
        """This thread's session for the API host."""
        return self._sessions()[0]

    @property
    def storage_session(self) -> requests.Session:
        """This thread's session for storage hosts: it never carries credentials."""
        return self._sessions()[1]

    # -- URLs ---------------------------------------------------------------------

    def url(self, version: str, path: str) -> str:
        """``{base}/{version}/applications/{community}/{path}``."""
        community = quote(self.settings.community, safe="")
        return f"{self.settings.base_url}/{version}/applications/{community}/{path.lstrip('/')}"

    def is_api_host(self, url: str) -> bool:
        return urlsplit(url).netloc.lower() == self._api_host

    # -- requests -----------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        stream: bool = False,
        allow_redirects: bool = True,
        ok_statuses: tuple[int, ...] = (),
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send an authenticated request to the API host and return a 2xx/3xx response.

        ``what`` names the call in messages ("create the batch for activity X").
        Retries 429 (honouring ``Retry-After``), 5xx, timeouts and dropped
        connections; renews the token on a 401 (at most 3 times) and repeats the
        request. 404 raises NotFoundError, any other 4xx APIError.
        """
        if not self.is_api_host(url):
            msg = f"Refusing to send credentials to {safe_url(url)}: not the API host."
            raise APIError(msg)
        renewals_after_401 = stale_401s = 0
        attempt = 0
        while True:
            attempt += 1
            sent = {"Accept": "application/json", **(headers or {})}
            if self.settings.api_key:
                sent["x-api-key"] = self.settings.api_key
            try:
                prepared = self.session.prepare_request(
                    requests.Request(method, url, headers=sent, json=json, params=params)
                )
                with self._auth_lock:
                    self.authenticator.authenticate_request(prepared)
                    token_used = self.authenticator.access_token
                response = self.session.send(
                    prepared,
                    timeout=self.settings.timeout,
                    stream=stream,
                    allow_redirects=allow_redirects,
                )
            except TRANSIENT_ERRORS as exc:
                self.retry.pause(attempt, what, f"{type(exc).__name__}", None)
                continue
            if self.observer is not None:
                self.observer(response, stream)
            status = response.status_code
            if status < 400 or status in ok_statuses:
                return response
            if status == 401:
                with self._auth_lock:
                    # Another thread may have renewed the token since this request
                    # was sent: then just repeat the request with the new one.
                    renewed_elsewhere = self.authenticator.access_token != token_used
                    renew = not renewed_elsewhere and renewals_after_401 < MAX_RENEWALS_AFTER_401
                    if renew:
                        self.authenticator.invalidate()
                if renew or (renewed_elsewhere and stale_401s < self.settings.max_attempts):
                    response.close()
                    if renew:
                        renewals_after_401 += 1
                        logger.info("HTTP 401 while trying to %s; renewing the token and retrying.", what)
                    else:
                        stale_401s += 1
                    continue
            if status in RETRY_STATUSES:
                detail = error_detail(response)
                response.close()
                self.retry.pause(attempt, what, f"HTTP {status}: {detail}", response)
                continue
            detail = error_detail(response)
            response.close()
            error_cls = NotFoundError if status == 404 else APIError
            msg = f"Could not {what}: HTTP {status} from {safe_url(url)}: {detail}"
            raise error_cls(msg, status=status)

    def get_json(self, url: str, *, what: str, params: Mapping[str, Any] | None = None) -> Any:
        response = self.request("GET", url, what=what, params=params)
        try:
            return response.json()
        except ValueError as exc:
            msg = f"Could not {what}: {safe_url(url)} did not answer with JSON."
            raise APIError(msg) from exc

    def iter_collection(self, url: str, *, what: str, page_size: int = 1000) -> Iterator[dict]:
        """Every item of a §7.1 collection, following ``links[rel=next]`` or offsets."""
        params: dict[str, Any] | None = {"limit": page_size, "offset": 0}
        seen_urls: set[str] = set()
        while True:
            page = self.get_json(url, what=what, params=params)
            items = page.get("items", []) if isinstance(page, Mapping) else page
            if not isinstance(items, list):
                msg = f"Could not {what}: the response has no 'items' list."
                raise APIError(msg)
            yield from items
            if not isinstance(page, Mapping) or not items:
                return
            links = page.get("links")
            if isinstance(links, list):
                # The server pages with links: no 'next' link means the last page.
                next_link = next(
                    (
                        urljoin(url, str(link["href"]))
                        for link in links
                        if isinstance(link, Mapping) and link.get("rel") == "next" and link.get("href")
                    ),
                    None,
                )
                if next_link is None or next_link in seen_urls:
                    return
                seen_urls.add(next_link)
                url, params = next_link, None
                continue
            raw_meta = page.get("meta")
            meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
            limit = int(meta.get("limit") or page_size)
            offset = int(meta.get("offset") or 0) + len(items)
            if len(items) < limit or ("count" in meta and offset >= int(meta["count"])):
                return
            params = {"limit": page_size, "offset": offset}

    # -- files --------------------------------------------------------------------

    def open_file(
        self, link: str, *, what: str, headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """Open an export file for streaming, resolving its link just before the GET.

        The files route on the API host may answer 3xx with a storage URL
        (usually pre-signed, which rejects a foreign Authorization header), 200
        with JSON ``{"url": …}`` (§12b), or the file itself (see ``links``). Only
        API-host hops are authenticated. Every call resolves the link anew, so a
        storage link is never kept across a wait or a resume.
        """
        url = link
        for _ in range(5):
            if self.is_api_host(url):
                response, found = self._files_route(url, what=what, headers=headers)
                if found is not None:
                    url = urljoin(url, found)
                    logger.debug("The files route answered with a link to %s.", safe_url(url))
                    continue
            else:
                response = self._storage_get(url, what=what, headers=headers)
            if response.is_redirect and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                response.close()
                continue
            return response
        msg = f"Could not {what}: too many redirects or links."
        raise APIError(msg)

    def _files_route(
        self, url: str, *, what: str, headers: Mapping[str, str] | None
    ) -> tuple[requests.Response, str | None]:
        """GET an API-host file URL: the response, and the link when it answered with one."""
        attempt = 0
        while True:
            attempt += 1
            response = self.request(
                "GET",
                url,
                what=what,
                stream=True,
                allow_redirects=False,
                ok_statuses=(416,),
                headers={"Accept": "*/*", **(headers or {})},
            )
            if not may_be_link(response):
                return response, None
            try:
                found = peek_link(response)
            except (*TRANSIENT_ERRORS, *STREAM_ERRORS) as exc:
                response.close()
                self.retry.pause(attempt, what, type(exc).__name__, None)
                continue
            if found is not None:
                response.close()
            return response, found

    def _storage_get(self, url: str, *, what: str, headers: Mapping[str, str] | None) -> requests.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.storage_session.get(
                    url,
                    headers=dict(headers or {}),
                    stream=True,
                    allow_redirects=False,
                    timeout=self.settings.timeout,
                )
            except TRANSIENT_ERRORS as exc:
                self.retry.pause(attempt, what, type(exc).__name__, None)
                continue
            if self.observer is not None:
                self.observer(response, True)
            if response.status_code < 400 or response.status_code == 416:
                return response
            detail = f"HTTP {response.status_code} from storage host {safe_url(url)}"
            response.close()
            if response.status_code in RETRY_STATUSES:
                self.retry.pause(attempt, what, detail, response)
                continue
            if response.status_code in (400, 401, 403):
                # Pre-signed links expire (S3 answers 400 or 403); the caller fetches a fresh one.
                raise StorageLinkError(f"Could not {what}: {detail}.", status=response.status_code)
            raise APIError(f"Could not {what}: {detail}.", status=response.status_code)


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
