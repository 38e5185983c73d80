"""The generated docs are current (policy table, configuration reference, stack file schema) and every shipped
stack file validates against the schema editors use."""
from __future__ import annotations

import copy
import re

import jsonschema
import pytest
import yaml

from infra.config.pins import PINS
from infra.offline.docs import generated, policy_table, stack_file_schema, stale_notes
from policies.rules import RULES
from tests.conftest import ROOT

STACKS = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))


@pytest.mark.parametrize("file,text", sorted(generated().items()), ids=lambda v: getattr(v, "name", ""))
def test_generated_doc_is_current(file, text):
    assert file.exists() and file.read_text() == text, f"{file.relative_to(ROOT)} is stale: .venv/bin/python -m infra.offline.docs"


def test_policy_table_is_the_pack():
    assert policy_table() in (ROOT / "docs" / "reference" / "policies.md").read_text()


def test_the_pack_has_at_least_thirty_rules():
    assert len(RULES) >= 30 and len({r.name for r in RULES}) == len(RULES)


@pytest.mark.parametrize("stack", STACKS, ids=lambda p: p.stem)
def test_stack_file_validates_against_the_schema(stack):
    jsonschema.Draft202012Validator(stack_file_schema()).validate(yaml.safe_load(stack.read_text()))


def test_schema_rejects_what_the_settings_reject():
    validator = jsonschema.Draft202012Validator(stack_file_schema())
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    unknown, typo, bad = copy.deepcopy(doc), copy.deepcopy(doc), copy.deepcopy(doc)
    unknown["config"]["ml-platform:netwerk"] = {}
    typo["config"]["ml-platform:network"]["azCont"] = 2
    bad["config"]["ml-platform:network"]["natGateways"] = "many"
    for broken in (unknown, typo, bad):
        assert not validator.is_valid(broken)
    secret = copy.deepcopy(doc)
    secret["config"]["ml-platform:alertingSecrets"] = {"oncall": {"secure": "v1:abc"}}
    assert validator.is_valid(secret)


def test_every_configuration_note_names_a_setting():
    assert stale_notes() == [], "docs/reference/configuration-notes.yaml names keys the settings do not have"


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# Pages other changes add alongside this one; a link to one of them is checked once it exists.


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", page.read_text(), flags=re.S))
    for target in LINK.findall(prose):
        if "://" in target or target.startswith("mailto:"):
            continue
        path = (page.parent / target).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def test_readme_fits_five_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) < 200


GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*/guide.md"))]


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_versions_in_the_guides_are_the_pins(page):
    """A release number in prose is a pin of infra/config/pins.py (or a prefix of one): a bump cannot leave it stale."""
    pins = set(PINS.values()) | {v.lstrip("v") for v in PINS.values()}
    for version in re.findall(r"(?<![\w./-])v?\d+\.\d+\.\d+(?![\w.-])", page.read_text()):
        assert version in pins, f"{page.relative_to(ROOT)} names {version}, which is no pin of infra/config/pins.py"


def test_example_readme_names_the_images_the_stacks_deploy():
    """Every sentiment-service tag a stack deploys is described in the example's README, and no other."""
    tags = lambda text: set(re.findall(r"sentiment-service:([\w.-]+)", text))  # noqa: E731
    shipped = set().union(*(tags(p.read_text()) for p in (ROOT / "stacks").glob("Pulumi.*.yaml")))
    readme = (ROOT / "examples" / "sentiment-service" / "README.md").read_text()
    described = tags(readme) | set(re.findall(r"`(\d+\.\d+\.\d+-\w+)`", readme))
    assert shipped and shipped == described
