"""The OAuth2 client-credentials token, renewed ahead of expiry and after a 401.

Why the SDK's ``OAuthAuthenticator`` is kept but its token request replaced: it
keeps the token state and puts the header on requests, but its request logs the
response body, raises a bare RuntimeError, and retries https only.
"""

from __future__ import annotations

import datetime as dt
import logging

import requests
from singer_sdk.authenticators import OAuthAuthenticator

from tap_alida import __version__
from tap_alida.errors import AuthenticationError
from tap_alida.http.policy import (
    TOKEN,
    TRANSIENT_ERRORS,
    Action,
    Observer,
    RetryPolicy,
    decide,
    error_detail,
)
from tap_alida.http.urls import safe_url
from tap_alida.sdk import oauth_headers
from tap_alida.settings import AlidaSettings

logger = logging.getLogger("tap_alida.http.auth")

# Refresh the token this long before Alida says it expires: exports, polls and
# downloads easily outlive a token, and a token that dies mid-request costs a retry.
TOKEN_EXPIRY_MARGIN_SECONDS = 120
# A token answer without ``expires_in`` (docs/api.md §1.3 says it has one) is taken
# to live an hour. The tap's own constant rather than the SDK's private
# ``_default_expiration``: the tap reads the token answer itself (update_access_token).
DEFAULT_TOKEN_SECONDS = 3600


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
            default_expiration=DEFAULT_TOKEN_SECONDS,
        )
        self._timeout = settings.timeout
        self._retry = retry
        self.observer: Observer | None = None

    @property
    def oauth_request_body(self) -> dict[str, str]:
        return {"grant_type": "client_credentials"}

    def is_token_valid(self) -> bool:
        if self.last_refreshed is None or self.access_token is None:
            return False
        if not self.expires_in:
            return True
        age = (dt.datetime.now(dt.UTC) - self.last_refreshed).total_seconds()
        margin = min(TOKEN_EXPIRY_MARGIN_SECONDS, self.expires_in / 4)
        return age < self.expires_in - margin

    def invalidate(self) -> None:
        """Forget the token so the next request fetches a new one (after a 401)."""
        self.last_refreshed = None
        self.access_token = None

    def _token_response(self, what: str) -> requests.Response:
        """The token endpoint's answer, after retrying dropped connections and 429/5xx."""
        retries = self._retry.attempts(what)
        for attempt in retries:
            try:
                response = requests.post(
                    self.auth_endpoint,
                    data=self.oauth_request_payload,
                    auth=(self.client_id or "", self.client_secret or ""),
                    headers=oauth_headers(self),
                    timeout=self._timeout,
                )
            except TRANSIENT_ERRORS as exc:
                why = self._retry.first_contact_failed(self.auth_endpoint, exc)
                if why is not None:
                    msg = (
                        f"Could not connect to the Alida token endpoint {safe_url(self.auth_endpoint)}: "
                        f"{why}. Check 'region'/'api_url' and 'token_url', and that this machine "
                        "can reach the host."
                    )
                    raise AuthenticationError(msg) from None
                attempt.failed(type(exc).__name__)
                continue
            self._retry.answered(self.auth_endpoint)
            if self.observer is not None:
                self.observer(response, False)
            if decide(TOKEN, response.status_code) is not Action.RETRY:
                return response
            response.close()
            attempt.failed(f"HTTP {response.status_code}", response)
        if retries.last.response is None:  # the connection kept breaking: a network problem
            msg = (
                f"Could not reach the Alida token endpoint {safe_url(self.auth_endpoint)} "
                f"({retries.last.reason}). Check 'region'/'api_url' and 'token_url', "
                "and that this machine can reach the host."
            )
            raise AuthenticationError(msg)
        raise retries.gave_up()

    def update_access_token(self) -> None:
        """Fetch a token; refused credentials become one clear, secret-free error.

        Replaces the SDK's version, which logs the response body and raises a bare
        RuntimeError, and whose retrying session covers https only.
        """
        request_time = dt.datetime.now(dt.UTC)
        what = "obtain an access token"
        response = self._token_response(what)
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
        expires = token.get("expires_in", DEFAULT_TOKEN_SECONDS)
        self.expires_in = int(expires) if expires else None
        self.last_refreshed = request_time
        logger.info("Obtained an access token (valid %s s).", self.expires_in)
