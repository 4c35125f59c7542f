"""The /_sandbox routes: truth, request log, and the changes tests make to the community between runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from alida_sandbox.community import iso
from alida_sandbox.generated import GeneratedCommunity
from alida_sandbox.handler import BaseHandler


class SandboxRoutes(BaseHandler):
    """``/_sandbox/*``: read the truth and the logs, change the community."""

    # -- /_sandbox ------------------------------------------------------------------------

    # The /_sandbox routes, as a table: (method, path segments with "*" for an id, handler).
    SANDBOX_ROUTES: tuple[tuple[str, tuple[str, ...], str], ...] = (
        ("GET", ("truth",), "_sandbox_truth"),
        ("GET", ("issued",), "_sandbox_issued"),
        ("GET", ("faults",), "_sandbox_faults"),
        ("POST", ("faults",), "_sandbox_arm_faults"),
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

    def _sandbox_arm_faults(self) -> None:
        """``POST /_sandbox/faults {"fail_job": 3}``: fire these faults the next N times from now
        on (0: never again); a test that drives a long-lived sandbox faults one night only."""
        body = self._read_post_json() or {}
        try:
            armed = self.sandbox.options.faults.arm(body if isinstance(body, dict) else {})
        except ValueError as exc:
            self._error(400, str(exc))
            return
        self._send_json(200, {"remaining": armed})

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
