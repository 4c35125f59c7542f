"""Unit tests (no sockets) of link shapes, replayed bodies, fresh-link bounds and create answers."""

from __future__ import annotations

import gzip
import io
import json

import pytest
import requests
import urllib3
from requests.structures import CaseInsensitiveDict

from tap_alida.export.api import created_batch
from tap_alida.http.links import (
    PEEK_BYTES,
    FreshLinks,
    Replay,
    files_route_location,
    link_in,
    may_be_link,
    peek_link,
)

S3 = "https://bucket.s3.amazonaws.com/export.json?X-Amz-Expires=30&X-Amz-Signature=abc"


@pytest.mark.parametrize(
    ("body", "link"),
    [
        ({"url": S3}, S3),
        ({"downloadUrl": S3}, S3),
        ({"link": S3, "expiresIn": 30}, S3),
        ({"URL": "http://storage.local/f"}, "http://storage.local/f"),
        ({"url": "/v2/applications/c/data/files/1"}, "/v2/applications/c/data/files/1"),
        # export files and other JSON objects are not links, whatever they hold
        ({"definition": {"fields": []}, "records": [], "url": S3}, None),
        ({"exportOptions": {}, "members": []}, None),
        ({"url": "ftp://elsewhere/f"}, None),
        ({"url": 42}, None),
        ({}, None),
        ([S3], None),
    ],
)
def test_link_in_reads_link_answers_only(body, link):
    assert link_in(json.dumps(body).encode()) == link


def test_link_in_rejects_big_and_broken_bodies():
    assert link_in(b'{"url": "' + S3.encode() + b'"' + b" " * PEEK_BYTES + b"}") is None
    assert link_in(b'{"url": "https://x/y"') is None
    assert link_in(b"") is None


def _response(body: bytes, content_type: str = "application/json", encoding: str | None = None):
    response = requests.Response()
    response.status_code = 200
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    response.headers = CaseInsensitiveDict(headers)
    response.raw = urllib3.HTTPResponse(
        body=io.BytesIO(body), headers=headers, status=200, preload_content=False, decode_content=True
    )
    return response


def _big_export() -> bytes:
    records = [{"memberId": f"m{i}", "values": {"q1": "x" * 50}} for i in range(800)]
    return json.dumps({"definition": {"fields": []}, "records": records}).encode()


@pytest.mark.parametrize("encoding", [None, "gzip"])
@pytest.mark.parametrize("body", [_big_export(), b'{"definition": {"fields": []}, "records": []}', b""])
def test_peek_hands_back_every_byte_of_a_file(body, encoding):
    wire = gzip.compress(body) if encoding else body
    response = _response(wire, encoding=encoding)
    assert may_be_link(response)
    assert peek_link(response) is None
    assert isinstance(response.raw, Replay)
    assert b"".join(response.iter_content(1000)) == body
    response.close()


def test_peek_finds_the_link_of_a_json_link_answer():
    response = _response(json.dumps({"url": S3}).encode())
    assert peek_link(response) == S3


def test_only_200_json_or_untyped_answers_are_peeked():
    assert not may_be_link(_response(b"", content_type="application/octet-stream"))
    assert may_be_link(_response(b"", content_type=""))
    partial = _response(b"")
    partial.status_code = 206
    assert not may_be_link(partial)


@pytest.mark.parametrize("status", [200, 201, 202, 302, 307])
@pytest.mark.parametrize("body", [b"", b'{"id": "f1", "status": "ready"}'])
def test_a_location_on_any_files_answer_is_the_link(status, body):
    response = _response(body)
    response.status_code = status
    response.headers["Location"] = f" {S3} "
    assert files_route_location(response) == S3


def test_no_location_or_a_416_is_not_a_link():
    assert files_route_location(_response(b"{}")) is None
    past_end = _response(b"")
    past_end.status_code = 416
    past_end.headers["Location"] = S3
    assert files_route_location(past_end) is None


def test_fresh_links_are_bounded_by_progress_not_count():
    links = FreshLinks(limit=3)
    # A download of an hour with 30-second links: each link moves it on, so it never gives up.
    assert all(links.refused(received) for received in range(0, 10_000_000, 100_000))
    # Then three fresh links in a row that move nothing: the third refusal gives up.
    stuck = FreshLinks(limit=3)
    assert stuck.refused(500)  # the original link; fresh link 1
    assert stuck.refused(500)  # fresh link 1 made no progress; fresh link 2
    assert stuck.refused(500)  # fresh link 2 neither; fresh link 3
    assert not stuck.refused(500)  # three fresh links without a byte: give up
    assert stuck.without_progress == 3


def test_progress_resets_the_fresh_link_count():
    links = FreshLinks(limit=2)
    assert links.refused(0) and links.refused(0)
    assert links.refused(10)  # fresh link 2 moved the download on
    assert links.refused(10)
    assert not links.refused(10)


def _created(status: int, body: bytes, headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers = CaseInsensitiveDict(headers)
    return response


@pytest.mark.parametrize(
    ("status", "body", "headers", "batch_id"),
    [
        (202, b'{"id": "b1", "status": "pending"}', {}, "b1"),
        (201, b'{"batchId": "b2"}', {}, "b2"),
        (200, b'{"jobId": "b3"}', {}, "b3"),
        (201, b"", {"Location": "https://api/v2/applications/c/data/members/profiles/batch/b4"}, "b4"),
        (201, b"", {"Location": "/v2/applications/c/data/members/profiles/batch/b5/"}, "b5"),
        (201, b'{"status": "Pending"}', {"Location": "/x/batch/b6"}, "b6"),
        (201, b"", {}, None),
        (200, b"not json", {}, None),
        (200, b'["b7"]', {}, None),
    ],
)
def test_created_batch_takes_the_id_from_any_plausible_shape(status, body, headers, batch_id):
    _, found = created_batch(_created(status, body, headers))
    assert found == batch_id


class _StubClient:
    """Stands in for AlidaClient in BatchExports._create: hands out canned create answers."""

    def __init__(self, *answers: requests.Response) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, str]] = []
        self.settings = None

    def url(self, version: str, path: str) -> str:
        return f"https://api.example/{version}/applications/c/{path}"

    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        self.sent.append(dict(kwargs["headers"]))
        return self.answers.pop(0)


def test_an_empty_create_answer_is_asked_again_once_then_named_without_header_values():
    from tap_alida.errors import APIError
    from tap_alida.export.api import BatchExports

    empty = {"Server": "secret-server-build-42", "Date": "Tue, 01 Dec 2026 10:00:00 GMT"}
    client = _StubClient(_created(201, b"", empty), _created(201, b"", empty))
    with pytest.raises(APIError) as raised:
        BatchExports(client).create_member_batch(None)  # type: ignore[arg-type]
    assert client.sent == [{"x-webapi-return-resource": "true"}] * 2
    text = str(raised.value)
    assert "HTTP 201" in text and "body 0 bytes" in text and "headers: Date, Server" in text
    assert "secret-server-build-42" not in text and "2026" not in text


def test_an_empty_create_answer_then_a_body_gives_the_batch():
    from tap_alida.export.api import BatchExports

    client = _StubClient(_created(201, b"", {}), _created(201, b'{"id": "b9", "status": "Pending"}', {}))
    batch = BatchExports(client).create_member_batch(None)  # type: ignore[arg-type]
    assert batch.id == "b9" and batch.status["status"] == "Pending"
    assert len(client.sent) == 2
