"""README, docs/, meltano.yml and `tap-alida --about` agree; every link and path the docs name exists."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from harness import ROOT, executable, run_meltano

from tap_alida.settings import CONFIG_SCHEMA


def load_dev() -> Any:
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_settings_page_is_what_dev_py_docs_generates():
    about = subprocess.run(
        [executable("tap-alida"), "--about", "--format=markdown"], capture_output=True, text=True, check=True
    ).stdout
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert page == load_dev().settings_page(about), "run `python3 dev.py docs`"
    for name in CONFIG_SCHEMA["properties"]:
        assert f"| {name} |" in page, name


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Backticked names that start with one of these are paths in this repository and must exist.
TRACKED_TOPS = ("tap_alida/", "alida_sandbox/", "tests/", "benchmarks/", "docs/", "meltano-hub/", ".ci/")
TRACKED_FILES = {"README.md", "CHANGELOG.md", "meltano.yml", "config.sample.json", "dev.py", "pyproject.toml"}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces → hyphens."""
    text = heading.strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}


def test_docs_pages_exist_and_every_relative_link_and_named_path_resolves():
    names = {p.name for p in PAGES}
    assert {"settings.md", "streams.md", "state.md", "loading.md", "api.md"} <= names
    assert {"troubleshooting.md", "performance.md", "sandbox.md", "development.md"} <= names
    broken = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.name}: link {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{page.name}: anchor {target}")
        for name in re.findall(r"`([^`\s]+)", text):
            name = name.rstrip(".,:;")
            named = name.startswith(TRACKED_TOPS) or name in TRACKED_FILES
            if named and not any(ROOT.glob(name.split("::")[0])):
                broken.append(f"{page.name}: path {name}")
    assert broken == []
    everything = "".join(p.read_text(encoding="utf-8") for p in PAGES)
    assert "alida-api.md" not in everything  # not in this repository: docs/api.md is
    assert "tests/test_object_storage.py" not in everything


def test_the_probe_cites_paragraphs_that_docs_api_md_has():
    probe = (ROOT / "tap_alida" / "probe.py").read_text(encoding="utf-8")
    cited = set(re.findall(r"§[0-9]+[a-z]?(?:\.[0-9]+)?", probe))
    headings = set(re.findall(r"^### (§\S+) ", (ROOT / "docs" / "api.md").read_text(encoding="utf-8"), re.M))
    assert cited and cited <= headings, cited - headings
    assert "alida-api.md" not in probe


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, len(lines)
    assert lines[5].startswith("python3 dev.py demo ") and lines[6].startswith("python3 dev.py test ")


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
