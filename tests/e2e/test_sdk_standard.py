"""The SDK's standard tap tests, pointed at a fixture sandbox.

The factory builds the tap at collection time (to parametrise per stream and
property), so the sandbox starts when this module is imported and stops at exit.
The SDK's primary-key test cannot fail (it compares generator objects), so
``test_primary_keys_are_unique`` below checks uniqueness for real.
"""

from __future__ import annotations

import atexit
import json
from collections import Counter

from harness import FIXED_STREAM_KEYS, FIXTURES, Sandbox, discover, run_tap, select_all
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_alida.tap import TapAlida

SANDBOX = Sandbox("--fixtures", str(FIXTURES))
atexit.register(SANDBOX.stop)
CONFIG = SANDBOX.config()

TestTapAlida = get_tap_test_class(
    TapAlida,
    config=CONFIG,
    parse_env_config=False,
    suite_config=SuiteConfig(max_records_limit=100),
)


def test_primary_keys_are_unique(tmp_path):
    run = run_tap(tmp_path, CONFIG, catalog=select_all(discover(tmp_path, CONFIG)))
    assert run.returncode == 0, run.stderr
    assert len(run.records) >= 5
    for stream, rows in run.records.items():
        keys = FIXED_STREAM_KEYS.get(stream, ("activity_id", "response_id"))
        counts = Counter(json.dumps([row[k] for k in keys]) for row in rows)
        assert counts and max(counts.values()) == 1, f"{stream}: duplicate primary keys"
