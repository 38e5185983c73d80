"""EFA pools: the instance-type table and its source, the config that refuses types without EFA, the security
group EFA needs, the device plugin and the policy rule."""
from __future__ import annotations

import copy

import pytest
import yaml

from infra.config import ConfigError
from infra.config.pins import PINS
from infra.lib.accelerators import NEURON, NVIDIA, family_of
from policies.rules import efa
from tests.conftest import ROOT, synth_of
from tests.test_config import parse_stack, stack_raw
from tests.test_policies import violations
from tests.test_preflight import aws  # noqa: F401 (a fixture)


def test_the_table_is_the_device_plugin_charts_accelerator_types():
    values = yaml.safe_load((ROOT / "schemas" / "charts" / "aws-efa-k8s-device-plugin" / PINS["aws-efa-k8s-device-plugin"] / "values.yaml").read_text())
    supported = values["supportedInstanceLabels"]["values"]
    assert efa.EFA_INSTANCE_TYPES == {t for t in supported if family_of(t) in NVIDIA.families | NEURON.families}
    assert {"p4d.24xlarge", "p5.48xlarge", "p5en.48xlarge", "trn1.32xlarge", "trn2.48xlarge"} <= efa.EFA_INSTANCE_TYPES
    # The plugin's DaemonSet does not run on inf2 (its chart lists no inf2 type), so no inf2 pool can offer EFA.
    assert not any(t.startswith("inf2.") for t in efa.EFA_INSTANCE_TYPES)


def test_efa_on_a_type_without_it_names_the_key_and_the_type():
    raw = copy.deepcopy(stack_raw("prod"))
    raw["nodePools"]["nvidia"].update(efa=True, instanceTypes=["p5.48xlarge", "g6e.xlarge"])
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    message = str(exc.value)
    assert "ml-platform:nodePools.nvidia.efa is on but instanceTypes ['g6e.xlarge'] have no EFA" in message
    assert "g6e.8xlarge" in message and message.count("\n") == 1


def test_the_synth_exits_2_on_efa_without_support(tmp_path, capsys):
    from infra import synth

    text = (ROOT / "stacks" / "Pulumi.staging.yaml").read_text().replace("instanceTypes: [trn1.32xlarge]", "instanceTypes: [trn1.2xlarge]")
    (tmp_path / "Pulumi.staging.yaml").write_text(text)
    assert synth.main(["--stack", "staging", "--config", str(tmp_path / "Pulumi.staging.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "ml-platform:nodePools.neuron.efa is on but instanceTypes ['trn1.2xlarge'] have no EFA" in capsys.readouterr().err


def test_staging_efa_pool_gets_a_self_referencing_group_before_its_nodes():
    s = synth_of("staging")
    group = s.one("aws:ec2/securityGroup:SecurityGroup", "karpenter-efa")
    assert group["inputs"]["vpcId"] == s.one("aws:ec2/vpc:Vpc")["outputs"]["id"]
    assert not group["inputs"].get("ingress") and not group["inputs"].get("egress")
    rules = [s.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "karpenter-efa-in"), s.one("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")]
    for rule in rules:
        assert rule["inputs"]["ipProtocol"] == "-1"
        assert rule["inputs"]["securityGroupId"] == rule["inputs"]["referencedSecurityGroupId"] == group["outputs"]["id"]
        assert "cidrIpv4" not in rule["inputs"]
    classes = {r["inputs"]["metadata"]["name"]: r for r in s.of_type("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")}
    assert {"id": group["outputs"]["id"]} in classes["neuron"]["inputs"]["spec"]["securityGroupSelectorTerms"]
    assert all(s.depends_on(classes["neuron"], rule) for rule in rules)
    assert all({"id": group["outputs"]["id"]} not in classes[p]["inputs"]["spec"]["securityGroupSelectorTerms"] for p in ("cpu", "nvidia"))
    pool = next(r for r in s.of_type("kubernetes:karpenter.sh/v1:NodePool") if r["inputs"]["metadata"]["name"] == "neuron")
    assert pool["inputs"]["spec"]["template"]["metadata"]["labels"][efa.EFA_LABEL] == "true"


def test_the_device_plugin_runs_only_on_efa_nodes_tolerating_exactly_their_taints():
    release = synth_of("staging").release("aws-efa-k8s-device-plugin")
    assert release["inputs"]["repositoryOpts"] == {"repo": "https://aws.github.io/eks-charts"}
    assert release["inputs"]["version"] == PINS["aws-efa-k8s-device-plugin"]
    values = release["inputs"]["values"]
    assert values["nodeSelector"] == {efa.EFA_LABEL: "true"}
    assert values["tolerations"] == [{"key": NEURON.taint_key, "operator": "Exists", "effect": "NoSchedule"}]
    assert values["resources"]["limits"]["memory"] == values["resources"]["requests"]["memory"]
    assert values["resources"]["limits"].get("cpu") is None


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stacks_without_efa_pools_have_neither_plugin_nor_group(stack):
    s = synth_of(stack)
    assert not [r for r in s.of_type("kubernetes:helm.sh/v3:Release") if r["inputs"]["name"] == "aws-efa-k8s-device-plugin"]
    assert not [r for r in s.of_type("aws:ec2/securityGroup:SecurityGroup") if r["name"] == "karpenter-efa"]


def test_the_rule_names_each_type_without_efa():
    records = copy.deepcopy(synth_of("staging").resources)
    pool = next(r for r in records if r["type"] == "kubernetes:karpenter.sh/v1:NodePool" and r["name"] == "karpenter-neuron-pool")
    types = next(q for q in pool["inputs"]["spec"]["template"]["spec"]["requirements"] if q["key"] == "node.kubernetes.io/instance-type")
    types["values"] += ["trn1.2xlarge", "inf2.48xlarge"]
    found = violations("efa-instance-types", records, "staging")
    assert sorted(v["message"] for v in found) == [
        f"instance type {t} has no EFA, but the pool is labelled {efa.EFA_LABEL}=true" for t in ("inf2.48xlarge", "trn1.2xlarge")
    ]
    assert all(v["enforcement"] == "mandatory" for v in found)


@pytest.mark.usefixtures("aws")
def test_preflight_asks_ec2_whether_each_efa_type_carries_it():
    from infra import preflight
    from tests.test_preflight import REGION, by_name, clients_with

    raw = copy.deepcopy(stack_raw("prod")) | {"region": REGION}
    raw["nodePools"]["neuron"].update(efa=True, instanceTypes=["trn1.32xlarge"], limits={"cpu": 512, "memoryGib": 2048, "accelerators": 32})
    cfg = parse_stack(raw)
    check = by_name(preflight.run_checks(cfg, clients_with(cfg=cfg)))["EFA: nodePools.neuron"]
    assert check.status == preflight.PASS and check.detail == "EFA on every type (most EFA interfaces: trn1.32xlarge 8)"
    assert "EFA: nodePools.nvidia" not in by_name(preflight.run_checks(cfg, clients_with(cfg=cfg)))
    lacking = preflight.check_efa(cfg.model_copy(update={"node_pools": cfg.node_pools.model_copy(update={
        "neuron": cfg.node_pools.neuron.model_copy(update={"instance_types": ["trn1.32xlarge", "trn1.2xlarge"]})})}), clients_with(cfg=cfg))
    assert [(c.status, c.detail) for c in lacking] == [(preflight.FAIL, "EC2 reports no EFA on trn1.2xlarge in us-east-1")]
