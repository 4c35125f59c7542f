"""The wall around singer-sdk's private parts: what the tap relies on still exists, and only
``tap_alida/sdk.py`` reaches past the SDK's public names."""

from __future__ import annotations

import ast
import inspect
from importlib.metadata import version
from pathlib import Path

from singer_sdk import Stream, Tap
from singer_sdk.authenticators import OAuthAuthenticator

PACKAGE = Path(__file__).resolve().parent.parent.parent / "tap_alida"


def test_the_pinned_sdk_still_has_what_the_wall_uses():
    assert version("singer-sdk").startswith("0.54."), "re-check every name in tap_alida/sdk.py"
    assert "_stream_version" in inspect.getsource(Stream.__init__)
    assert "_schema" in inspect.getsource(Stream.__init__)
    assert "_stream_maps" in inspect.getsource(Stream)
    assert callable(Stream._write_schema_message)
    params = inspect.signature(Stream._generate_record_messages).parameters
    assert list(params) == ["self", "record"]
    assert list(inspect.signature(Tap._validate_config).parameters) == ["self", "raise_errors"]
    assert "_oauth_headers" in inspect.getsource(OAuthAuthenticator.__init__)
    # the SDK still emits ACTIVATE_VERSION before the first record (why streams.base turns it off)
    sync = inspect.getsource(Stream.sync)
    assert sync.index("_write_activate_version_message") < sync.index("_sync_records")


def test_no_other_module_uses_a_private_sdk_name():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "sdk.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("singer_sdk"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private or any(part.startswith("_") for part in node.module.split(".")):
                    offenders.append(f"{path.name}: from {node.module} import {private}")
            if isinstance(node, ast.Attribute) and node.attr in {
                "_stream_version",
                "_schema",
                "_stream_maps",
                "_write_schema_message",
                "_generate_record_messages",
                "_validate_config",
                "_oauth_headers",
                "_default_expiration",
            }:
                offenders.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert offenders == []
