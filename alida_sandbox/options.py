"""The sandbox's switches: command-line options, faults and quirks, and what each does."""

from __future__ import annotations

import argparse
import hashlib
import threading
from dataclasses import dataclass, field

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

# --quirks: answer shapes Alida may use where its docs are silent (docs/api.md §12b).
# Unlike faults they hold for every request of the run.
QUIRK_HELP = {
    "capitalised_status": "status words Pending/Running/Succeeded/Failed",
    "lowercase_errormessage": "error text under errormessage instead of errorMessage",
    "empty_create": "create answers an empty 201 unless the request has x-webapi-return-resource: true",
    "json_link": "the files route answers 200 JSON {url: storage link} instead of a 302",
    "location_200": "the files route answers 200 with Location: storage link and an empty body",
    "location_201": "the files route answers 201 with Location: storage link and an empty body",
    "location_202": "the files route answers 202 with Location: storage link and an empty body",
    "location_json_body": "with location_2xx: the body is a JSON file description, not empty",
    "paging_empty_links": "collections answer links: [] (meta still counts every item)",
    "paging_no_meta": "collections answer without meta (links[rel=next] only)",
    "paging_bare": "collections answer items only: no links, no meta",
    "paging_repeat": "collections ignore offset: every page is the first one",
    "bom_files": "export files start with a UTF-8 byte-order mark (EF BB BF)",
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

    def arm(self, counts: dict[str, object]) -> dict[str, int]:
        """Set counted faults at run time (``{"fail_job": 3}``; 0 disarms); the counts now remaining."""
        with self._lock:
            for name, count in counts.items():
                if name not in FAULT_NAMES or not isinstance(count, int) or count < 0:
                    raise ValueError(f"arm faults as {{name: count}}; known names: {', '.join(FAULT_NAMES)}")
                self.remaining[name] = count
            return dict(self.remaining)

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
