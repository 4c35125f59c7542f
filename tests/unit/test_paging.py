"""The paging matrix (``tap_alida.http.paging``): every combination of links, meta, capped
limits and repeated pages, against a small in-memory collection server.

The loop ``read`` is ``AlidaClient.iter_collection``'s, without HTTP (the e2e tier
runs the real one against the sandbox's paging quirks).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tap_alida.http.paging import Pager, describe, signals

BASE = "https://api.example/v1/applications/c/membervariables"


def serve(
    url: str,
    params: dict[str, Any] | None,
    *,
    total: int,
    cap: int = 1000,
    links: str = "next",  # next | empty | missing | no_next (first/prev only)
    meta: str = "full",  # full | missing | no_count | page_count
    ignore_offset: bool = False,
) -> dict[str, Any]:
    """One page of ``total`` items as a tenant with these habits would answer it."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    query.update({k: str(v) for k, v in (params or {}).items()})
    limit = min(int(query.get("limit", 20)), cap)
    offset = 0 if ignore_offset else int(query.get("offset", 0))
    items = [{"id": f"v{i}"} for i in range(offset, min(offset + limit, total))]
    body: dict[str, Any] = {"items": items}
    if links == "next":
        body["links"] = [{"href": f"{BASE}?limit={limit}&offset=0", "rel": "first"}]
        if offset + limit < total:
            body["links"].append({"href": f"?limit={limit}&offset={offset + limit}", "rel": "next"})
    elif links == "empty":
        body["links"] = []
    elif links == "no_next":
        body["links"] = [{"href": f"{BASE}?limit={limit}&offset=0", "rel": "first"}]
    if meta == "full":
        body["meta"] = {"limit": limit, "offset": offset, "count": total}
    elif meta == "no_count":
        body["meta"] = {"limit": limit, "offset": offset}
    elif meta == "page_count":  # meta.count as the page's count, not the total (§7.1: UNKNOWN)
        body["meta"] = {"limit": limit, "offset": offset, "count": len(items)}
    return body


CAPPED = "; limit capped at 2 (asked 20)"


def read(page_size: int = 1000, **server: Any) -> tuple[list[str], int, Pager]:
    """Every item id the tap reads, the number of requests, and the pager."""
    pager = Pager(BASE, page_size)
    request = pager.first()
    got: list[str] = []
    requests = 0
    while request is not None:
        requests += 1
        assert requests < 100, "paging does not end"
        page = serve(request.url, request.params, **server)
        if pager.is_repeat(page["items"]):
            break
        got += [item["id"] for item in page["items"]]
        request = pager.after(request.url, page["items"], signals(page, request.url))
    return got, requests, pager


def ids(n: int) -> list[str]:
    return [f"v{i}" for i in range(n)]


@pytest.mark.parametrize(
    ("server", "requests"),
    [
        # documented: next links and meta
        ({"links": "next", "meta": "full"}, 1),
        ({"links": "next", "meta": "full", "cap": 2}, 3),
        # links empty while meta says more: meta wins (the bug of issue #22: 2 of 5 read)
        ({"links": "empty", "meta": "full", "cap": 2}, 3),
        ({"links": "missing", "meta": "full", "cap": 2}, 3),
        ({"links": "no_next", "meta": "full", "cap": 2}, 3),
        # a next link without meta is followed
        ({"links": "next", "meta": "missing", "cap": 2}, 3),
        ({"links": "next", "meta": "no_count", "cap": 2}, 3),
        # capped limit with neither links nor count: the server's meta.limit, else an empty page
        ({"links": "empty", "meta": "no_count", "cap": 2}, 3),
        ({"links": "missing", "meta": "missing", "cap": 2}, 4),
        ({"links": "empty", "meta": "missing", "cap": 2}, 4),
        # meta.count that counts the page, not every item
        ({"links": "empty", "meta": "page_count", "cap": 2}, 3),
        ({"links": "next", "meta": "page_count", "cap": 2}, 3),
        # everything on one page
        ({"links": "empty", "meta": "full"}, 1),
        ({"links": "missing", "meta": "missing"}, 2),  # one more request to see the empty page
        ({"links": "no_next", "meta": "missing"}, 1),
    ],
)
def test_every_item_is_read_whatever_the_paging_signals(server, requests):
    got, sent, pager = read(**server, total=5)
    assert got == ids(5)
    assert sent == requests
    assert not pager.repeated


def test_issue_22_links_empty_meta_says_more():
    """``{"items": [2], "links": [], "meta": {"limit": 2, "offset": 0, "count": 5}}``: 5 read."""
    page = {"items": [{"id": "v0"}, {"id": "v1"}], "links": [], "meta": {"limit": 2, "offset": 0, "count": 5}}
    pager = Pager(BASE, 1000)
    following = pager.after(BASE, page["items"], signals(page, BASE))
    assert following is not None and following.url == BASE
    assert following.params == {"limit": 1000, "offset": 2}


def test_a_short_page_is_not_the_end_when_the_server_caps_the_limit():
    # Asked 1000, served 3 (meta.limit 3): a full page of the server's limit.
    got, sent, _ = read(page_size=1000, total=7, cap=3, links="empty", meta="no_count")
    assert got == ids(7) and sent == 3  # the third page (1 item < 3) is the end


@pytest.mark.parametrize(
    "server",
    [
        {"links": "empty", "meta": "full"},  # meta says more, the server ignores offset
        {"links": "missing", "meta": "missing"},
        {"links": "next", "meta": "full"},  # its next link points at a page it never moves to
    ],
)
def test_a_server_that_repeats_a_page_is_stopped_without_duplicates(server):
    got, sent, pager = read(**server, total=5, cap=2, ignore_offset=True)
    assert got == ids(2)  # page one once, nothing twice
    assert sent == 2
    assert pager.repeated


def test_a_next_link_already_followed_ends_the_paging():
    pager = Pager(BASE, 2)
    page = {"items": [{"id": "a"}], "links": [{"rel": "next", "href": f"{BASE}?offset=1"}]}
    first = pager.after(BASE, page["items"], signals(page, BASE))
    assert first is not None and first.params is None
    again = {"items": [{"id": "b"}], "links": [{"rel": "next", "href": f"{BASE}?offset=1"}]}
    assert pager.after(first.url, again["items"], signals(again, first.url)) is None
    assert pager.repeated


def test_an_empty_page_ends_even_when_meta_says_more():
    pager = Pager(BASE, 2)
    page = {"items": [], "links": [], "meta": {"count": 9}}
    assert pager.after(BASE, [], signals(page, BASE)) is None


@pytest.mark.parametrize(
    ("page", "signal"),
    [
        ({"links": [{"rel": "NEXT", "href": "?offset=2"}]}, (f"{BASE}?offset=2", True, None, None, None)),
        ({"links": [{"rel": "next", "href": ""}], "meta": {"count": "5"}}, (None, True, 5, None, None)),
        ({"links": None, "meta": {"count": True, "limit": "x", "offset": 2}}, (None, False, None, 2, None)),
        ({"links": "next", "meta": []}, (None, False, None, None, None)),
        ([1, 2], (None, False, None, None, None)),
    ],
)
def test_signals_read_what_is_there_and_nothing_else(page, signal):
    found = signals(page, BASE)
    assert (found.next_link, found.links_listed, found.count, found.offset, found.limit) == signal


@pytest.mark.parametrize(
    ("server", "words"),
    [
        ({"links": "next", "meta": "full"}, "links[rel=next] with meta" + CAPPED),
        (
            {"links": "next", "meta": "missing"},
            "links[rel=next], no meta.count; limit capped at 2 (asked 20)",
        ),
        ({"links": "empty", "meta": "full"}, "meta offset/count, links empty" + CAPPED),
        (
            {"links": "no_next", "meta": "full"},
            "meta offset/count, links without next; limit capped at 2 (asked 20)",
        ),
        ({"links": "empty", "meta": "no_count"}, "meta offset/limit, no count"),
        ({"links": "missing", "meta": "missing"}, "no links and no meta (offset until an empty page)"),
    ],
)
def test_describe_names_the_variant_for_the_probe(server, words):
    page = serve(BASE, {"limit": 20, "offset": 0}, total=5, cap=2, **server)
    assert describe(signals(page, BASE), len(page["items"]), 20) == words


def test_describe_a_single_page():
    page = serve(BASE, {"limit": 20, "offset": 0}, total=5, links="empty", meta="full")
    assert describe(signals(page, BASE), 5, 20) == "meta offset/count, links empty (one page)"
