"""Production safety lives in policy: deleting a promise from the prod stack file is refused, not quietly defaulted."""
from __future__ import annotations

import copy

import pytest
import yaml

from infra.config import ConfigError
from infra.offline.policy_check import enforcement_levels
from infra.synth import synthesize
from tests.conftest import ROOT, lean
from tests.test_config import parse_stack, stack_raw

PROD = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())


def mandatory_after_removing(tmp_path, *path: str) -> set[str]:
    doc = copy.deepcopy(PROD)
    node = lean(doc["config"])
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    stack_file = tmp_path / "Pulumi.prod.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    result = synthesize("prod", stack_file)
    return {v["policy"] for v in result.mandatory_violations}


@pytest.mark.parametrize(
    "path, rule",
    [
        (("ml-platform:cluster", "deletionProtection"), "eks-deletion-protection"),
        (("ml-platform:storage", "backups"), "efs-backups-enabled"),
        (("ml-platform:storage", "protect"), "stateful-storage-protected"),
        (("ml-platform:mesh", "istiodReplicas"), "control-plane-replicated"),
        (("ml-platform:cluster", "systemNodeGroup", "minSize"), "control-plane-replicated"),
    ],
)
def test_removing_a_prod_promise_is_a_mandatory_violation(tmp_path, path, rule):
    assert mandatory_after_removing(tmp_path, *path) == {rule}


@pytest.mark.parametrize("pool", ["cpu", "nvidia", "neuron"])
def test_removing_a_pools_limits_is_a_config_error_naming_the_key(pool):
    raw = copy.deepcopy(stack_raw("prod"))
    del raw["nodePools"][pool]["limits"]
    with pytest.raises(ConfigError, match=rf"ml-platform:nodePools\.{pool}\.limits: required key is missing; set cpu, memoryGib"):
        parse_stack(raw)


def test_the_promises_are_mandatory_in_prod_only():
    rules = ("eks-deletion-protection", "efs-backups-enabled", "control-plane-replicated", "node-pool-bounded")
    prod, dev = enforcement_levels("prod"), enforcement_levels("dev")
    assert {prod[r].value for r in rules} == {"mandatory"}
    assert dev["eks-deletion-protection"].value == "disabled" and dev["control-plane-replicated"].value == "disabled"
