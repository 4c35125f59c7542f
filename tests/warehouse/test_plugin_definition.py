"""The Hub-style plugin definition agrees with `tap-alida --about --format=json` and meltano.yml.

`python3 dev.py docs` rewrites meltano-hub/extractors/tap-alida/tap-alida.yml; this
test fails when the tap's settings, meltano.yml and that file drift apart.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml
from harness import ROOT, executable, run_meltano

PLUGIN_FILE = ROOT / "meltano-hub" / "extractors" / "tap-alida" / "tap-alida.yml"
HUB_FIELDS = {
    "name",
    "namespace",
    "variant",
    "label",
    "description",
    "pip_url",
    "repo",
    "capabilities",
    "settings",
    "settings_group_validation",
}
# JSON Schema type → Meltano kind. `number` → `integer`: see the comment on kinds in
# meltano.yml (Meltano 4.4 cannot write a `decimal` value that came from a string).
KINDS = {"string": "string", "integer": "integer", "number": "integer", "boolean": "boolean"}
KINDS |= {"array": "array", "object": "object"}


@pytest.fixture(scope="module")
def about() -> dict[str, Any]:
    done = subprocess.run(
        [executable("tap-alida"), "--about", "--format=json"], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def hub() -> dict[str, Any]:
    return yaml.safe_load(PLUGIN_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def project_tap() -> dict[str, Any]:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    return next(p for p in project["plugins"]["extractors"] if p["name"] == "tap-alida")


def expected_kind(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "options"
    if prop.get("format") == "date-time":
        return "date_iso8601"
    return KINDS[next(t for t in prop["type"] if t != "null")]


def test_hub_definition_has_the_fields_hub_requires(hub):
    assert set(hub) >= HUB_FIELDS
    for name in HUB_FIELDS:
        assert hub[name], name
    assert hub["name"] == "tap-alida"
    assert hub["namespace"] == "tap_alida"
    assert hub["pip_url"] == "tap-alida"  # from the package index, not `-e .`


def test_every_setting_matches_about(hub, about):
    properties = about["settings"]["properties"]
    settings = {s["name"]: s for s in hub["settings"]}
    assert list(settings) == [s["name"] for s in hub["settings"]], "duplicate setting names"
    assert set(settings) == set(properties)
    for name, prop in properties.items():
        setting = settings[name]
        assert setting["kind"] == expected_kind(prop), name
        assert setting["label"] and setting["description"], name
        assert bool(setting.get("sensitive")) == bool(prop.get("secret")), name
        assert setting.get("value") == prop.get("default"), name
        if "enum" in prop:
            assert [o["value"] for o in setting["options"]] == prop["enum"], name
    assert {n for n, s in settings.items() if s.get("sensitive")} == {
        "client_secret",
        "api_key",
        "sensitive_values_salt",
    }
    # The required settings are in every group of settings_group_validation.
    for group in hub["settings_group_validation"]:
        assert set(about["settings"]["required"]) <= set(group)
        assert set(group) <= set(properties)


def test_capabilities_are_the_same_in_about_meltano_yml_and_the_hub_file(hub, project_tap, about):
    """`tap-alida --about`, meltano.yml and the Hub definition list the same capabilities, in order."""
    assert about["capabilities"] == project_tap["capabilities"] == hub["capabilities"]
    markdown = subprocess.run(
        [executable("tap-alida"), "--about", "--format=markdown"], capture_output=True, text=True, check=True
    ).stdout
    for capability in about["capabilities"]:
        assert f"`{capability}`" in markdown, capability
    help_text = subprocess.run(
        [executable("tap-alida"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--test" in help_text  # the `test` capability: `tap-alida --test`
    assert {"batch", "test", "activate-version", "schema-flattening", "stream-maps"} <= set(
        about["capabilities"]
    )


def test_hub_definition_is_meltano_yml_plugin(hub, project_tap, about):
    for key in ("namespace", "label", "description", "executable", "settings_group_validation"):
        assert hub[key] == project_tap[key], key
    ours = [s for s in hub["settings"] if s["name"] in {t["name"] for t in project_tap["settings"]}]
    assert ours == project_tap["settings"]
    # meltano.yml declares every setting of the tap's own (the SDK's built-ins are the Hub file's extra).
    builtins = {s["name"] for s in hub["settings"]} - {s["name"] for s in ours}
    assert builtins == {
        "stream_maps",
        "stream_map_config",
        "faker_config",
        "flattening_enabled",
        "flattening_max_depth",
        "flattening_max_key_length",
        "flattening_separator",
        "batch_config",
    }
    for setting in project_tap["settings"]:
        assert {"kind", "label", "description"} <= set(setting), setting["name"]
        assert setting["label"] == about["settings"]["properties"][setting["name"]]["title"], setting["name"]


def test_meltano_passes_a_fractional_wait_from_meltano_yml(tmp_path):
    """`kind: integer` still lets meltano.yml's 0.2 through as a number, and an env var's whole seconds."""
    project = tmp_path / "project"
    project.mkdir()
    text = (
        (ROOT / "meltano.yml")
        .read_text()
        .replace(
            "community_api_key_name: sandbox\n",
            "community_api_key_name: sandbox\n          max_wait_seconds: 0.2\n",
        )
    )
    (project / "meltano.yml").write_text(text)
    env = {"MELTANO_PROJECT_ROOT": str(project), "MELTANO_ENVIRONMENT": "sandbox"}
    printed = run_meltano(tmp_path, "config", "print", "tap-alida", env=env, timeout=120)
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert json.loads(printed.stdout)["max_wait_seconds"] == 0.2
    env["TAP_ALIDA_MAX_WAIT_SECONDS"] = "120"
    printed = run_meltano(tmp_path, "config", "print", "tap-alida", env=env, timeout=120)
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert json.loads(printed.stdout)["max_wait_seconds"] == 120
