"""The placement check: what is pinned to the system node group fits it with one node lost."""
from __future__ import annotations

import pytest

from infra import synth
from policies.rules.capacity import allocatable, reserved_cpu_millicores
from infra.offline.policy_check import check
from policies.rules import placement
from tests.conftest import ROOT

SYSTEM = {"ml-platform.io/pool": "system"}
TOLERATION = {"key": "CriticalAddonsOnly", "operator": "Exists"}


def record(type_: str, name: str, props: dict) -> dict:
    return {
        "urn": f"urn:pulumi:test::ml-platform::{type_}::{name}", "type": type_, "name": name, "parent": None, "custom": True,
        "provider": None, "dependencies": [], "inputs": props, "outputs": props,
    }


def fixture(desired: int, instance_type: str = "m7i.large") -> list[dict]:
    """A system node group and two charts pinned to it: istiod (four replicas of 0.5 vCPU / 2 GiB) and
    metrics-server, whose requests and replica count come from the vendored chart defaults."""
    return [
        record(placement.NODE_GROUP, "system", {"instanceTypes": [instance_type], "labels": SYSTEM, "scalingConfig": {"desiredSize": desired}}),
        record(placement.HELM_RELEASE, "istiod", {
            "name": "istiod", "chart": "istiod", "version": "1.30.3",
            "values": {"replicaCount": 4, "nodeSelector": SYSTEM, "tolerations": [TOLERATION],
                       "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}}},
        }),
        record(placement.HELM_RELEASE, "metrics-server", {
            "name": "metrics-server", "chart": "metrics-server", "version": "3.13.1",
            "values": {"nodeSelector": SYSTEM, "tolerations": [TOLERATION]},
        }),
        record(placement.HELM_RELEASE, "fluent-bit", {
            "name": "fluent-bit", "chart": "fluent-bit", "version": "0.58.1",
            "values": {"tolerations": [{"operator": "Exists"}], "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}},
        }),
    ]


def capacity_violations(records: list[dict]) -> list[dict]:
    return check(records, "prod", rules=[placement.system_node_group_capacity])["violations"]


def test_eks_reserved_capacity_formula():
    # 6 % of the first core and 1 % of the second: two m7i.large allocate 3.86 vCPU.
    assert reserved_cpu_millicores(2) == 70
    assert reserved_cpu_millicores(8) == 60 + 10 + 2 * 5 + 4 * 2.5
    node = allocatable("m7i.large")
    assert (node.cpu, node.pods) == (1.93, 29)
    assert node.memory_gib == pytest.approx(8 - (11 * 29 + 255 + 100) / 1024)


def test_chart_defaults_fill_what_the_program_does_not_set():
    pods = placement.system_pods([type("R", (), {"resource_type": r["type"], "props": r["inputs"]}) for r in fixture(2)], SYSTEM)
    assert ("release metrics-server:(top)", 1, 0.1, pytest.approx(200 / 1024)) in pods
    assert ("release fluent-bit:(top)", None, 0.1, 0.25) in pods


def test_system_pods_beyond_the_node_group_fail_and_the_fixed_version_passes():
    [v] = capacity_violations(fixture(2))
    assert v["enforcement"] == "mandatory" and v["urn"].endswith("::system")
    # 2.1 vCPU pinned; one m7i.large left after losing one: 1.93 - 0.1 (the fluent-bit DaemonSet) = 1.83 vCPU.
    assert "short by 0.27 vCPU, 1.1 GiB" in v["message"]
    assert "ml-platform:cluster.systemNodeGroup.desiredSize and minSize to 3" in v["message"]
    assert capacity_violations(fixture(3)) == []
    assert capacity_violations(fixture(2, "m7i.xlarge")) == []


def test_unknown_instance_type_is_a_violation_naming_it():
    [v] = capacity_violations(fixture(3, "x9.huge"))
    assert "x9.huge" in v["message"] and "capacity table" in v["message"]


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_shipped_stacks_fit_with_a_node_lost(env):
    from tests.conftest import synth_of

    assert not [v for v in synth_of(env).result.policy["violations"] if v["policy"] == "system-node-group-capacity"]


def test_shrinking_a_shipped_system_node_group_fails_the_synth(tmp_path, capsys):
    text = (ROOT / "stacks" / "Pulumi.staging.yaml").read_text()
    shrunk = text.replace("instanceTypes: [m7i.xlarge]\n      minSize: 3\n      desiredSize: 3", "instanceTypes: [m7i.large]\n      minSize: 2\n      desiredSize: 2")
    assert shrunk != text
    (tmp_path / "Pulumi.staging.yaml").write_text(shrunk)
    assert synth.main(["--stack", "staging", "--config", str(tmp_path / "Pulumi.staging.yaml"), "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "[mandatory] system-node-group-capacity: system node group (2 x m7i.large)" in out
    assert "short by" in out and "vCPU" in out and "ml-platform:cluster.systemNodeGroup.desiredSize" in out


def test_unknown_instance_type_exits_2_naming_it(tmp_path, capsys):
    text = (ROOT / "stacks" / "Pulumi.prod.yaml").read_text().replace("instanceTypes: [m7i.xlarge]", "instanceTypes: [m7i.huge]")
    (tmp_path / "Pulumi.prod.yaml").write_text(text)
    assert synth.main(["--stack", "prod", "--config", str(tmp_path / "Pulumi.prod.yaml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "ml-platform:cluster.systemNodeGroup.instanceTypes" in err and "m7i.huge not in the capacity table" in err
