"""What the sandbox server holds: tokens, batches and their files, storage links, the request log."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alida_sandbox.community import CommunityData, MemberOverlay, iso, write_member_file
from alida_sandbox.options import CHUNK, REQUEST_LOG_LIMIT, Options

UTF8_BOM = b"\xef\xbb\xbf"  # quirk bom_files: what a Windows tool writes in front of UTF-8 text


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
            if "bom_files" in self.options.quirks:
                batch.segments = [UTF8_BOM, *batch.segments]
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
            entry = {
                "id": a["id"],
                "name": a.get("name"),
                "activityType": a.get("activityType"),
                "status": a.get("status"),
                "closedOn": a.get("closedOn"),
            }
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
