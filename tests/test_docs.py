"""README, meltano.yml and `tap-alida --about` agree."""

from __future__ import annotations

import re
import subprocess

import yaml
from conftest import ROOT, executable

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
        == {"client_secret", "api_key"}
    )
