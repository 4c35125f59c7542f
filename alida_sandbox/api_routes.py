"""The API's routes: token, /v1 listings, /v2 batch create and status (with faults and the export cap)."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from alida_sandbox.community import parse_iso
from alida_sandbox.file_routes import FileRoutes
from alida_sandbox.options import LATE_STATUS_SECONDS
from alida_sandbox.state import Batch


class ApiRoutes(FileRoutes):
    """Token, ``/v1`` (activities, member variables), ``/v2`` batches and their files."""

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
        quirks = sandbox.options.quirks
        offset = 0 if "paging_repeat" in quirks else max(0, offset)
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
        body: dict[str, Any] = {"items": page, "links": links}
        body["meta"] = {"limit": limit, "offset": offset, "count": len(items)}
        if "paging_empty_links" in quirks or "paging_bare" in quirks:
            body["links"] = []
        if "paging_bare" in quirks:
            del body["links"]
        if "paging_no_meta" in quirks or "paging_bare" in quirks:
            del body["meta"]
        self._send_json(200, body)

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
