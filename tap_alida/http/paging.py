"""Which page of a §7.1 collection comes next, whatever paging signals a tenant sends.

The documented envelope is ``{items, links: [{href, rel}], meta: {limit, offset,
count}}`` (``docs/api.md`` §7.1: "follow ``links[rel=next]`` or step ``offset``
by ``limit``"), but no single signal can be trusted on its own:

* Alida lists ``links`` as "always empty" on some resources (§7.2), so an empty
  (or missing) ``next`` link does not win over ``meta`` saying more items exist;
* a ``next`` link is followed even without ``meta``;
* a server may cap ``limit`` below what was asked (max 1000, or less), so a page
  shorter than asked is not the end: the end is ``meta.count`` reached, a page
  shorter than the server's own ``meta.limit``, or, with neither, an empty page
  (whether ``meta.count`` counts every item or the page's is UNKNOWN, §7.1: a
  count no larger than the page is not trusted as the total when a limit is given);
* a server that ignores ``offset`` (or links back to a page already read)
  repeats a page: a page seen before is not yielded again and ends the paging.

Pure logic (no I/O), so every combination is unit-tested; ``AlidaClient.iter_collection``
does the requests, and ``--probe`` names the variant a tenant uses (``describe``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin


@dataclass(frozen=True)
class PageSignals:
    """What one answer says about the pages after it (None: not said)."""

    next_link: str | None
    links_listed: bool  # the answer has a non-empty 'links' list (a server that pages with links)
    count: int | None
    offset: int | None
    limit: int | None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def signals(page: Any, url: str) -> PageSignals:
    """The paging signals of a decoded answer (``url``: the request's, to resolve a relative href)."""
    body: Mapping[str, Any] = page if isinstance(page, Mapping) else {}
    links = body.get("links")
    links = links if isinstance(links, list) else []
    next_link = next(
        (
            urljoin(url, str(link["href"]))
            for link in links
            if isinstance(link, Mapping)
            and str(link.get("rel", "")).lower() == "next"
            and str(link.get("href") or "").strip()
        ),
        None,
    )
    raw_meta = body.get("meta")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    return PageSignals(
        next_link=next_link,
        links_listed=bool(links),
        count=_int(meta.get("count")),
        offset=_int(meta.get("offset")),
        limit=_int(meta.get("limit")),
    )


def fingerprint(items: list[Any]) -> str:
    """A digest of a page's items: the same page served twice has the same one."""
    text = json.dumps(items, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class NextPage:
    """The request for the next page: a link to follow (``params`` None) or an offset."""

    url: str
    params: dict[str, Any] | None


class Pager:
    """The paging state of one collection read: where to go next, and what was already seen."""

    def __init__(self, url: str, page_size: int) -> None:
        self.url = url
        self.page_size = page_size
        self.offset = 0  # the offset of the page just requested (after a link: as far as the tap knows)
        self.items_seen = 0
        self._pages: set[str] = set()
        self._links: set[str] = set()
        self.repeated = False  # paging ended on a page (or link) already seen

    def first(self) -> NextPage:
        return NextPage(self.url, {"limit": self.page_size, "offset": 0})

    def is_repeat(self, items: list[Any]) -> bool:
        """Whether this page was served before (then it is not yielded and paging ends)."""
        digest = fingerprint(items)
        if digest in self._pages:
            self.repeated = True
            return True
        self._pages.add(digest)
        return False

    def after(self, url: str, items: list[Any], page: PageSignals) -> NextPage | None:
        """The next page after ``items`` (read from ``url``), or None at the end."""
        self.items_seen += len(items)
        if not items:
            return None
        # The tap's own offset, not meta.offset: a server that ignores 'offset' is caught
        # as a repeated page, whatever its meta says.
        following = self.offset + len(items)
        if page.next_link is not None:
            if page.next_link in self._links or page.next_link == url:
                self.repeated = True
                return None
            self._links.add(page.next_link)
            self.offset = following
            return NextPage(page.next_link, None)
        if page.count is not None and page.count > len(items):
            more = following < page.count  # a count of every item (it exceeds this page)
        elif page.limit is not None:
            # A full page of the server's own limit. Also where meta.count may be this
            # page's count rather than the total (docs/api.md §7.1: unknown).
            more = len(items) >= page.limit
        elif page.count is not None:
            more = following < page.count
        else:
            # No count and no limit: a page of links without 'next' is the last; with no
            # signal at all, a short page may be a capped limit, so only an empty page ends.
            more = not page.links_listed
        if not more:
            return None
        self.offset = following
        return NextPage(self.url, {"limit": self.page_size, "offset": following})


def describe(page: PageSignals, items: int, asked: int) -> str:
    """The paging variant a first page shows, in words (``--probe``)."""
    if page.next_link is not None:
        how = "links[rel=next]" + (" with meta" if page.count is not None else ", no meta.count")
    elif page.count is not None:
        how = "meta offset/count" + (", links without next" if page.links_listed else ", links empty")
        if items >= page.count:
            how += " (one page)"
    elif page.limit is not None:
        how = "meta offset/limit, no count"
    elif page.links_listed:
        how = "links without next and no meta (one page)"
    else:
        how = "no links and no meta (offset until an empty page)"
    served = page.limit if page.limit is not None else items
    if served < asked and (page.next_link is not None or (page.count or 0) > items):
        how += f"; limit capped at {served} (asked {asked})"
    return how
