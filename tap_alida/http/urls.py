"""URLs as the tap writes and logs them: path segments quoted, query strings never logged.

A pre-signed storage URL's query string is a credential: log lines carry
``scheme://host/path`` only, and urllib3's own DEBUG request lines are filtered.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, urlsplit

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


def segment(value: str) -> str:
    """``value`` quoted as one URL path segment (every reserved character escaped)."""
    return quote(str(value), safe="")
