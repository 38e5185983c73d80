"""GPU sharing: MIG on the nvidia pool (its node label and the instance types that allow it) and its bad input."""
from __future__ import annotations

import copy

import pytest

from components.accelerators import gpu_operator_values
from components.karpenter import MIG_CONFIG_LABEL, mig_labels, node_pool_spec, static_node_pool_spec
from infra.lib.accelerators import NEURON, NVIDIA
from tests.schemas import validate
from tests.test_config import error_of_raw, parse_stack, stack_raw


def with_sharing(raw: dict, types: list[str] | None = None, **sharing) -> dict:
    raw.setdefault("accelerators", {}).setdefault("gpuOperator", {})["sharing"] = sharing
    if types:
        raw["nodePools"]["nvidia"]["instanceTypes"] = types
    return raw


def test_mig_labels_the_nvidia_nodes_with_their_partition_and_validates_against_the_crd():
    raw = with_sharing(copy.deepcopy(stack_raw("prod")), ["p4d.24xlarge", "p5.48xlarge"], strategy="mig", migConfig="all-1g.10gb")
    raw["nodePools"]["nvidia"]["static"] = {"replicas": 1, "instanceType": "p5.48xlarge"}
    raw["nodePools"]["nvidia"]["limits"] = {"cpu": 512, "memoryGib": 4096, "accelerators": 16}
    raw["budget"]["maxHourlyUsd"] = 10000
    cfg = parse_stack(raw)
    sharing = cfg.accelerators.gpu_operator.sharing
    assert mig_labels(NVIDIA, sharing) == {MIG_CONFIG_LABEL: "all-1g.10gb"} and mig_labels(NEURON, sharing) == {}
    for spec in (node_pool_spec("nvidia", cfg.node_pools.nvidia, NVIDIA), static_node_pool_spec("nvidia", cfg.node_pools.nvidia, NVIDIA)):
        spec["template"]["metadata"]["labels"].update(mig_labels(NVIDIA, sharing))
        validate({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "nvidia"}, "spec": spec})
    values = gpu_operator_values(cfg.accelerators.gpu_operator, {}, {})
    assert values["mig"] == {"strategy": "single"} and values["migManager"] == {"enabled": True}
    # Without MIG no node carries the label (the shipped stacks).
    assert mig_labels(NVIDIA, parse_stack(stack_raw("prod")).accelerators.gpu_operator.sharing) == {}


@pytest.mark.parametrize(
    "types, sharing, expected",
    [
        (None, {"strategy": "mig", "migConfig": "all-1g.10gb"},
         "ml-platform:accelerators.gpuOperator.sharing.strategy mig: nodePools.nvidia.instanceTypes ['g5.xlarge', 'g5.2xlarge', 'g5.4xlarge', 'g6.xlarge', 'g6.2xlarge', 'g6e.xlarge', 'g6e.2xlarge'] have GPUs without MIG"),
        (["p5.48xlarge"], {"strategy": "mig"}, "ml-platform:accelerators.gpuOperator.sharing.migConfig is required with strategy mig"),
        (["p5.48xlarge"], {"strategy": "mig", "migConfig": "all-1g.10gb", "migStrategy": "mixed"}, "ml-platform:accelerators.gpuOperator.sharing.migStrategy mixed advertises"),
        (None, {"strategy": "timeSlicing", "migConfig": "all-1g.10gb"}, "ml-platform:accelerators.gpuOperator.sharing.migConfig is set but strategy is 'timeSlicing'"),
    ],
)
def test_bad_gpu_sharing_names_the_key(types, sharing, expected):
    assert expected in error_of_raw(with_sharing(copy.deepcopy(stack_raw("prod")), types, **sharing))
