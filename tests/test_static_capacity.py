"""Static capacity: a pool's warm nodes as Karpenter's static NodePool, the feature gate, the limits they take and
their fixed cost line."""
from __future__ import annotations

import copy
import datetime

import pytest

from infra import cost
from policies.rules import cost as rule
from tests.conftest import synth_of
from tests.schemas import validate
from tests.test_config import error_of_raw, parse_stack, stack_raw

TODAY = datetime.date(2026, 12, 1)


def warm(raw: dict, **static) -> dict:
    raw["nodePools"]["nvidia"]["static"] = {"replicas": 2, "instanceType": "g6e.xlarge", **static}
    return raw


def manifest(stack: str, kind: str, name: str) -> dict:
    return next(m for m in synth_of(stack).result.manifests.values() if m["kind"] == kind and m["metadata"]["name"] == name)


def test_staging_keeps_one_gpu_node_warm_in_a_static_nodepool():
    static = manifest("staging", "NodePool", "nvidia-static")
    dynamic = manifest("staging", "NodePool", "nvidia")
    validate(static)
    spec = static["spec"]
    # One node above the replicas: room for a replacement to launch before the node it replaces goes.
    assert spec["replicas"] == 1 and "weight" not in spec and spec["limits"] == {"nodes": "2"}
    template = spec["template"]
    # The same node class, labels and taint as the pool: the pool's pods land on the warm node.
    assert template["spec"]["nodeClassRef"] == dynamic["spec"]["template"]["spec"]["nodeClassRef"]
    assert template["metadata"]["labels"] == dynamic["spec"]["template"]["metadata"]["labels"]
    assert template["spec"]["taints"] == dynamic["spec"]["template"]["spec"]["taints"]
    requirements = {r["key"]: r["values"] for r in template["spec"]["requirements"]}
    assert requirements["node.kubernetes.io/instance-type"] == ["g6e.xlarge"]
    assert requirements["karpenter.sh/capacity-type"] == ["on-demand"]
    # The warm node counts against the pool's limits: the dynamic NodePool gets what they leave.
    limits = parse_stack(stack_raw("staging")).node_pools.nvidia.limits
    assert dynamic["spec"]["limits"] == {
        "cpu": f"{limits.cpu - 4}",
        "memory": f"{limits.memory_gib - 32 * (1 - rule.VM_MEMORY_OVERHEAD):g}Gi",
        "nvidia.com/gpu": f"{limits.accelerators - 1}",
    }


def test_the_static_feature_gate_is_on_only_with_a_static_pool():
    gates = lambda s: synth_of(s).release("karpenter")["inputs"]["values"]["settings"].get("featureGates", {})  # noqa: E731
    assert gates("staging")["staticCapacity"] is True
    assert "staticCapacity" not in gates("prod") and "staticCapacity" not in gates("dev")
    assert not [m for s in ("dev", "prod") for m in synth_of(s).result.manifests.values() if m["kind"] == "NodePool" and "replicas" in m["spec"]]
    # Upstream names the gate so, and passes it to the controller (schemas/chart-sources/karpenter).
    from tests.conftest import ROOT

    assert "StaticCapacity={{ .Values.settings.featureGates.staticCapacity }}" in (
        ROOT / "schemas/chart-sources/karpenter/1.14.1/templates/deployment.yaml"
    ).read_text()


def test_static_nodes_are_a_fixed_line_and_are_not_priced_twice():
    table = rule.price_table("us-east-1")
    before = cost.checked_ceiling(parse_stack(stack_raw("prod")), TODAY)
    after = cost.checked_ceiling(parse_stack(warm(copy.deepcopy(stack_raw("prod")))), TODAY)
    line = next(i for i in after.items if i.name == "nvidia-static")
    pool = next(i for i in after.items if i.name == "nvidia")
    per_node = line.hourly_usd / 2 - table.instances["g6e.xlarge"]["usd"]
    assert line.kind == "fixed" and per_node > 0 and "2 x g6e.xlarge kept running" in line.detail
    assert line.drivers == {"nodePools.nvidia.static": line.hourly_usd}
    assert after.fixed == pytest.approx(before.fixed + line.hourly_usd)
    assert pool.hourly_usd < next(i for i in before.items if i.name == "nvidia").hourly_usd
    assert after.total <= before.total + line.hourly_usd


@pytest.mark.parametrize(
    "static, expected",
    [
        ({"replicas": 40}, "ml-platform:nodePools.nvidia.static.replicas 40 x g6e.xlarge take 40 nvidia.com/gpu, beyond the pool's limits.accelerators 32"),
        ({"instanceType": "p5.48xlarge"}, "ml-platform:nodePools.nvidia.static.instanceType p5.48xlarge is not one of the pool's instanceTypes"),
        ({"replicas": 0}, "ml-platform:nodePools.nvidia.static.replicas: 0 is not allowed"),
    ],
)
def test_bad_static_capacity_names_the_key(static, expected):
    assert expected in error_of_raw(warm(copy.deepcopy(stack_raw("prod")), **static))


def test_static_nodes_and_reservations_together_must_fit_the_limits():
    raw = copy.deepcopy(stack_raw("staging"))
    limit = raw["nodePools"]["nvidia"]["limits"]["accelerators"]
    raw = warm(raw, replicas=limit - 2)
    parse_stack(raw)  # the warm nodes + 2 reserved = the GPUs of the limit
    raw["nodePools"]["nvidia"]["static"]["replicas"] = limit - 1
    assert (f"nodePools.nvidia.static.replicas {limit - 1} x g6e.xlarge with its capacityReservations take {limit + 1} nvidia.com/gpu, "
            f"beyond the pool's limits.accelerators {limit}") in error_of_raw(raw)


def test_the_pack_takes_replicas_as_a_static_pools_bound():
    from tests.test_policies import broken, violations

    def unbounded(record: dict) -> None:
        del record["inputs"]["spec"]["replicas"]

    for name in ("node-pool-bounded", "accelerator-pool-guarded"):
        assert violations(name, synth_of("staging").resources, "staging") == []
    def no_node_limit(record: dict) -> None:
        del record["inputs"]["spec"]["limits"]

    records = broken("staging", "kubernetes:karpenter.sh/v1:NodePool", no_node_limit, "karpenter-nvidia-static-pool")
    assert [v["message"] for v in violations("node-pool-bounded", records, "staging")] == ["static pool has no nodes limit"]
    records = broken("staging", "kubernetes:karpenter.sh/v1:NodePool", unbounded, "karpenter-nvidia-static-pool")
    assert [v["message"] for v in violations("node-pool-bounded", records, "staging")] == ["pool has no cpu or memory limit"]
    assert [v["message"] for v in violations("accelerator-pool-guarded", records, "staging")] == [
        "pool launches nvidia.com/gpu instances but has no nvidia.com/gpu limit"
    ]
