"""Requests to Alida: the API host with credentials, storage hosts without.

Why not ``RESTStream``'s request machinery: the tap calls the API at discovery
time and from the export-job lifecycle, outside any stream, and it must download
files with ``stream=True`` without credentials after a cross-host redirect. The
SDK's backoff decorator is bound to ``RESTStream._request`` and reads whole
bodies, so this module keeps the SDK's ``OAuthAuthenticator`` (token state,
header injection, ``auth``) and asks one policy (``policy.decide``) what each
answer means: retry, renew the token, get a fresh link, or fail.

Rules that hold for every request:

* ``Authorization`` and ``x-api-key`` go to the API host only.
* URLs are logged as host + path; query strings (pre-signed signatures) never.
* Secrets and tokens are never put into a message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests

from tap_alida import __version__
from tap_alida.errors import APIError, NotFoundError, StorageLinkError
from tap_alida.http.auth import AlidaAuthenticator
from tap_alida.http.links import files_route_location, may_be_link, peek_link
from tap_alida.http.paging import NextPage, Pager
from tap_alida.http.paging import signals as page_signals
from tap_alida.http.policy import (
    API,
    STORAGE,
    STREAM_ERRORS,
    TRANSIENT_ERRORS,
    Action,
    Observer,
    RetryPolicy,
    decide,
    error_detail,
    may_have_acted,
)
from tap_alida.http.urls import safe_url
from tap_alida.settings import AlidaSettings
from tap_alida.stop import RunStop

logger = logging.getLogger("tap_alida.http.client")

# A 401 renews the token and repeats the request, up to this many times per
# request: with exports in parallel, a token this request renewed can already
# have expired under another thread's request. A refused credential fails after.
MAX_RENEWALS_AFTER_401 = 3


class AlidaClient:
    """Authenticated JSON calls to one community, with retries."""

    def __init__(self, settings: AlidaSettings, stop: RunStop | None = None) -> None:
        self.settings = settings
        # Waits of this client (backoffs, polls, downloads) end when its run stops.
        self.stop = stop or RunStop()
        self.retry = RetryPolicy(settings, self.stop)
        self.authenticator = AlidaAuthenticator(settings, self.retry)
        # Exports run in worker threads; a requests.Session is not documented as
        # thread-safe, so each thread gets its own (and the token is shared under a lock).
        self._local = threading.local()
        self._auth_lock = threading.Lock()
        self._api_host = urlsplit(settings.base_url).netloc.lower()
        self.observer: Observer | None = None  # see policy.Observer

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
        renewals = _Renewals(self.settings.max_attempts)
        retries = self.retry.attempts(what)
        for attempt in retries:
            try:
                response, token_used = self._send(
                    requests.Request(method, url, headers=self._headers(headers), json=json, params=params),
                    stream=stream,
                    allow_redirects=allow_redirects,
                )
            except TRANSIENT_ERRORS as exc:
                self._fail_at_first_contact(url, what, exc)
                self._warn_if_repeated(method, what, type(exc).__name__, exc=exc)
                attempt.failed(type(exc).__name__)
                continue
            self.retry.answered(url)
            if self.observer is not None:
                self.observer(response, stream)
            status = response.status_code
            action = Action.OK if status in ok_statuses else decide(API, status)
            if action is Action.OK:
                return response
            if action is Action.RENEW_TOKEN and self._renew(token_used, renewals, what):
                response.close()
                continue  # a try without a wait
            detail = error_detail(response)
            response.close()
            if action is Action.RETRY:
                reason = f"HTTP {status}: {detail}"
                self._warn_if_repeated(method, what, reason, status=status)
                attempt.failed(reason, response)
                continue
            error_cls = NotFoundError if action is Action.NOT_FOUND else APIError
            msg = f"Could not {what}: HTTP {status} from {safe_url(url)}: {detail}"
            raise error_cls(msg, status=status)
        raise retries.gave_up()

    def _fail_at_first_contact(self, url: str, what: str, exc: BaseException) -> None:
        """Raise APIError at once when the API host never answered and cannot be reached
        (``RetryPolicy.first_contact_failed``): a wrong URL is not retried for a minute."""
        why = self.retry.first_contact_failed(url, exc)
        if why is not None:
            msg = (
                f"Could not {what}: could not connect to {safe_url(url)}: {why}. Check "
                "'region'/'api_url', and that this machine can reach the host."
            )
            raise APIError(msg) from None

    def _headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        sent = {"Accept": "application/json", **(headers or {})}
        if self.settings.api_key:
            sent["x-api-key"] = self.settings.api_key
        return sent

    def _send(
        self, request: requests.Request, *, stream: bool, allow_redirects: bool
    ) -> tuple[requests.Response, str | None]:
        """One authenticated request; also returns the token it carried."""
        prepared = self.session.prepare_request(request)
        with self._auth_lock:
            self.authenticator.authenticate_request(prepared)
            token_used = self.authenticator.access_token
        response = self.session.send(
            prepared, timeout=self.settings.timeout, stream=stream, allow_redirects=allow_redirects
        )
        return response, token_used

    def _renew(self, token_used: str | None, renewals: _Renewals, what: str) -> bool:
        """After a 401: renew the token (or use one another thread renewed); False when spent."""
        with self._auth_lock:
            # Another thread may have renewed the token since this request was
            # sent: then just repeat the request with the new one.
            renewed_elsewhere = self.authenticator.access_token != token_used
            renew = not renewed_elsewhere and renewals.renewed < MAX_RENEWALS_AFTER_401
            if renew:
                self.authenticator.invalidate()
        if renew:
            renewals.renewed += 1
            logger.info("HTTP 401 while trying to %s; renewing the token and retrying.", what)
            return True
        if renewed_elsewhere and renewals.stale < renewals.max_stale:
            renewals.stale += 1
            return True
        return False

    @staticmethod
    def _warn_if_repeated(
        method: str, what: str, reason: str, *, exc: BaseException | None = None, status: int | None = None
    ) -> None:
        """A POST that Alida may already have acted on is repeated only with a WARNING that
        a duplicate may exist (``policy.may_have_acted``)."""
        if method == "POST" and may_have_acted(status, exc):
            logger.warning(
                "The request to %s may have reached Alida before it failed (%s); Alida offers no way "
                "to check, so it is sent again and a duplicate export may exist on Alida's side.",
                what,
                reason,
            )

    def get_json(self, url: str, *, what: str, params: Mapping[str, Any] | None = None) -> Any:
        response = self.request("GET", url, what=what, params=params)
        try:
            return response.json()
        except ValueError as exc:
            msg = f"Could not {what}: {safe_url(url)} did not answer with JSON."
            raise APIError(msg) from exc

    def iter_collection(self, url: str, *, what: str, page_size: int = 1000) -> Iterator[Any]:
        """Every item of a §7.1 collection, following ``links[rel=next]`` or offsets.

        Which signal wins when they disagree (an empty ``links`` list while
        ``meta.count`` says more, a capped ``limit``, a repeated page) is
        ``paging.Pager``'s decision. Ending short of ``meta.count`` is a WARNING:
        items the tap could not reach are not silently lost.
        """
        pager = Pager(url, page_size)
        request: NextPage | None = pager.first()
        count: int | None = None
        while request is not None:
            page = self.get_json(request.url, what=what, params=request.params)
            items = page.get("items", []) if isinstance(page, Mapping) else page
            if not isinstance(items, list):
                msg = f"Could not {what}: the response has no 'items' list."
                raise APIError(msg)
            if pager.is_repeat(items):
                break
            yield from items
            if not isinstance(page, Mapping):
                return
            signals = page_signals(page, request.url)
            count = signals.count if signals.count is not None else count
            request = pager.after(request.url, items, signals)
        if count is not None and pager.items_seen < count:
            why = "served a page again" if pager.repeated else "sent an empty page"
            logger.warning(
                "Could not %s completely: the API says %d items exist, but it %s after %d of them "
                "(it may ignore 'offset'); going on with those %d.",
                what,
                count,
                why,
                pager.items_seen,
                pager.items_seen,
            )
        elif pager.repeated:
            logger.info("While trying to %s the API served a page again; that is taken as the end.", what)

    # -- files --------------------------------------------------------------------

    def open_file(
        self, link: str, *, what: str, headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """Open an export file for streaming, resolving its link just before the GET.

        The files route on the API host may answer 3xx with a storage URL
        (usually pre-signed, which rejects a foreign Authorization header), any
        status with a ``Location`` header, 200 with JSON ``{"url": …}`` (§12b),
        or the file itself (see ``links``). Only
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
        """GET an API-host file URL: the response, and the link when it answered with one.

        A ``Location`` header is the link whatever the status (``files_route_location``);
        else a 200 JSON body may hold it (``peek_link``).
        """
        retries = self.retry.attempts(what)
        for attempt in retries:
            response = self.request(
                "GET",
                url,
                what=what,
                stream=True,
                allow_redirects=False,
                ok_statuses=(416,),
                headers={"Accept": "*/*", **(headers or {})},
            )
            location = files_route_location(response)
            if location is not None:
                response.close()
                return response, location
            if not may_be_link(response):
                return response, None
            try:
                found = peek_link(response)
            except (*TRANSIENT_ERRORS, *STREAM_ERRORS) as exc:
                response.close()
                attempt.failed(type(exc).__name__)
                continue
            if found is not None:
                response.close()
            return response, found
        raise retries.gave_up()

    def _storage_get(self, url: str, *, what: str, headers: Mapping[str, str] | None) -> requests.Response:
        retries = self.retry.attempts(what)
        for attempt in retries:
            try:
                response = self.storage_session.get(
                    url,
                    headers=dict(headers or {}),
                    stream=True,
                    allow_redirects=False,
                    timeout=self.settings.timeout,
                )
            except TRANSIENT_ERRORS as exc:
                attempt.failed(type(exc).__name__)
                continue
            if self.observer is not None:
                self.observer(response, True)
            status = response.status_code
            action = Action.OK if status == 416 else decide(STORAGE, status)
            if action is Action.OK:
                return response
            detail = f"HTTP {status} from storage host {safe_url(url)}"
            response.close()
            if action is Action.RETRY:
                attempt.failed(detail, response)
                continue
            if action is Action.NEW_LINK:
                # Pre-signed links expire (S3 answers 400 or 403); the caller fetches a fresh one.
                raise StorageLinkError(f"Could not {what}: {detail}.", status=status)
            raise APIError(f"Could not {what}: {detail}.", status=status)
        raise retries.gave_up()


class _Renewals:
    """Token renewals after a 401, counted per request."""

    def __init__(self, max_stale: int) -> None:
        self.renewed = 0  # renewals this request made
        self.stale = 0  # repeats with a token another thread renewed
        self.max_stale = max_stale
