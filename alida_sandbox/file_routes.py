"""Export files: the files route (a redirect or JSON link) and the storage route (Range, gzip, faults)."""

from __future__ import annotations

import hmac
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from alida_sandbox.handler import BaseHandler
from alida_sandbox.state import iter_segments, segments_size


class FileRoutes(BaseHandler):
    """The files route and the storage route that serves a batch's file from disk."""

    def _files(self, file_id: str) -> None:
        sandbox = self.sandbox
        batch_id = sandbox.files.get(file_id)
        batch = sandbox.batches.get(batch_id or "")
        if batch is None or not batch.ready.is_set() or batch.segments is None:
            self._error(404, f"File {file_id} was not found.")
            return
        owner = batch.activity_id or "members"
        if sandbox.options.redirect == "none":
            self._serve_file(batch.segments, owner, file_id)
            return
        expired = sandbox.options.faults.fire("expire_link", owner)
        if "json_link" in sandbox.options.quirks:
            self._send_json(200, {"url": sandbox.storage_link(file_id, expired=expired)})
            return
        link = sandbox.storage_link(file_id, expired=expired)
        quirks = sandbox.options.quirks
        status = next((int(q[-3:]) for q in sorted(quirks) if q.startswith("location_2")), 302)
        if status != 302 and "location_json_body" in quirks:
            # What Alida's member-export docs describe: the answer's Location holds the link.
            self._send_json(status, {"id": file_id, "status": "ready"}, {"Location": link})
            return
        self.send_response(status)
        self.send_header("Location", link)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self._status = status

    def _storage(self, file_id: str) -> None:
        sandbox = self.sandbox
        if "Authorization" in self.headers:
            # Like S3 with a pre-signed URL: a second auth mechanism is refused.
            self._error(400, "Only one auth mechanism allowed; the URL is already signed.")
            return
        try:
            expires = int(self._query.get("expires", ["0"])[0])
        except ValueError:
            expires = 0
        signature = self._query.get("sig", [""])[0]
        if not hmac.compare_digest(signature, sandbox.sign(file_id, expires)):
            self._error(403, "Signature does not match.")
            return
        if expires < time.time():
            self._error(403, "Request has expired.")
            return
        batch = sandbox.batches.get(sandbox.files.get(file_id, ""))
        if batch is None or batch.segments is None:
            self._error(404, "No such object.")
            return
        owner = batch.activity_id or "members"
        if self._transient_fault(f"storage {owner}"):
            return
        self._serve_file(batch.segments, owner, file_id)

    def _serve_file(self, segments: list[bytes | Path], owner: str, etag: str) -> None:
        faults = self.sandbox.options.faults
        self._drop_at: int | None = None
        self._slow = faults.fire("slow_body", owner)
        size = segments_size(segments)
        range_header = self.headers.get("Range") if self.sandbox.options.ranges else None
        if range_header:
            start = _range_start(range_header)
            if start is None or start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._status = 416
                return
            self.send_response(206)
            self.send_header("Content-Type", "application/json")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.send_header("Content-Length", str(size - start))
            self.send_header("ETag", f'"{etag}"')
            self.end_headers()
            self._status = 206
            if faults.fire("drop_download", owner):
                self._drop_at = (size - start) // 2
            self._write_all(iter_segments(segments, start))
            return
        if "gzip" in (self.headers.get("Accept-Encoding") or ""):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("ETag", f'"{etag}"')
            self.end_headers()
            self._status = 200
            if faults.fire("drop_download", owner):
                self._drop_at = size // 2
            compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
            sent = 0
            for chunk in iter_segments(segments, 0):
                sent += len(chunk)
                self._write_chunk(compressor.compress(chunk))
                if self._drop_at is not None and sent >= self._drop_at:
                    self._write_chunk(compressor.flush(zlib.Z_SYNC_FLUSH))  # what was sent arrives
                    self._hang_up()
                    return
                if self._slow:
                    time.sleep(0.01)
            self._write_chunk(compressor.flush())
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(size))
        self.send_header("ETag", f'"{etag}"')
        self.end_headers()
        self._status = 200
        if faults.fire("drop_download", owner):
            self._drop_at = size // 2
        self._write_all(iter_segments(segments, 0))

    def _write_all(self, chunks: Iterator[bytes]) -> None:
        """Write the body; hang up at ``_drop_at`` bytes, trickle when ``_slow``."""
        sent = 0
        for chunk in chunks:
            step = 8192 if self._slow else len(chunk) or 1
            pieces = [chunk[i : i + step] for i in range(0, len(chunk), step)]
            for piece in pieces:
                if self._drop_at is not None and sent + len(piece) > self._drop_at:
                    self.wfile.write(piece[: self._drop_at - sent])
                    self._hang_up()
                    return
                self.wfile.write(piece)
                sent += len(piece)
                if self._slow:
                    self.wfile.flush()
                    time.sleep(0.01)

    def _hang_up(self) -> None:
        """Drop the connection mid-body (fault drop_download)."""
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def _range_start(header: str) -> int | None:
    """Start offset of ``bytes=N-`` or ``bytes=N-M`` (the end is served to EOF)."""
    if not header.startswith("bytes="):
        return None
    first = header[6:].split(",", maxsplit=1)[0].strip()
    start, _, _ = first.partition("-")
    return int(start) if start.isdigit() else None
