"""The sandbox Alida server: a real HTTP server on loopback (``docs/sandbox.md``).

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
import shutil
import signal
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from alida_sandbox.api_routes import ApiRoutes
from alida_sandbox.community import CommunityData
from alida_sandbox.fixtures import FixtureCommunity
from alida_sandbox.generated import GeneratedCommunity
from alida_sandbox.introspection import SandboxRoutes
from alida_sandbox.options import FAULT_HELP, QUIRK_HELP, Faults, Options, parse_quirks
from alida_sandbox.state import Sandbox


class Handler(SandboxRoutes, ApiRoutes):
    """Every route of the sandbox; ``_route`` sends each request to its handler."""

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
        "--anomalies",
        action="store_true",
        help="deliberate anomalies: a second value on 2 %% of single-value string/double answers "
        "(the tap warns) and open surveys with a close scheduled years ahead; without it the "
        "community reads like real survey data and the tap has nothing to warn about",
    )
    parser.add_argument("--clean", action="store_true", help="no anomalies: the default (kept for scripts)")
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
            anomalies=args.anomalies and not args.clean,
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
