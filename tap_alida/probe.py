"""``tap-alida --probe``: the fewest real calls that show how a tenant answers, as a JSON report.

Token, ``/activities`` (first page), ``/membervariables``, one member export with
``sinceDatetime`` = now (tiny), and one activity export when one is given
(``--probe ACTIVITY_ID``): each create → poll → file → one ranged GET. The calls go through the
tap's own client and export code (an ``Observer`` on the client records each
response), so the probe sees what a sync would. The report lists per call the
HTTP statuses, header names, key paths with value types, status words, timings,
link lifetime, Range and gzip use, and the deviations from ``docs/api.md``,
each ``tolerated`` (the tap copes) or ``blocking``. It holds no value: see
``probe_shapes``. Exit code 1 when anything is blocking.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests

from tap_alida import __version__
from tap_alida.errors import AlidaError, APIError, BatchCancelledError, BatchFailedError, ExportFailedError
from tap_alida.export.api import BatchExports, created_batch
from tap_alida.export.batch import ACTIVITY, MEMBERS, Batch
from tap_alida.export.scheduler import Admission
from tap_alida.export.status import BatchState, classify, status_word
from tap_alida.http.client import AlidaClient
from tap_alida.http.paging import describe as describe_paging
from tap_alida.http.paging import signals as page_signals
from tap_alida.http.policy import RETRY_STATUSES
from tap_alida.http.urls import safe_url
from tap_alida.modelling.types import canonical_type, format_datetime
from tap_alida.probe_shapes import Call, key_types, link_lifetime, safe_key, safe_word, scan_file

logger = logging.getLogger("tap_alida.probe")

TOLERATED, BLOCKING = "tolerated", "blocking"
# Where a report's deviations point: the API assumptions page of the repository.
API_DOC = "docs/api.md"
DOCUMENTED_WORDS = ("pending", "running", "succeeded", "failed")  # §3.2
SHORT_LINK_SECONDS = 60
REDIRECTS = (301, 302, 303, 307, 308)
PROBE_PAGE = 20  # items asked for on the first page of a collection
# Top-level keys of export files (§4): missing → blocking (the tap cannot read it) or tolerated.
FILE_KEYS = {
    ACTIVITY: ({"definition", "records"}, {"id", "datasetId"}),
    MEMBERS: ({"members"}, {"id", "lastSyncDate"}),
}


class Probe:
    def __init__(self, client: AlidaClient, activity_id: str | None = None) -> None:
        self.client = client
        self.activity_id = activity_id
        self.settings = client.settings
        self.exports = BatchExports(client)
        self.admission = Admission(
            client.stop, self.settings.max_wait_to_start, self.settings.max_retry_after
        )
        self.calls: list[Call] = []
        self.deviations: list[dict[str, str]] = []
        client.observer = client.authenticator.observer = self._observe

    # -- recording -----------------------------------------------------------------

    @contextmanager
    def call(self, name: str) -> Iterator[Call]:
        self.calls.append(Call(name))
        yield self.calls[-1]

    def deviate(self, what: str, severity: str, section: str) -> None:
        """``section``: the paragraph(s) of docs/api.md that describe what was expected."""
        if not any(d["what"] == what for d in self.deviations):
            where = f"{API_DOC} {section}"
            self.deviations.append({"what": what, "severity": severity, "section": where})

    def _observe(self, response: requests.Response, streamed: bool) -> None:
        call = self.calls[-1]
        call.requests += 1
        if response.status_code not in call.statuses:
            call.statuses.append(response.status_code)
        if safe_url(response.url) not in call.urls:
            call.urls.append(safe_url(response.url))
        call.headers.update(response.headers.keys())
        api = self.client.is_api_host(response.url)
        call.hops.append((api, response.status_code))
        if api and response.headers.get("Location") and response.status_code not in REDIRECTS:
            call.located.append(response.status_code)
        if not api:
            call.links.append((response.url, dict(response.headers)))
        if streamed or not response.content:
            return
        try:
            body = response.json()
        except ValueError:
            return
        key_types(body, call.keys if response.status_code < 400 else call.error_keys)
        if isinstance(body, Mapping) and response.status_code < 400:
            call.top_keys.update(safe_key(k) for k in body)
            word = status_word(body)
            if word and safe_word(word) not in call.words:
                call.words.append(safe_word(word))

    # -- the calls -----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        with self.call("token") as call:
            try:
                self.client.authenticator.update_access_token()
            except AlidaError as exc:
                call.extra["error"] = str(exc)
                # Not answered: the tap's message names the URL and why (refused, no such host).
                what = f"refused (HTTP {call.statuses[-1]})" if call.statuses else f"not answered ({exc})"
                self.deviate(f"token request {what}", BLOCKING, "§1.3")
                return self.report()
        self.collection("activities", "v1", "activities")
        self.collection("membervariables", "v1", "membervariables")
        since = format_datetime(dt.datetime.now(dt.UTC))
        self.export("member export", MEMBERS, lambda: self.create_members(since))
        activity = self.activity_id
        if activity:
            label = f"activity {activity}"
            self.export(
                "activity export", ACTIVITY, lambda: self.exports.create_activity_batch(activity, label)
            )
        return self.report()

    def collection(self, name: str, version: str, path: str) -> None:
        with self.call(name) as call:
            try:
                response = self.client.request(
                    "GET",
                    self.client.url(version, path),
                    what=f"list {path}",
                    params={"limit": PROBE_PAGE, "offset": 0},
                )
                page = response.json()
            except (AlidaError, ValueError) as exc:
                call.extra["error"] = str(exc) if isinstance(exc, AlidaError) else "not JSON"
                self.deviate(f"/{path} failed ({call.extra['error'][:120]})", BLOCKING, "§7.1")
                return
            items = page.get("items") if isinstance(page, Mapping) else None
            if not isinstance(items, list):
                self.deviate(f"/{path} answered without an 'items' list", BLOCKING, "§7.1")
                return
            call.extra["items_on_first_page"] = len(items)
            paging = page_signals(page, response.url)
            call.extra["paging"] = words = describe_paging(paging, len(items), PROBE_PAGE)
            more_without_link = paging.next_link is None and (paging.count or 0) > len(items)
            if paging.count is None or more_without_link or "capped" in words:
                self.deviate(f"/{path} pages as: {words}", TOLERATED, "§7.1")
            if path == "membervariables":
                types = {i.get("dataType", i.get("datatype")) for i in items if isinstance(i, Mapping)}
                call.extra["data_types"] = sorted(safe_word(t) for t in types if t is not None)

    def create_members(self, since: str) -> Batch:
        """The member create as documented (no x-webapi-return-resource header), to see its answer."""
        url = self.client.url("v2", "data/members/profiles/batch")
        body = {"sinceDatetime": since}
        response = self.client.request("POST", url, what="create a member export", json=body)
        status, batch_id = created_batch(response)
        if batch_id is None and not response.content and "Location" not in response.headers:
            self.deviate(
                "create answered an empty body (no batch id, no Location) without the header "
                "x-webapi-return-resource: true; the tap sends that header",
                TOLERATED,
                "§2, §12b",
            )
            return self.exports.create_member_batch(since)  # as a sync does: with the header
        if batch_id is None:
            raise APIError(f"no batch id in the create answer (HTTP {response.status_code})")
        return Batch(MEMBERS, batch_id, f"member profiles (since {since})", status=status, since=since)

    def export(self, name: str, kind: str, create: Callable[[], Batch]) -> None:
        """Create, await and download one export, then ask for its first bytes with ``Range``;
        a step that deviates is recorded and ends the export."""
        batch = self._create(name, create)
        if batch is None or not self._await(name, batch):
            return
        try:
            link = self.exports.file_link(batch)
        except AlidaError:
            self.deviate(f"{name}: succeeded without a download link", BLOCKING, "§3.2")
            return
        if self._download(name, kind, link):
            self._check_range(name, link)

    def _create(self, name: str, create: Callable[[], Batch]) -> Batch | None:
        with self.call(f"{name}: create") as call:
            try:
                # A 429 is waited out as in a sync (``scheduler.Admission``), not reported as a refusal.
                return self.admission.create(create, name)
            except AlidaError as exc:
                call.extra["error"] = str(exc)
                last = call.statuses[-1] if call.statuses else None
                what = "no batch id at all" if last and last < 300 else f"create refused (HTTP {last})"
                self.deviate(f"{name}: {what}", BLOCKING, "§2")
                return None

    def _await(self, name: str, batch: Batch) -> bool:
        """Whether the batch succeeded (its status checked against the contract either way)."""
        with self.call(f"{name}: status") as call:
            try:
                self.exports.wait(batch)
            except (BatchCancelledError, BatchFailedError) as exc:
                call.extra["error"] = str(exc)
                word = safe_word(status_word(batch.status))
                self.deviate(f"{name}: batch ended {word!r}, not succeeded", BLOCKING, "§3.2")
                return False
            except ExportFailedError as exc:  # the wait limits
                call.extra["error"] = str(exc)
                self.deviate(f"{name}: status never terminal within the probe's time limit", BLOCKING, "§3.2")
                return False
            except AlidaError as exc:
                call.extra["error"] = str(exc)
                self.deviate(
                    f"{name}: status could not be read (HTTP {call.statuses[-1:]})", BLOCKING, "§3.1"
                )
                return False
            finally:
                self.check_status_objects(name)
            call.extra["create_to_done_seconds"] = round(time.monotonic() - batch.created_at, 2)
        return True

    def _download(self, name: str, kind: str, link: str) -> bool:
        """Whether the file could be downloaded (its shape checked by ``check_file``)."""
        with self.call(f"{name}: file") as call:
            try:
                response = self.client.open_file(
                    link, what=f"download the {name} file", headers={"Accept-Encoding": "gzip"}
                )
                try:
                    call.extra.update(self.check_file(name, kind, call, response))
                finally:
                    response.close()
            except AlidaError as exc:
                call.extra["error"] = str(exc)
                self.deviate(f"{name}: the file could not be downloaded", BLOCKING, "§3.3")
                return False
        return True

    def _check_range(self, name: str, link: str) -> None:
        with self.call(f"{name}: range") as call:
            headers = {"Range": "bytes=0-99", "Accept-Encoding": "identity"}
            try:
                response = self.client.open_file(
                    link, what=f"read the first bytes of the {name} file", headers=headers
                )
                response.close()
            except AlidaError as exc:
                call.extra["error"] = str(exc)
                self.deviate(f"{name}: ranged GET failed", TOLERATED, "§3.3")
                return
            call.extra["range_honoured"] = response.status_code == 206
            if response.status_code != 206:
                what = f"Range not honoured (HTTP {response.status_code}): a broken download restarts"
                self.deviate(f"{name}: {what}", TOLERATED, "§3.3")

    # -- checks --------------------------------------------------------------------

    def check_status_objects(self, name: str) -> None:
        calls = [c for c in self.calls if c.name in (f"{name}: create", f"{name}: status")]
        capitalised = []
        for word in (w for c in calls for w in c.words):
            state = classify(word)
            if state is BatchState.UNKNOWN:
                self.deviate(f"unknown status word {word!r} (waited on as pending)", TOLERATED, "§3.2")
            elif word not in DOCUMENTED_WORDS and word.lower() in DOCUMENTED_WORDS:
                capitalised.append(word)
            elif word.lower() not in DOCUMENTED_WORDS and state is not BatchState.CANCELLED:
                self.deviate(f"undocumented status word {word!r} (read as {state.value})", TOLERATED, "§3.2")
        if capitalised:
            words = ", ".join(dict.fromkeys(capitalised))
            self.deviate(f"capitalised status words ({words})", TOLERATED, "§3.2, §12b")
        if any(404 in c.statuses for c in calls if c.name.endswith("status")):
            self.deviate("a new batch's status answered 404 for a while", TOLERATED, "§3.2")
        keys = {k for c in calls for k in c.top_keys}
        if "errorMessage" not in keys and any(k.lower() == "errormessage" for k in keys):
            self.deviate("status object has 'errormessage', not 'errorMessage'", TOLERATED, "§3.2, §12b")

    def check_file(self, name: str, kind: str, call: Call, response: requests.Response) -> dict[str, Any]:
        answers = [status for api, status in call.hops if api and status not in RETRY_STATUSES | {401}]
        route = "file served by the files route"
        if any(not api for api, _ in call.hops):
            route = "redirect" if answers and answers[-1] in REDIRECTS else "JSON {url}"
        if call.located:
            route = f"Location on HTTP {call.located[-1]}"
            self.deviate(
                f"{name}: files route answered {call.located[-1]} with a Location header, not a redirect",
                TOLERATED,
                "§3.3",
            )
        elif route == "JSON {url}":
            self.deviate(
                f"{name}: files route answered 200 JSON {{url}}, not a redirect", TOLERATED, "§3.3, §12b"
            )
        found: dict[str, Any] = {"files_route": route, "file_http_status": response.status_code}
        found["content_encoding"] = safe_word(response.headers.get("Content-Encoding", "identity"))
        found["gzip"] = found["content_encoding"].lower() == "gzip"
        if call.links:
            lifetime, source = link_lifetime(*call.links[0])
            found.update(link_lifetime_seconds=lifetime, link_lifetime_from=source)
            if lifetime is not None and lifetime < SHORT_LINK_SECONDS:
                what = f"storage link lives {lifetime} s (under {SHORT_LINK_SECONDS} s)"
                self.deviate(f"{name}: {what}", TOLERATED, "§3.3, §12b")
        found.update(scan_file(response))
        if not found["json"]:
            self.deviate(f"{name}: the file is not JSON", BLOCKING, "§4")
            return found
        if found["complete"]:
            needed, expected = FILE_KEYS[kind]
            top = set(found["top_level_keys"])
            for key in sorted(needed - top):
                self.deviate(f"{name}: the file has no top-level {key!r}", BLOCKING, "§4")
            for key in sorted(expected - top):
                self.deviate(f"{name}: the file has no top-level {key!r}", TOLERATED, "§4")
        for data_type in found["data_types"]:
            if canonical_type(data_type) is None:
                self.deviate(f"{name}: undocumented dataType {data_type!r} (read as text)", TOLERATED, "§5")
        return found

    def report(self) -> dict[str, Any]:
        return {
            "probe": f"tap-alida {__version__} --probe",
            "api": safe_url(self.settings.base_url),
            "community": self.settings.community,
            "time_limit_seconds": self.settings.max_wait,
            "calls": [c.report() for c in self.calls],
            "deviations": self.deviations,
            "blocking": sum(d["severity"] == BLOCKING for d in self.deviations),
        }


def run(client: AlidaClient, activity_id: str | None = None) -> int:
    """Probe (``activity_id``: also export that activity), print the report to stdout, return
    the exit code (1: something is blocking)."""
    report = Probe(client, activity_id).run()
    sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    blocking = [d["what"] for d in report["deviations"] if d["severity"] == BLOCKING]
    if blocking:
        what = "; ".join(blocking)
        logger.error("The probe found blocking deviations from what %s describes: %s.", API_DOC, what)
        return 1
    logger.info("The probe found no blocking deviation (%d tolerated).", len(report["deviations"]))
    return 0
