"""The stack outputs are a versioned contract: every stack honours the schema, and changes stay compatible."""
from __future__ import annotations

import copy

import jsonschema
import pytest

from infra import contract
from infra.outputs import SCHEMA_VERSION
from tests.conftest import STACKS, synth_of

MAJOR = int(SCHEMA_VERSION.split(".")[0])


def test_every_shipped_stack_honours_the_contract(stack):
    jsonschema.Draft202012Validator(contract.load()).validate(stack.result.outputs)


def test_every_export_is_part_of_the_contract(stack):
    schema = contract.load()
    # An output of a feature the stack does not have (llmEndpoints) is absent; the required ones never are.
    assert set(schema["required"]) <= set(stack.result.outputs) <= set(schema["properties"])


def test_every_key_of_the_contract_is_exported_by_some_shipped_stack():
    assert set().union(*(synth_of(s).result.outputs for s in STACKS)) == set(contract.load()["properties"])


def test_schema_and_outputs_agree_on_the_major_version():
    schema = contract.load()
    assert schema["$id"].endswith(f":{MAJOR}")
    jsonschema.validate(SCHEMA_VERSION, schema["properties"]["schemaVersion"])


def test_contract_is_compatible_with_what_this_major_version_published():
    found = contract.incompatibilities(contract.baseline(MAJOR), contract.load())
    assert found == [], (
        f"incompatible with schemaVersion {MAJOR}.x: {found}. Either keep the change compatible, or bump "
        f"SCHEMA_VERSION to {MAJOR + 1}.0.0 and publish infra/contract/baseline-v{MAJOR + 1}.schema.json"
    )


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda s: s["properties"]["gateway"]["properties"].pop("hostname"), "/gateway/hostname: removed"),
        (lambda s: s["properties"]["cluster"]["required"].remove("endpoint"), "/cluster/endpoint: no longer always present"),
        (lambda s: s["properties"]["cluster"]["properties"]["version"].update(type="number"), "/cluster/version: type ['string'] became ['number']"),
        (lambda s: s["properties"]["workloads"]["additionalProperties"]["properties"]["kind"].update(enum=["serving"]), "values ['training'] were removed"),
        (lambda s: s["$defs"]["nodePool"]["properties"].pop("capacityTypes"), "/$defs/nodePool/capacityTypes: removed"),
    ],
)
def test_the_guard_catches_incompatible_changes(change, expected):
    changed = copy.deepcopy(contract.load())
    change(changed)
    assert any(expected in f for f in contract.incompatibilities(contract.baseline(MAJOR), changed))


def test_additions_are_compatible():
    changed = copy.deepcopy(contract.load())
    changed["properties"]["costs"] = {"type": "object"}
    changed["properties"]["cluster"]["properties"]["platformVersion"] = {"type": "string"}
    assert contract.incompatibilities(contract.baseline(MAJOR), changed) == []
