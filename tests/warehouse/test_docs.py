"""README, meltano.yml and `tap-alida --about` agree."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from harness import ROOT, executable, run_meltano

from tap_alida.settings import CONFIG_SCHEMA


def test_readme_settings_table_is_the_about_output():
    about = subprocess.run(
        [executable("tap-alida"), "--about", "--format=markdown"], capture_output=True, text=True, check=True
    ).stdout
    about_rows = [line for line in about.splitlines() if line.startswith("| ")]
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"<!-- settings:start -->(.*)<!-- settings:end -->", readme, re.S)
    assert section is not None
    readme_rows = [line for line in section.group(1).splitlines() if line.startswith("| ")]
    assert readme_rows == about_rows


def test_meltano_yml_declares_every_setting_and_marks_secrets():
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    tap = next(p for p in project["plugins"]["extractors"] if p["name"] == "tap-alida")
    declared = {s["name"]: s for s in tap["settings"]}
    assert set(declared) == set(CONFIG_SCHEMA["properties"])
    secrets = {name for name, prop in CONFIG_SCHEMA["properties"].items() if prop.get("secret")}
    assert (
        secrets
        == {name for name, s in declared.items() if s.get("sensitive")}
        == {"client_secret", "api_key", "sensitive_values_salt"}
    )
    for name, prop in CONFIG_SCHEMA["properties"].items():  # choices and defaults agree
        if "enum" in prop:
            assert declared[name]["kind"] == "options"
            assert [o["value"] for o in declared[name]["options"]] == prop["enum"]
            assert declared[name]["value"] == prop["default"]


def test_meltano_yml_validates_and_meltano_lists_the_settings(tmp_path):
    import json

    import jsonschema
    import meltano.core

    schema_path = Path(meltano.core.__file__).parent.parent / "schemas" / "meltano.schema.json"
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    jsonschema.validate(project, json.loads(schema_path.read_text()))  # raises on any violation
    listed = run_meltano(tmp_path, "config", "list", "tap-alida", "--all", timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    for name in CONFIG_SCHEMA["properties"]:
        assert f"{name} " in listed.stdout + listed.stderr, name
    assert "deprecated" not in listed.stderr
