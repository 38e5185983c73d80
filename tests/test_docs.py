"""The generated docs are current (policy table, configuration reference, stack file schema) and every shipped
stack file validates against the schema editors use."""
from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from infra.docs import generated, policy_table, stack_file_schema, stale_notes
from policies.rules import RULES
from tests.conftest import ROOT

STACKS = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))


@pytest.mark.parametrize("file,text", sorted(generated().items()), ids=lambda v: getattr(v, "name", ""))
def test_generated_doc_is_current(file, text):
    assert file.exists() and file.read_text() == text, f"{file.relative_to(ROOT)} is stale: .venv/bin/python -m infra.docs"


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
