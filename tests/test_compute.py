"""Karpenter, node pools and accelerator software as synthesized."""
from __future__ import annotations

import json

import pytest
import yaml

from infra.config.pins import PINS
from policies.rules.scheduling import matching_pools, tolerates
from tests.conftest import ROOT, synth_of
from tests.test_config import parse_stack, stack_raw

RELEASE = "kubernetes:helm.sh/v3:Release"
NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
NODECLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"


def release(stack, release_name: str) -> dict:
    found = [r for r in stack.of_type(RELEASE) if r["inputs"]["name"] == release_name]
    assert len(found) == 1, release_name
    return found[0]


def logical(pools: list[str]) -> list[str]:
    """Pool names with a pool's static NodePool (`<pool>-static`, same labels and taint) counted as the pool."""
    return sorted({p.removesuffix("-static") for p in pools})


def node_pools(stack) -> list[dict]:
    return [m for m in stack.result.manifests.values() if m["kind"] == "NodePool"]


def test_karpenter_chain_and_its_edges(stack):
    crd, controller = release(stack, "karpenter-crd"), release(stack, "karpenter")
    assert crd["inputs"]["chart"] == "oci://public.ecr.aws/karpenter/karpenter-crd"
    assert controller["inputs"]["chart"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert crd["inputs"]["version"] == controller["inputs"]["version"] == PINS["karpenter"]
    assert controller["inputs"]["skipCrds"] is True
    assert stack.depends_on(controller, crd)
    queue = stack.one("aws:sqs/queue:Queue")
    identity = stack.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "karpenter-controller")
    access = stack.one("aws:eks/accessEntry:AccessEntry", "karpenter-node")
    for prerequisite in (identity, access, stack.one("aws:sqs/queuePolicy:QueuePolicy")):
        assert stack.depends_on(controller, prerequisite), prerequisite["name"]
    settings = controller["inputs"]["values"]["settings"]
    reserving = any(m["spec"].get("capacityReservationSelectorTerms") for m in stack.result.manifests.values() if m["kind"] == "EC2NodeClass")
    static = any("replicas" in m["spec"] for m in node_pools(stack))
    gates = {**({"reservedCapacity": True} if reserving else {}), **({"staticCapacity": True} if static else {})}
    gates = {"featureGates": gates} if gates else {}
    assert settings == {"clusterName": stack.result.outputs["cluster"]["name"], "interruptionQueue": queue["outputs"]["name"], **gates}
    assert queue["inputs"]["sqsManagedSseEnabled"] is True
    assert identity["inputs"]["namespace"] == "kube-system" and identity["inputs"]["serviceAccount"] == "karpenter"
    assert identity["inputs"]["roleArn"] == stack.one("aws:iam/role:Role", "karpenter-controller")["outputs"]["arn"]
    assert access["inputs"]["type"] == "EC2_LINUX"
    assert access["inputs"]["principalArn"] == stack.one("aws:iam/role:Role", "karpenter-node")["outputs"]["arn"]


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Sub, !GetAtt, !Ref) as their plain values."""


for _tag in ("!Sub", "!GetAtt", "!Ref"):
    _CloudFormationLoader.add_constructor(_tag, lambda loader, node: loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else loader.construct_sequence(node))


def upstream_template() -> dict:
    return yaml.load((ROOT / "schemas" / "iam" / f"karpenter-{PINS['karpenter']}-cloudformation.yaml").read_text(), Loader=_CloudFormationLoader)


def upstream_controller_statements(substitutions: dict[str, str]) -> dict[str, dict]:
    """Karpenter's reference controller policy for the pinned version, its variables filled in for a stack."""
    statements = {}
    for resource in upstream_template()["Resources"].values():
        if resource["Type"] != "AWS::IAM::ManagedPolicy":
            continue
        document = resource["Properties"]["PolicyDocument"]
        for variable, value in substitutions.items():
            document = document.replace("${" + variable + "}", value)
        statements.update({st["Sid"]: st for st in json.loads(document)["Statement"]})
    return statements


def _as_set(value) -> set:
    return set(value) if isinstance(value, list) else {value}


def test_controller_policy_matches_the_upstream_reference_statement_by_statement(stack):
    queue, node_role = stack.one("aws:sqs/queue:Queue"), stack.one("aws:iam/role:Role", "karpenter-node")
    cluster_arn = stack.one("aws:eks/cluster:Cluster")["outputs"]["arn"]
    region, account = cluster_arn.split(":")[3], cluster_arn.split(":")[4]
    upstream = upstream_controller_statements({
        "AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": account,
        "ClusterName": stack.result.outputs["cluster"]["name"],
        "KarpenterNodeRole.Arn": node_role["outputs"]["arn"], "KarpenterInterruptionQueue.Arn": queue["outputs"]["arn"],
    })
    ours = {st["Sid"]: st for st in json.loads(stack.one("aws:iam/policy:Policy", "karpenter-controller")["inputs"]["policy"])["Statement"]}
    assert set(ours) == set(upstream), f"missing {sorted(set(upstream) - set(ours))}, extra {sorted(set(ours) - set(upstream))}"
    for sid, reference in upstream.items():
        mine = ours[sid]
        assert _as_set(mine["Action"]) == _as_set(reference["Action"]), sid
        assert _as_set(mine["Resource"]) == _as_set(reference["Resource"]), sid
        assert mine.get("Condition") == reference.get("Condition"), sid


def test_interruption_rules_are_upstreams_and_target_the_queue(stack):
    rules = {json.loads(r["inputs"]["eventPattern"])["detail-type"][0] for r in stack.of_type("aws:cloudwatch/eventRule:EventRule")}
    upstream = {r["Properties"]["EventPattern"]["detail-type"][0] for r in upstream_template()["Resources"].values() if r["Type"] == "AWS::Events::Rule"}
    assert rules == upstream and len(upstream) == 5
    queue_arn = stack.one("aws:sqs/queue:Queue")["outputs"]["arn"]
    targets = stack.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert len(targets) == len(upstream) and all(t["inputs"]["arn"] == queue_arn for t in targets)


def test_controller_runs_on_the_system_nodes(stack):
    values = release(stack, "karpenter")["inputs"]["values"]
    assert values["nodeSelector"]["ml-platform.io/pool"] == "system"
    system_taint = {"key": "CriticalAddonsOnly", "value": "true", "effect": "NoSchedule"}
    assert tolerates(values["tolerations"], system_taint)
    assert values["podDisruptionBudget"]["maxUnavailable"] == 1
    assert values["controller"]["resources"]["requests"]["memory"] == values["controller"]["resources"]["limits"]["memory"]


def test_controller_policy_has_no_unscoped_wildcard(stack):
    doc = json.loads(stack.one("aws:iam/policy:Policy", "karpenter-controller")["inputs"]["policy"])
    cluster = stack.result.outputs["cluster"]["name"]
    for st in doc["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        assert not any("*" in a for a in actions), st["Sid"]
        if "*" in resources:
            # Only region-bound reads and read-only APIs that take no resource ARN may name every resource.
            assert st.get("Condition") or actions in (["pricing:GetProducts"], ["iam:ListInstanceProfiles"]), st["Sid"]
        writes = [a for a in actions if a.split(":")[1].startswith(("Run", "Create", "Terminate", "Delete", "Add", "Remove", "Tag"))]
        if writes and st["Sid"] != "AllowScopedEC2InstanceAccessActions":
            scoped = cluster in json.dumps(st.get("Condition", {})) or all(cluster in r for r in resources)
            assert scoped, f"{st['Sid']} writes outside this cluster's resources"
    passrole = next(s for s in doc["Statement"] if s["Action"] == "iam:PassRole")
    assert passrole["Resource"] == stack.one("aws:iam/role:Role", "karpenter-node")["outputs"]["arn"]


def test_every_pool_and_class_depends_on_the_controller(stack):
    controller = release(stack, "karpenter")
    pools, classes = stack.of_type(NODEPOOL), stack.of_type(NODECLASS)
    assert sorted(p["inputs"]["metadata"]["name"] for p in pools if "replicas" not in p["inputs"]["spec"]) == ["cpu", "neuron", "nvidia"]
    assert len(classes) == 3
    for r in pools + classes:
        assert stack.depends_on(r, controller), r["name"]
    by_name = {c["inputs"]["metadata"]["name"]: c for c in classes}
    for p in pools:
        # A pool's static NodePool launches from the pool's own node class.
        assert stack.depends_on(p, by_name[p["inputs"]["spec"]["template"]["spec"]["nodeClassRef"]["name"]])


@pytest.mark.parametrize("pool, taint_key, resource", [("nvidia", "nvidia.com/gpu", "nvidia.com/gpu"), ("neuron", "aws.amazon.com/neuron", "aws.amazon.com/neuron")])
def test_accelerator_pools_carry_taints_limits_and_pinned_amis(stack, pool, taint_key, resource):
    spec = stack.result.manifests[f"nodepool--cluster--{pool}.yaml"]["spec"]
    assert spec["template"]["spec"]["taints"] == [{"key": taint_key, "value": "true", "effect": "NoSchedule"}]
    assert int(spec["limits"][resource]) > 0 and "cpu" in spec["limits"] and "memory" in spec["limits"]
    assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty"
    efa = {"ml-platform.io/efa": "true"} if getattr(getattr(parse_stack(stack_raw(stack.result.stack)).node_pools, pool), "efa", False) else {}
    assert spec["template"]["metadata"]["labels"] == {"ml-platform.io/pool": pool, "ml-platform.io/accelerator": pool, **efa}
    node_class = stack.result.manifests[f"ec2nodeclass--cluster--{pool}.yaml"]["spec"]
    alias = node_class["amiSelectorTerms"][0]["alias"]
    assert alias.startswith("al2023@v") and not alias.endswith("latest")
    assert node_class["metadataOptions"]["httpTokens"] == "required"
    assert node_class["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert node_class["blockDeviceMappings"][0]["ebs"]["encrypted"] is True
    assert node_class["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": stack.result.outputs["cluster"]["name"]}}]
    assert node_class["securityGroupSelectorTerms"][0] == {"id": stack.result.outputs["cluster"]["securityGroupId"]}
    assert len(node_class["securityGroupSelectorTerms"]) == (2 if efa else 1)


def test_cpu_pool_has_no_taint_and_the_highest_weight(stack):
    specs = {m["metadata"]["name"]: m["spec"] for m in node_pools(stack)}
    assert specs["cpu"]["template"]["spec"]["taints"] == []
    assert specs["cpu"]["weight"] > max(specs["nvidia"]["weight"], specs["neuron"]["weight"])
    assert "nvidia.com/gpu" not in specs["cpu"]["limits"]


def test_capacity_types_per_environment():
    dev, prod = synth_of("dev").result.outputs["nodePools"], synth_of("prod").result.outputs["nodePools"]
    assert all("spot" in dev[p]["capacityTypes"] for p in ("cpu", "nvidia", "neuron"))
    assert all(prod[p]["capacityTypes"] == ["on-demand"] for p in ("cpu", "nvidia", "neuron"))


def test_gpu_operator_and_neuron_tolerate_their_taints(stack):
    gpu = release(stack, "gpu-operator")["inputs"]
    assert gpu["repositoryOpts"]["repo"] == "https://helm.ngc.nvidia.com/nvidia" and gpu["version"] == PINS["gpu-operator"]
    values = gpu["values"]
    assert values["driver"]["enabled"] is False and values["toolkit"]["enabled"] is False
    assert values["dcgmExporter"]["enabled"] is True and values["devicePlugin"]["enabled"] is True and values["gfd"]["enabled"] is True
    gpu_taint = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
    neuron_taint = {"key": "aws.amazon.com/neuron", "value": "true", "effect": "NoSchedule"}
    assert tolerates(values["daemonsets"]["tolerations"], gpu_taint)
    assert not tolerates(values["daemonsets"]["tolerations"], neuron_taint)
    neuron = release(stack, "neuron")["inputs"]
    assert neuron["chart"] == "oci://public.ecr.aws/neuron/neuron-helm-chart"
    assert tolerates(neuron["values"]["devicePlugin"]["tolerations"], neuron_taint)
    assert not tolerates(neuron["values"]["devicePlugin"]["tolerations"], gpu_taint)
    # No scheduler extension: its kube-scheduler image is older than the cluster, and nothing of it lands on accelerators.
    assert neuron["values"]["scheduler"] == {"enabled": False} and neuron["values"]["npd"] == {"enabled": False}


def test_gpu_time_slicing_in_dev_only():
    dev = synth_of("dev")
    config_map = dev.result.manifests["configmap--gpu-operator--time-slicing-config.yaml"]
    assert "replicas: 4" in config_map["data"]["any"] and "nvidia.com/gpu" in config_map["data"]["any"]
    assert release(dev, "gpu-operator")["inputs"]["values"]["devicePlugin"]["config"] == {"name": "time-slicing-config", "default": "any"}
    prod = synth_of("prod")
    assert "config" not in release(prod, "gpu-operator")["inputs"]["values"]["devicePlugin"]
    assert not any("time-slicing" in f for f in prod.result.manifests)


def test_metrics_server_is_pinned_and_highly_available_in_prod():
    values = release(synth_of("prod"), "metrics-server")["inputs"]["values"]
    assert values["replicas"] == 2 and values["podDisruptionBudget"]["enabled"] is True


def deployment_targeting(pool_output: dict | None, resource_request: dict) -> dict:
    """A pod spec built the way an app team would, from the platform's stack outputs."""
    spec = {"containers": [{"name": "model", "image": "example/model:1.0", "resources": {"requests": resource_request, "limits": resource_request}}]}
    if pool_output:
        spec["nodeSelector"] = pool_output["nodeSelector"]
        if "toleration" in pool_output:
            spec["tolerations"] = [pool_output["toleration"]]
    return spec


@pytest.mark.parametrize(
    "pool, request_",
    [
        ("neuron", {"cpu": "2", "memory": "4Gi", "aws.amazon.com/neuron": "1"}),
        ("nvidia", {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}),
        ("cpu", {"cpu": "1", "memory": "2Gi"}),
    ],
)
def test_each_accelerator_request_matches_exactly_one_pool(stack, pool, request_):
    outputs = stack.result.outputs["nodePools"]
    pod = deployment_targeting(outputs[pool], request_)
    assert logical(matching_pools(pod, node_pools(stack))) == [pool]


def test_accelerator_request_without_toleration_matches_no_pool(stack):
    pod = deployment_targeting(None, {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"})
    assert matching_pools(pod, node_pools(stack)) == []
    # Tolerating the GPU taint is enough for the GPU pool, and only it.
    pod["tolerations"] = [stack.result.outputs["nodePools"]["nvidia"]["toleration"]]
    assert logical(matching_pools(pod, node_pools(stack))) == ["nvidia"]


def test_neuron_monitor_is_privileged_only_where_it_reads_the_devices(stack):
    spec = stack.result.manifests["daemonset--kube-system--neuron-monitor.yaml"]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"] + spec["initContainers"]}
    privileged = {name for name, c in containers.items() if c.get("securityContext", {}).get("privileged")}
    assert privileged == {"neuron-monitor"}
    assert containers["neuron-monitor"]["securityContext"]["readOnlyRootFilesystem"] is True
    for name in ("exporter", "pipe"):
        ctx = containers[name]["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"] == {"drop": ["ALL"]}
    exporter = containers["exporter"]
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(exporter)
    assert exporter["ports"] == [{"name": "metrics", "containerPort": 8000}] and exporter["readinessProbe"]["httpGet"]["port"] == "metrics"
    assert all(c["resources"]["limits"]["memory"] == c["resources"]["requests"]["memory"] for c in containers.values())
    assert spec["tolerations"] == [{"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}]
