"""The sandbox Alida server: a real HTTP server on loopback (``alida-api.md`` §11).

Routes: token, ``/activities``, ``/membervariables``, batch create/status for
activity responses and member profiles, the files route (302 to a storage route
that refuses an Authorization header, like a pre-signed object store), and
``/_sandbox/*`` introspection (truth, request log, member changes, survey drift).
``--faults`` inject failures; ``--quirks`` serve the other answer shapes Alida
may use where its docs are silent (§12b). Export files are written to a private
folder by a background job and streamed from disk in 64 KiB chunks, with
``Range`` (206) and gzip, so an export of any size is served in constant memory.

Storage links point at the same server under another host name (``localhost``
versus ``127.0.0.1``), so to an HTTP client they are a different host.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from alida_sandbox.data import (
    CommunityData,
    FixtureCommunity,
    GeneratedCommunity,
    MemberOverlay,
    iso,
    parse_iso,
    write_member_file,
)

CHUNK = 64 * 1024
REQUEST_LOG_LIMIT = 20_000
LATE_STATUS_SECONDS = 2.0


FAULT_NAMES = (
    "rate_limit",
    "server_error",
    "drop_download",
    "slow_body",
    "expire_link",
    "stuck_job",
    "fail_job",
    "token_expiry",
    "truncate_file",
    "records_first",
)
FAULT_HELP = {
    "rate_limit": "429 with Retry-After (API and storage routes, token included)",
    "server_error": "500/502/503 (API and storage routes, token included)",
    "drop_download": "close the socket halfway through a file body",
    "slow_body": "trickle a file body (8 KiB every 10 ms)",
    "expire_link": "a storage link that has already expired",
    "stuck_job": "a batch that never leaves pending",
    "fail_job": "a batch that ends failed with an errorMessage",
    "token_expiry": "a valid token expires early: 401, and revoked (never on its first use)",
    "truncate_file": "a batch whose file stops mid-record (valid HTTP)",
    "records_first": "an activity file with records before definition",
}

# --quirks: answer shapes Alida may use where its docs are silent (alida-api.md §12b).
# Unlike faults they hold for every request of the run.
QUIRK_HELP = {
    "capitalised_status": "status words Pending/Running/Succeeded/Failed",
    "lowercase_errormessage": "error text under errormessage instead of errorMessage",
    "empty_create": "create answers an empty 201 unless the request has x-webapi-return-resource: true",
    "json_link": "the files route answers 200 JSON {url: storage link} instead of a 302",
    "cancelled_jobs": "every batch ends cancelled",
    "late_status": f"a new batch's status answers 404 for its first {LATE_STATUS_SECONDS:g} s",
    "unknown_status": "a running batch shows the status word Exporting",
}


def parse_quirks(spec: str) -> frozenset[str]:
    """``--quirks a,b``: the set of quirk names; an unknown name is an argparse error."""
    names = frozenset(filter(None, (part.strip() for part in spec.split(","))))
    unknown = sorted(names - set(QUIRK_HELP))
    if unknown:
        msg = f"unknown quirk {', '.join(map(repr, unknown))}; known: {', '.join(QUIRK_HELP)}"
        raise argparse.ArgumentTypeError(msg)
    return names


class Faults:
    """``--faults name=probability|count,...``: combinable and deterministic for a seed.

    A value with a decimal point (``0.2``) is a probability per opportunity; a
    whole number (``3``) is how many times the fault fires, then never again.
    Probabilities do not depend on how concurrent requests interleave: whether
    the n-th opportunity for a given key (route and activity) fires is a hash of
    the seed, the fault, the key and n.
    """

    def __init__(self, spec: str | None, seed: int) -> None:
        self.seed = seed
        self._lock = threading.Lock()
        self.probability: dict[str, float] = {}
        self.remaining: dict[str, int] = {}
        self.fired: dict[str, int] = {}
        self._seen: dict[tuple[str, str], int] = {}
        for item in filter(None, (part.strip() for part in (spec or "").split(","))):
            name, _, value = item.partition("=")
            name = name.strip()
            if name not in FAULT_NAMES:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
            value = value.strip() or "1"
            try:
                if "." in value:
                    self.probability[name] = float(value)
                else:
                    self.remaining[name] = int(value)
            except ValueError:
                raise ValueError(f"fault {name}={value!r}: give a probability (0.2) or a count (3)") from None

    def fire(self, name: str, key: str = "") -> bool:
        """Whether the fault happens at this opportunity (counts it down when counted)."""
        with self._lock:
            if self.remaining.get(name, 0) > 0:
                self.remaining[name] -= 1
                hit = True
            elif name in self.probability:
                n = self._seen.get((name, key), 0)
                self._seen[(name, key)] = n + 1
                digest = hashlib.sha256(f"{self.seed}:{name}:{key}:{n}".encode()).digest()
                hit = int.from_bytes(digest[:8], "big") / 2**64 < self.probability[name]
            else:
                hit = False
            if hit:
                self.fired[name] = self.fired.get(name, 0) + 1
            return hit


@dataclass
class Options:
    community: str = "sandbox"
    client_id: str = "sandbox"
    client_secret: str = "sandbox"
    api_key: str | None = None
    job_delay: float = 0.0
    token_ttl: int = 3600
    link_ttl: int = 600
    redirect: str = "302"
    page_max: int = 1000
    storage_host: str | None = None
    retry_after: int = 1
    # At most this many exports pending or running at once; a create beyond it gets
    # 429 with Retry-After (what a tenant that caps concurrent exports would answer).
    max_running_exports: int | None = None
    ranges: bool = True  # False: ignore Range headers (200 with the whole file)
    quirks: frozenset[str] = frozenset()
    faults: Faults = field(default_factory=lambda: Faults(None, 0))


@dataclass
class Batch:
    id: str
    kind: str  # "activity" | "members"
    activity_id: str | None
    since: str | None
    created: float
    created_iso: str
    file_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    segments: list[bytes | Path] | None = None
    error: str | None = None
    stuck: bool = False
    truncated: bool = False
    records_first: bool = False
    ready: threading.Event = field(default_factory=threading.Event)


class Sandbox:
    """Server state: data, tokens, batches, storage links, request log."""

    def __init__(self, data: CommunityData, options: Options, workdir: Path) -> None:
        self.data = data
        self.options = options
        self.workdir = workdir
        self.lock = threading.Lock()
        self.create_lock = threading.Lock()
        self.tokens: dict[str, float] = {}
        self.token_uses: dict[str, int] = {}
        self.issued_tokens: list[str] = []
        self.batches: dict[str, Batch] = {}
        self.files: dict[str, str] = {}  # file id → batch id
        self.signing_key = secrets.token_bytes(32)
        self.signatures: list[str] = []  # every signature issued, for log-leak tests
        self.requests: list[dict[str, Any]] = []
        self.overlay = MemberOverlay()
        self.member_version = 0
        self.base_url = ""
        self.storage_base = ""

    # -- tokens ------------------------------------------------------------------------

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.monotonic() + self.options.token_ttl
            self.issued_tokens.append(token)
        return token

    def expire_token_early(self, token: str, key: str) -> bool:
        """Fault token_expiry: revoke a token that has been used before (not a fresh one)."""
        with self.lock:
            uses = self.token_uses.get(token, 0)
            self.token_uses[token] = uses + 1
        if uses == 0 or not self.options.faults.fire("token_expiry", key):
            return False
        with self.lock:
            self.tokens.pop(token, None)
        return True

    def token_valid(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        expiry = self.tokens.get(header[7:].strip())
        return expiry is not None and expiry > time.monotonic()

    # -- batches -----------------------------------------------------------------------

    def activity(self, activity_id: str) -> dict[str, Any] | None:
        return next((a for a in self.data.activities if str(a["id"]).lower() == activity_id.lower()), None)

    def create_batch(self, kind: str, activity_id: str | None, since: str | None) -> Batch:
        now = dt.datetime.now(dt.UTC)
        batch = Batch(str(uuid.uuid4()), kind, activity_id, since, time.monotonic(), iso(now))
        faults = self.options.faults
        key = activity_id or "members"
        batch.stuck = faults.fire("stuck_job", key)
        if not batch.stuck and faults.fire("fail_job", key):
            batch.error = "Export failed: the data service timed out (sandbox fault fail_job)."
        if not batch.stuck and not batch.error:
            batch.truncated = faults.fire("truncate_file", key)
            batch.records_first = kind == "activity" and faults.fire("records_first", key)
        with self.lock:
            self.batches[batch.id] = batch
            self.files[batch.file_id] = batch.id
        threading.Thread(target=self._build, args=(batch,), daemon=True).start()
        return batch

    def _build(self, batch: Batch) -> None:
        try:
            if batch.kind == "activity":
                assert batch.activity_id is not None
                batch.segments = self.data.activity_file(
                    batch.activity_id, batch.id, self.workdir, records_first=batch.records_first
                )
            else:
                path = self.workdir / f"members-{batch.id}.json"
                with self.lock:
                    overlay = self.overlay
                with open(path, "w", encoding="utf-8") as out:
                    write_member_file(
                        (overlay.apply(m) for m in self.data.iter_members()),
                        (overlay.apply(m) for m in self.data.iter_members()),
                        out,
                        batch_id=batch.id,
                        since=batch.since,
                        now=dt.datetime.now(dt.UTC),
                    )
                batch.segments = [path]
            if batch.truncated:
                batch.segments = truncate_segments(batch.segments, self.workdir / f"cut-{batch.id}")
        except Exception as exc:
            batch.error = batch.error or f"export generation failed: {exc}"
        finally:
            batch.ready.set()

    def exports_in_progress(self) -> int:
        """Batches pending or running now (the ones ``max_running_exports`` counts)."""
        with self.lock:
            batches = list(self.batches.values())
        return sum(1 for b in batches if self._state(b) in ("pending", "running"))

    def status(self, batch: Batch) -> dict[str, Any]:
        state = self._state(batch)
        quirks = self.options.quirks
        return self._status_body(batch, state, quirks)

    def _state(self, batch: Batch) -> str:
        elapsed = time.monotonic() - batch.created
        delay = self.options.job_delay
        quirks = self.options.quirks
        if batch.stuck:
            state = "pending"
        elif "cancelled_jobs" in quirks and elapsed >= delay:
            state = "cancelled"
        elif batch.error and elapsed >= delay:
            state = "failed"
        elif elapsed >= delay and batch.ready.is_set():
            state = "succeeded"
        elif elapsed >= delay / 3:
            state = "running"
        else:
            state = "pending"
        return state

    def _status_body(self, batch: Batch, state: str, quirks: frozenset[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": batch.id,
            "status": state,
            "createDate": batch.created_iso,
            "createdBy": "1f0e3c9a-0b8d-4b7e-9a6c-a3780118a164",
            "lastUpdateDate": iso(dt.datetime.now(dt.UTC)),
            "lastUpdatedBy": "1f0e3c9a-0b8d-4b7e-9a6c-a3780118a164",
            "message": None,
            "errorMessage": batch.error if state == "failed" else None,
            "data": None,
        }
        if state == "running" and "unknown_status" in quirks:
            body["status"] = "Exporting"
        if "capitalised_status" in quirks:
            body["status"] = str(body["status"]).capitalize()
        if "lowercase_errormessage" in quirks:
            body["errormessage"] = body.pop("errorMessage")
        if batch.kind == "activity":
            body = {"id": batch.id, "datasetId": batch.activity_id, **body}
        if state == "succeeded":
            kind_path = "activities/responses" if batch.kind == "activity" else "members/profiles"
            body["message"] = {"artifact": batch.file_id}
            body["data"] = (
                f"{self.base_url}/v2/applications/{quote(self.options.community)}/data/{kind_path}"
                f"/files/{batch.file_id}"
            )
        return body

    # -- storage links -----------------------------------------------------------------

    def sign(self, file_id: str, expires: int) -> str:
        mac = hmac.new(self.signing_key, f"{file_id}:{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    def storage_link(self, file_id: str, expired: bool = False) -> str:
        expires = int(time.time()) + (-5 if expired else self.options.link_ttl)
        signature = self.sign(file_id, expires)
        with self.lock:
            self.signatures.append(signature)
        return f"{self.storage_base}/storage/{file_id}?expires={expires}&sig={signature}"

    # -- truth -------------------------------------------------------------------------

    def truth(self, since: str | None) -> dict[str, Any]:
        activities = []
        for a in self.data.activities:
            entry = {"id": a["id"], "name": a.get("name"), "activityType": a.get("activityType")}
            if self._exportable(a):
                entry.update(self.data.activity_truth(str(a["id"]), self.workdir))
            activities.append(entry)
        with self.lock:
            overlay = self.overlay
        sink = _CountingSink()
        members = write_member_file(
            (overlay.apply(m) for m in self.data.iter_members()),
            (overlay.apply(m) for m in self.data.iter_members()),
            sink,
            batch_id="truth",
            since=since,
            now=dt.datetime.now(dt.UTC),
        )
        return {"activities": activities, "members": members}

    def _exportable(self, activity: dict[str, Any]) -> bool:
        if str(activity.get("activityType", "")).lower() != "survey":
            return False
        has_file = getattr(self.data, "has_file", None)
        return has_file is None or has_file(str(activity["id"]))

    def log_request(self, entry: dict[str, Any]) -> None:
        with self.lock:
            entry["seq"] = len(self.requests)
            self.requests.append(entry)
            if len(self.requests) > REQUEST_LOG_LIMIT:
                del self.requests[: len(self.requests) - REQUEST_LOG_LIMIT]

    def touch_members(self, count: int, effective: str, value_prefix: str) -> int:
        """Give the first ``count`` members a new 'Favourite city'-like value (the last variable)."""
        variables = self.data.member_variables()
        target = variables[-1]
        changed = 0
        with self.lock:
            self.member_version += 1
            changes = {k: dict(v) for k, v in self.overlay.changes.items()}
            for member in self.data.iter_members():
                if changed >= count:
                    break
                changes.setdefault(member["memberId"], {})[target["id"]] = {
                    "id": target["id"],
                    "name": target.get("name"),
                    "dataType": target.get("dataType"),
                    "isSensitive": target.get("isSensitive"),
                    "values": [{"value": f"{value_prefix} {self.member_version}", "id": str(uuid.uuid4())}],
                    "effectiveDate": effective,
                }
                changed += 1
            self.overlay = MemberOverlay(changes)
        return changed


class _CountingSink:
    def write(self, text: str) -> int:
        return len(text)


def iter_segments(segments: list[bytes | Path], start: int) -> Iterator[bytes]:
    """Bytes of the concatenated segments from offset ``start``, in chunks."""
    for segment in segments:
        size = len(segment) if isinstance(segment, bytes) else segment.stat().st_size
        if start >= size:
            start -= size
            continue
        if isinstance(segment, bytes):
            yield segment[start:]
        else:
            with open(segment, "rb") as f:
                f.seek(start)
                while chunk := f.read(CHUNK):
                    yield chunk
        start = 0


def truncate_segments(segments: list[bytes | Path], path: Path) -> list[bytes | Path]:
    """The first ~60% of the file, cut inside a record: valid HTTP, broken JSON."""
    keep = max(1, int(segments_size(segments) * 0.6))
    with open(path, "wb") as out:
        for chunk in iter_segments(segments, 0):
            out.write(chunk[: keep - out.tell()])
            if out.tell() >= keep:
                break
    with open(path, "rb+") as f:  # never end on a closing bracket: the cut must look mid-record
        size = f.seek(0, 2)
        f.seek(max(0, size - 256))
        tail = f.read()
        cut = tail.rstrip(b" \r\n\t}]")
        f.truncate(size - len(tail) + len(cut))
    return [path]


def segments_size(segments: list[bytes | Path]) -> int:
    return sum(len(s) if isinstance(s, bytes) else s.stat().st_size for s in segments)


class Handler(BaseHTTPRequestHandler):
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

    def _dispatch(self) -> None:
        self._status = 0
        parts = urlsplit(self.path)
        self._query = parse_qs(parts.query)
        self._post_body: Any = None
        try:
            self._route(self.command, parts.path)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.sandbox.log_request(
                {
                    "method": self.command,
                    "path": parts.path,
                    "query": {k: v[0] for k, v in self._query.items() if k != "sig"},
                    "host": self.headers.get("Host"),
                    "status": self._status,
                    "authorization": "Authorization" in self.headers,
                    "x_api_key": "x-api-key" in self.headers,
                    "range": self.headers.get("Range"),
                    "accept_encoding": self.headers.get("Accept-Encoding"),
                    "return_resource": self.headers.get("x-webapi-return-resource"),
                    "body": self._post_body,
                    "time": time.time(),
                }
            )

    do_GET = do_POST = do_HEAD = do_DELETE = _dispatch  # noqa: N815

    # -- routing -------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> None:
        sandbox = self.sandbox
        segments = [s for s in path.split("/") if s]
        if path.startswith("/_sandbox/"):
            self._introspect(method, segments[1:])
            return
        if segments[:1] == ["storage"] and len(segments) == 2:
            self._storage(segments[1])
            return
        if segments == ["oauth2", "token"] and method == "POST":
            if not self._transient_fault("token"):
                self._token()
            return
        if len(segments) < 4 or segments[1] != "applications":
            self._error(404, f"No route for {path}.")
            return
        version, community, rest = segments[0], segments[2], segments[3:]
        if sandbox.options.api_key and self.headers.get("x-api-key") != sandbox.options.api_key:
            self._error(403, "Missing or wrong x-api-key.")
            return
        if not sandbox.token_valid(self.headers.get("Authorization")):
            self._error(401, "The access token is missing, invalid or expired.")
            return
        key = self._fault_key(method, rest)
        if sandbox.expire_token_early(self.headers["Authorization"][7:].strip(), key):
            self._error(401, "The access token is missing, invalid or expired (sandbox fault token_expiry).")
            return
        if self._transient_fault(key):
            return
        if community != sandbox.options.community:
            self._error(404, f"Unknown community {community!r}.")
            return
        if version == "v1":
            self._v1(method, rest)
        elif version == "v2" and rest[:1] == ["data"]:
            self._v2(method, rest[1:])
        else:
            self._error(404, f"No route for {path}.")

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

    def _create_or_refuse(self, kind: str, activity_id: str | None, since: str | None) -> None:
        """Create the batch, or answer 429 while ``max_running_exports`` are in progress."""
        sandbox = self.sandbox
        limit = sandbox.options.max_running_exports
        with sandbox.create_lock:  # the count and the create as one step
            refused = limit is not None and sandbox.exports_in_progress() >= limit
            batch = None if refused else sandbox.create_batch(kind, activity_id, since)
        if batch is not None:
            self._send_batch_created(batch)
            return
        self._send_json(
            429,
            {
                "status": 429,
                "message": f"Too many exports in progress (at most {limit}; sandbox --max-running-exports).",
                "developerMessage": None,
                "errorId": str(uuid.uuid4()),
            },
            {"Retry-After": str(sandbox.options.retry_after)},
        )

    def _token(self) -> None:
        sandbox = self.sandbox
        raw = self._body().decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(raw).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                decoded = base64.b64decode(auth[6:]).decode()
                client_id, _, client_secret = decoded.partition(":")
            except ValueError:
                pass
        if sandbox.options.api_key and self.headers.get("x-api-key") != sandbox.options.api_key:
            self._error(401, "Invalid API key.")
            return
        if form.get("grant_type") != "client_credentials":
            self._error(400, "Unsupported grant_type; use client_credentials.")
            return
        if client_id != sandbox.options.client_id or client_secret != sandbox.options.client_secret:
            self._error(401, "Invalid client credentials.")
            return
        self._send_json(
            200,
            {
                "access_token": sandbox.issue_token(),
                "token_type": "Bearer",
                "expires_in": sandbox.options.token_ttl,
            },
        )

    def _collection(self, items: list[dict[str, Any]], path: str) -> None:
        sandbox = self.sandbox
        try:
            limit = int(self._query.get("limit", ["20"])[0])
            offset = int(self._query.get("offset", ["0"])[0])
        except ValueError:
            self._error(400, "limit and offset must be integers.")
            return
        limit = max(1, min(limit, 1000, sandbox.options.page_max))
        offset = max(0, offset)
        for key in ("status", "activityType", "name"):
            if key in self._query:
                wanted = self._query[key][0].lower()
                items = [i for i in items if str(i.get(key, "")).lower() == wanted]
        page = items[offset : offset + limit]
        base = f"{sandbox.base_url}{path}"
        links = [{"href": f"{base}?limit={limit}&offset=0", "rel": "first"}]
        if offset + limit < len(items):
            links.append({"href": f"{base}?limit={limit}&offset={offset + limit}", "rel": "next"})
        if offset > 0:
            links.append({"href": f"{base}?limit={limit}&offset={max(0, offset - limit)}", "rel": "prev"})
        self._send_json(
            200,
            {"items": page, "links": links, "meta": {"limit": limit, "offset": offset, "count": len(items)}},
        )

    def _v1(self, method: str, rest: list[str]) -> None:
        sandbox = self.sandbox
        path = urlsplit(self.path).path
        if method != "GET":
            self._error(405, "Method not allowed.")
        elif rest == ["activities"]:
            self._collection(list(sandbox.data.activities), path)
        elif len(rest) == 2 and rest[0] == "activities":
            activity = sandbox.activity(rest[1])
            if activity is None:
                self._error(404, f"Activity {rest[1]} was not found.")
            else:
                self._send_json(200, activity)
        elif rest == ["membervariables"]:
            self._collection(sandbox.data.member_variables(), path)
        else:
            self._error(404, f"No route for {path}.")

    def _v2(self, method: str, rest: list[str]) -> None:
        sandbox = self.sandbox
        # POST data/activities/{id}/responses/batch
        if (
            method == "POST"
            and len(rest) == 4
            and rest[0] == "activities"
            and rest[2:] == ["responses", "batch"]
        ):
            activity = sandbox.activity(rest[1])
            self._read_post_json()
            if activity is None:
                self._error(404, f"Activity {rest[1]} was not found.")
            elif not sandbox._exportable(activity):
                self._error(400, f"Activity {rest[1]} ({activity.get('activityType')}) cannot be exported.")
            else:
                self._create_or_refuse("activity", str(activity["id"]), None)
        elif method == "POST" and rest == ["members", "profiles", "batch"]:
            body = self._read_post_json()
            since = body.get("sinceDatetime") if isinstance(body, dict) else None
            if since is not None and parse_iso(since) is None:
                self._error(400, f"sinceDatetime {since!r} is not an ISO-8601 date-time.")
                return
            self._create_or_refuse("members", None, since)
        elif method == "GET" and len(rest) == 4 and rest[2] == "batch":
            kind = {("activities", "responses"): "activity", ("members", "profiles"): "members"}.get(
                (rest[0], rest[1])
            )
            found = sandbox.batches.get(rest[3])
            late = (
                found is not None
                and "late_status" in sandbox.options.quirks
                and time.monotonic() - found.created < LATE_STATUS_SECONDS
            )
            if kind is None or found is None or found.kind != kind or late:
                self._error(404, f"Batch {rest[3]} was not found.")
            else:
                self._send_json(200, sandbox.status(found))
        elif method == "GET" and len(rest) == 4 and rest[2] == "files":
            self._files(rest[3])
        else:
            self._error(404, "No such data route.")

    def _read_post_json(self) -> Any:
        raw = self._body()
        try:
            self._post_body = json.loads(raw) if raw.strip() else None
        except ValueError:
            self._post_body = {"_unparsable": raw[:200].decode("utf-8", "replace")}
        return self._post_body

    def _send_batch_created(self, batch: Batch) -> None:
        kind_path = "activities/responses" if batch.kind == "activity" else "members/profiles"
        community = quote(self.sandbox.options.community)
        location = f"{self.sandbox.base_url}/v2/applications/{community}/data/{kind_path}/batch/{batch.id}"
        if "empty_create" in self.sandbox.options.quirks:
            # Like Alida's other Web APIs: the resource only when asked for it.
            if (self.headers.get("x-webapi-return-resource") or "").lower() == "true":
                self._send_json(201, self.sandbox.status(batch))
            else:
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._status = 201
            return
        self._send_json(202, self.sandbox.status(batch), {"Location": location})

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
        self.send_response(302)
        self.send_header("Location", sandbox.storage_link(file_id, expired=expired))
        self.send_header("Content-Length", "0")
        self.end_headers()
        self._status = 302

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

    # -- /_sandbox ------------------------------------------------------------------------

    # The /_sandbox routes, as a table: (method, path segments with "*" for an id, handler).
    SANDBOX_ROUTES: tuple[tuple[str, tuple[str, ...], str], ...] = (
        ("GET", ("truth",), "_sandbox_truth"),
        ("GET", ("issued",), "_sandbox_issued"),
        ("GET", ("faults",), "_sandbox_faults"),
        ("GET", ("requests",), "_sandbox_requests"),
        ("POST", ("members", "touch"), "_sandbox_touch_members"),
        ("POST", ("activities",), "_sandbox_create_activity"),
        ("POST", ("activities", "*", "close"), "_sandbox_close_activity"),
        ("POST", ("activities", "*", "reopen"), "_sandbox_reopen_activity"),
        ("POST", ("activities", "*", "rename"), "_sandbox_rename_activity"),
        ("POST", ("activities", "*", "drift"), "_sandbox_drift"),
        ("POST", ("activities", "*", "responses", "delete"), "_sandbox_delete_responses"),
    )

    def _introspect(self, method: str, rest: list[str]) -> None:
        for route_method, pattern, handler in self.SANDBOX_ROUTES:
            if route_method == method and len(pattern) == len(rest):
                ids = [part for part, want in zip(rest, pattern, strict=True) if want == "*"]
                if all(want in ("*", part) for part, want in zip(rest, pattern, strict=True)):
                    getattr(self, handler)(*ids)
                    return
        self._error(404, "No such sandbox route.")

    def _generated(self, what: str, activity_id: str | None = None) -> Any:
        """The generated community (routes that change data need one), or None after a 400."""
        data = self.sandbox.data
        if not isinstance(data, GeneratedCommunity):
            self._error(400, f"{what} needs a generated community (not --fixtures).")
            return None
        if activity_id is not None and self.sandbox.activity(activity_id) is None:
            self._error(404, f"Activity {activity_id} was not found.")
            return None
        return data

    def _sandbox_truth(self) -> None:
        since = self._query.get("sinceDatetime", [None])[0]
        self._send_json(200, self.sandbox.truth(since))

    def _sandbox_issued(self) -> None:
        sandbox = self.sandbox
        with sandbox.lock:
            issued = {"tokens": list(sandbox.issued_tokens), "signatures": list(sandbox.signatures)}
        self._send_json(200, issued)

    def _sandbox_faults(self) -> None:
        faults = self.sandbox.options.faults
        with faults._lock:
            fired = dict(faults.fired)
        self._send_json(200, {"fired": fired})

    def _sandbox_requests(self) -> None:
        after = int(self._query.get("after", ["-1"])[0])
        with self.sandbox.lock:
            entries = [e for e in self.sandbox.requests if e["seq"] > after]
        self._send_json(200, entries)

    def _sandbox_touch_members(self) -> None:
        body = self._read_post_json() or {}
        effective = body.get("effectiveDate") or iso(dt.datetime.now(dt.UTC))
        changed = self.sandbox.touch_members(
            int(body.get("count", 1)), effective, body.get("value", "Updated")
        )
        self._send_json(200, {"changed": changed, "effectiveDate": effective})

    def _sandbox_create_activity(self) -> None:
        data = self._generated("Creating an activity")
        body = self._read_post_json() or {}
        name = body.get("name") if isinstance(body, dict) else None
        if data is None:
            return
        if not isinstance(name, str) or not name.strip():
            self._error(400, 'Send JSON {"name": …, "activityType": "Survey"}.')
            return
        self._send_json(201, data.add_activity(name, str(body.get("activityType") or "Survey")))

    def _sandbox_close_activity(self, activity_id: str) -> None:
        data = self._generated("Closing an activity", activity_id)
        if data is not None:
            self._send_json(200, data.close_activity(activity_id))

    def _sandbox_reopen_activity(self, activity_id: str) -> None:
        data = self._generated("Re-opening an activity", activity_id)
        if data is not None:
            self._send_json(200, data.reopen_activity(activity_id))

    def _sandbox_rename_activity(self, activity_id: str) -> None:
        data = self._generated("Renaming an activity", activity_id)
        body = self._read_post_json() or {}
        name = body.get("name") if isinstance(body, dict) else None
        if data is None:
            return
        if not isinstance(name, str) or not name.strip():
            self._error(400, 'Send JSON {"name": …}.')
            return
        self._send_json(200, data.rename_activity(activity_id, name))

    def _sandbox_drift(self, activity_id: str) -> None:
        data = self._generated("Drift", activity_id)
        body = self._read_post_json() or {}
        kinds = body.get("kinds") if isinstance(body, dict) else None
        if data is None:
            return
        try:
            self._send_json(200, data.drift(self._known_id(activity_id), tuple(kinds) if kinds else None))
        except ValueError as exc:
            self._error(400, str(exc))

    def _sandbox_delete_responses(self, activity_id: str) -> None:
        data = self._generated("Deleting responses", activity_id)
        body = self._read_post_json() or {}
        count = body.get("count") if isinstance(body, dict) else None
        if data is None:
            return
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            self._error(400, 'Send JSON {"count": N} with N >= 0.')
            return
        self._send_json(200, data.delete_responses(self._known_id(activity_id), count))

    def _known_id(self, activity_id: str) -> str:
        """The activity's id as the community spells it (the route may differ in case)."""
        activity = self.sandbox.activity(activity_id)
        assert activity is not None  # checked by _generated
        return str(activity["id"])


def _range_start(header: str) -> int | None:
    """Start offset of ``bytes=N-`` or ``bytes=N-M`` (the end is served to EOF)."""
    if not header.startswith("bytes="):
        return None
    first = header[6:].split(",", maxsplit=1)[0].strip()
    start, _, _ = first.partition("-")
    return int(start) if start.isdigit() else None


def make_server(sandbox: Sandbox, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("SandboxHandler", (Handler,), {"sandbox": sandbox})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    bound_host, bound_port = server.server_address[:2]
    host_text = bound_host.decode() if isinstance(bound_host, bytes) else str(bound_host)
    shown = f"[{host_text}]" if ":" in host_text else host_text
    sandbox.base_url = f"http://{shown}:{bound_port}"
    storage_host = sandbox.options.storage_host or ("localhost" if shown != "localhost" else "127.0.0.1")
    sandbox.storage_base = f"http://{storage_host}:{bound_port}"
    return server


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tap-alida-sandbox",
        description="A local Alida Batch Data Extract API for tests, demos and benchmarks. "
        "Prints its base URL on the first line of stdout.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--client-id", default="sandbox")
    parser.add_argument("--client-secret", default="sandbox")
    parser.add_argument("--community", default="sandbox")
    parser.add_argument("--api-key", default=None, help="require this x-api-key")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--activities", type=int, default=3, help="generated surveys (plus one forum)")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--responses", type=int, default=40, help="responses per activity")
    parser.add_argument("--fields", type=int, default=12, help="fields per activity (min. 1)")
    parser.add_argument(
        "--clean",
        action="store_true",
        help="no deliberate anomalies (no second value on single-value string/double answers): "
        "a clean community the tap has nothing to warn about",
    )
    parser.add_argument("--fixtures", type=Path, default=None, help="serve the files of DIR instead")
    parser.add_argument("--job-delay", type=float, default=0.0, help="seconds from pending to succeeded")
    parser.add_argument("--token-ttl", type=int, default=3600)
    parser.add_argument("--link-ttl", type=int, default=600)
    parser.add_argument("--redirect", choices=["302", "none"], default="302")
    parser.add_argument("--page-max", type=int, default=1000, help="largest page size served")
    parser.add_argument(
        "--faults",
        default=None,
        help="comma list of name=probability (0.2) or name=count (3): "
        + "; ".join(f"{k}: {v}" for k, v in FAULT_HELP.items()),
    )
    parser.add_argument("--storage-host", default=None, help="host name used in storage links")
    parser.add_argument(
        "--retry-after",
        type=int,
        default=1,
        help="Retry-After seconds of rate_limit and --max-running-exports",
    )
    parser.add_argument(
        "--max-running-exports",
        type=int,
        default=None,
        help="answer a create with 429 while this many exports are pending or running",
    )
    parser.add_argument(
        "--ranges", choices=["honour", "ignore"], default="honour", help="ignore: answer Range with 200"
    )
    parser.add_argument(
        "--quirks",
        type=parse_quirks,
        default=frozenset(),
        metavar="NAME[,NAME...]",
        help="answer shapes to serve: " + "; ".join(f"{k}: {v}" for k, v in QUIRK_HELP.items()),
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    data: CommunityData
    if args.fixtures:
        data = FixtureCommunity(args.fixtures)
    else:
        data = GeneratedCommunity(
            seed=args.seed,
            n_activities=args.activities,
            n_members=args.members,
            n_responses=args.responses,
            n_fields=args.fields,
            anomalies=not args.clean,
        )
    options = Options(
        community=args.community,
        client_id=args.client_id,
        client_secret=args.client_secret,
        api_key=args.api_key,
        job_delay=args.job_delay,
        token_ttl=args.token_ttl,
        link_ttl=args.link_ttl,
        redirect=args.redirect,
        page_max=args.page_max,
        storage_host=args.storage_host,
        retry_after=args.retry_after,
        max_running_exports=args.max_running_exports,
        ranges=args.ranges == "honour",
        quirks=args.quirks,
    )
    try:
        options.faults = Faults(args.faults, args.seed)
    except ValueError as exc:
        build_parser().error(str(exc))
    workdir = Path(tempfile.mkdtemp(prefix="alida-sandbox-"))
    sandbox = Sandbox(data, options, workdir)
    server = make_server(sandbox, args.host, args.port)
    print(sandbox.base_url, flush=True)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        shutil.rmtree(workdir, ignore_errors=True)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
