"""A download whose connection breaks off runs in the one retry loop (``policy.RetryPolicy``): it resumes
with ``Range`` from the last byte on disk, and gives up after ``max_request_attempts`` drops
with its own message (no sockets: a fake client serves the body)."""

from __future__ import annotations

import io
from typing import Any

import pytest
import requests

from tap_alida.errors import ExportFileError
from tap_alida.export.batch import ACTIVITY, Batch
from tap_alida.export.download import Download
from tap_alida.http.policy import RetryPolicy
from tap_alida.settings import AlidaSettings
from tap_alida.stop import RunStop

BODY = b'{"definition": {}, "records": []}' * 4


class Body:
    """A response from ``start``; its body breaks off ``cut`` bytes in (None: it completes)."""

    def __init__(self, start: int, cut: int | None) -> None:
        self.start, self.cut = start, cut
        self.status_code = 206 if start else 200
        self.headers: dict[str, str] = {"Content-Length": str(len(BODY) - start)}
        if start:
            self.headers["Content-Range"] = f"bytes {start}-{len(BODY) - 1}/{len(BODY)}"
        self.url = "http://storage.example/file"

    def iter_content(self, size: int) -> Any:
        end = len(BODY) if self.cut is None else self.start + self.cut
        yield BODY[self.start : end]
        if self.cut is not None:
            raise requests.exceptions.ChunkedEncodingError("cut")

    def close(self) -> None:
        pass


class Client:
    """Serves ``BODY``, breaking off after 10 bytes for the first ``drops`` requests."""

    def __init__(self, drops: int, attempts: int) -> None:
        config = {"community_api_key_name": "c", "client_id": "i", "client_secret": "s"}
        settings = AlidaSettings.from_config({**config, "api_url": "http://127.0.0.1:1"})
        self.stop = RunStop()
        self.retry = RetryPolicy(settings, self.stop)
        self.retry.max_attempts = attempts
        self.retry.backoff = lambda attempt: 0.0
        self.drops = drops
        self.ranges: list[str | None] = []

    def open_file(self, link: str, *, what: str, headers: dict[str, str]) -> Body:
        self.ranges.append(headers.get("Range"))
        start = int(headers["Range"][6:-1]) if "Range" in headers else 0
        cut = 10 if len(self.ranges) <= self.drops else None
        return Body(start, cut)


def download(client: Client) -> bytes:
    batch = Batch(ACTIVITY, "b1", "activity 'A'", activity_id="a")
    out = io.BytesIO()
    Download(client, batch, lambda b: "http://api.example/file", lambda b: "")._into(out)
    return out.getvalue()


def test_a_broken_download_resumes_from_the_last_byte_on_disk():
    client = Client(drops=2, attempts=3)
    assert download(client) == BODY
    assert client.ranges == [None, "bytes=10-", "bytes=20-"]


def test_a_download_that_keeps_breaking_off_gives_up_naming_the_drops_and_the_setting():
    client = Client(drops=5, attempts=3)
    with pytest.raises(ExportFileError) as raised:
        download(client)
    assert str(raised.value) == (
        "The download of activity 'A', batch b1 broke off 3 times (last after 30 bytes, "
        "ChunkedEncodingError). Nothing from this file was emitted; rerun the sync, or raise "
        "'max_request_attempts'."
    )
    assert len(client.ranges) == 3
