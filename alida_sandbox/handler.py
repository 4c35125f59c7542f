"""The request handler's plumbing (answers, bodies, 429/5xx faults), shared by every route class."""

from __future__ import annotations

import email.utils
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

from alida_sandbox.state import Sandbox


class BaseHandler(BaseHTTPRequestHandler):
    """What the route classes share: JSON answers, errors, request bodies, transient faults."""

    _status: int  # the status answered, for the request log
    _query: dict[str, list[str]]
    _post_body: Any
    protocol_version = "HTTP/1.1"
    server_version = "AlidaSandbox/1.0"
    sandbox: Sandbox  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is /_sandbox/requests

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass  # a client that hangs up on a keep-alive connection is normal

    # -- plumbing ----------------------------------------------------------------------

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._status = status

    def _error(self, status: int, message: str) -> None:
        self._send_json(
            status,
            {"status": status, "message": message, "developerMessage": None, "errorId": str(uuid.uuid4())},
        )

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_post_json(self) -> Any:
        raw = self._body()
        try:
            self._post_body = json.loads(raw) if raw.strip() else None
        except ValueError:
            self._post_body = {"_unparsable": raw[:200].decode("utf-8", "replace")}
        return self._post_body

    # -- faults ------------------------------------------------------------------------------

    def _fault_key(self, method: str, rest: list[str]) -> str:
        """Route and activity of a request: fault decisions per key do not depend on
        how concurrent requests for other activities interleave."""
        sandbox = self.sandbox
        owner = ""
        if len(rest) >= 4 and rest[0] == "data" and rest[1] == "activities" and rest[3] == "responses":
            owner = rest[2]
        elif len(rest) >= 5 and rest[3] in ("batch", "files"):
            batch_id = rest[4] if rest[3] == "batch" else sandbox.files.get(rest[4], "")
            found = sandbox.batches.get(batch_id)
            owner = (found.activity_id or "members") if found else ""
        template = "/".join(r for r in rest if len(r) < 30)  # ids are long; route words are short
        return f"{method} {template} {owner}"

    def _transient_fault(self, key: str) -> bool:
        """Answer 429 or 5xx when those faults fire; True when a fault answered."""
        faults = self.sandbox.options.faults
        if faults.fire("rate_limit", key):
            wait = self.sandbox.options.retry_after
            # Alternate the two forms RFC 9110 allows: delta-seconds and an HTTP-date.
            if faults.fired["rate_limit"] % 2:
                header = str(wait)
            else:
                header = email.utils.formatdate(time.time() + wait + 1, usegmt=True)
            self._send_json(
                429,
                {
                    "status": 429,
                    "message": "Too many requests (sandbox fault rate_limit).",
                    "developerMessage": None,
                    "errorId": str(uuid.uuid4()),
                },
                {"Retry-After": header},
            )
            return True
        if faults.fire("server_error", key):
            status = (500, 502, 503)[faults.fired["server_error"] % 3]
            self._error(status, "Internal error (sandbox fault server_error).")
            return True
        return False
