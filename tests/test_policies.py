"""Every rule passes on the shipped stacks and fails on a resource broken the way it forbids."""
from __future__ import annotations

import copy
import json
from typing import Callable

import pytest

from infra.offline.policy_check import check, enforcement_levels
from policies.rules import RULES
from tests.conftest import synth_of

RULES_BY_NAME = {r.name: r for r in RULES}


UNPROTECT = "__unprotect"


def violations(rule: str, records: list[dict], stack: str = "prod") -> list[dict]:
    protected = {u for u in synth_of(stack).result.protected if not any(r["urn"] == u and r.get(UNPROTECT) for r in records)}
    return check(records, stack, rules=[RULES_BY_NAME[rule]], protected=protected)["violations"]


def broken(stack: str, type_: str, mutate: Callable[[dict], None], name: str | None = None) -> list[dict]:
    """The stack's records with one resource of the type mutated."""
    records = copy.deepcopy(synth_of(stack).resources)
    target = next(r for r in records if r["type"] == type_ and (name is None or r["name"] == name))
    original_inputs = set(target["inputs"])
    mutate(target)
    mirror_outputs(target, original_inputs)
    return records


def mirror_outputs(record: dict, original_inputs: set[str]) -> None:
    """Outputs are the inputs plus what the provider computes (ids, ARNs, status), as in the mock engine."""
    computed = {k: v for k, v in record["outputs"].items() if k not in original_inputs}
    record["outputs"] = {**computed, **copy.deepcopy(record["inputs"])}


def unprotect(record: dict) -> None:
    record[UNPROTECT] = True


def set_in(path: list[str], value):
    def mutate(record: dict) -> None:
        node = record
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def remove_in(path: list[str]):
    def mutate(record: dict) -> None:
        node = record
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


EKS = "eks:index:Cluster"
DEPLOY, HPA, JOB = "kubernetes:apps/v1:Deployment", "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "kubernetes:batch/v1:Job"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


def pod(record: dict) -> dict:
    return record["inputs"]["spec"]["template"]["spec"]


def first_container(record: dict) -> dict:
    return pod(record)["containers"][0]


def data_on_empty_dir(spec: dict) -> None:
    spec["volumes"] = [v if v["name"] != "data" else {"name": "data", "emptyDir": {}} for v in spec["volumes"]]
CASES = {
    "eks-endpoint-not-world-open": ("prod", EKS, lambda r: r["inputs"].update(endpointPublicAccess=True, publicAccessCidrs=["0.0.0.0/0"])),
    "eks-endpoint-private": ("prod", EKS, set_in(["inputs", "endpointPublicAccess"], True)),
    "eks-control-plane-logging": ("prod", EKS, set_in(["inputs", "enabledClusterLogTypes"], ["api", "audit"])),
    "eks-secrets-encryption": ("prod", EKS, remove_in(["inputs", "encryptionConfigKeyArn"])),
    "eks-api-authentication": ("prod", EKS, set_in(["inputs", "authenticationMode"], "CONFIG_MAP")),
    "kms-key-rotation": ("prod", "aws:kms/key:Key", set_in(["inputs", "enableKeyRotation"], False)),
    "node-imdsv2": ("prod", "aws:ec2/launchTemplate:LaunchTemplate", set_in(["inputs", "metadataOptions", "httpPutResponseHopLimit"], 2)),
    "default-security-group-closed": (
        "prod", "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
        set_in(["inputs", "ingress"], [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]),
    ),
    "iam-no-unscoped-wildcard": (
        "prod", "aws:iam/policy:Policy",
        set_in(["inputs", "policy"], json.dumps({"Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]})),
    ),
    "required-tags": ("prod", "aws:ec2/vpc:Vpc", lambda r: r["inputs"]["tags"].pop("cost-center")),
    "kubernetes-single-provider": ("prod", "kubernetes:storage.k8s.io/v1:StorageClass", set_in(["provider"], None)),
    "helm-release-pinned": ("prod", "kubernetes:helm.sh/v3:Release", set_in(["inputs", "version"], "^1.0.0")),
    "accelerator-pool-guarded": (
        "prod", "kubernetes:karpenter.sh/v1:NodePool",
        lambda r: r["inputs"]["spec"]["limits"].pop("nvidia.com/gpu"), "karpenter-nvidia-pool",
    ),
    "karpenter-ami-pinned": (
        "prod", "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass",
        set_in(["inputs", "spec", "amiSelectorTerms"], [{"alias": "al2023@latest"}]),
    ),
    "custom-resource-after-its-crd": ("prod", "kubernetes:karpenter.sh/v1:NodePool", set_in(["dependencies"], [])),
    "security-group-no-world-ingress": (
        "prod", "aws:ec2/securityGroup:SecurityGroup",
        lambda r: r["inputs"]["ingress"][0].update(cidrBlocks=["0.0.0.0/0"], securityGroups=[]), "storage-efs",
    ),
    "efs-encrypted-with-cmk": ("prod", "aws:efs/fileSystem:FileSystem", remove_in(["inputs", "kmsKeyId"])),
    "stateful-storage-protected": ("prod", "aws:efs/fileSystem:FileSystem", unprotect),
    "loadbalancer-only-for-gateway": (
        "prod", "kubernetes:core/v1:Service", set_in(["inputs", "spec", "selector"], {"app": "sentiment"}), "mesh-gateway-nlb",
    ),
    **{
        rule: ("prod", DEPLOY, mutate, "nlp-sentiment-stable")
        for rule, mutate in {
            "container-resource-requests": lambda r: first_container(r)["resources"].pop("requests"),
            "memory-limit-equals-request": lambda r: first_container(r)["resources"]["limits"].update(memory="16Gi"),
            "image-pinned": lambda r: first_container(r).update(image="111122223333.dkr.ecr.us-east-1.amazonaws.com/sentiment-service:latest"),
            "no-host-access-outside-system": lambda r: pod(r).update(hostNetwork=True),
            "workload-non-root": lambda r: first_container(r)["securityContext"].update(allowPrivilegeEscalation=True),
            "serving-probes": lambda r: first_container(r).pop("livenessProbe"),
            "service-account-token-not-mounted": lambda r: pod(r).update(automountServiceAccountToken=True),
        }.items()
    },
    "hpa-names-metrics": ("prod", HPA, remove_in(["inputs", "spec", "metrics"]), "nlp-sentiment-stable"),
    "hpa-custom-metric-served": (
        "prod", HPA,
        set_in(["inputs", "spec", "metrics"], [{"type": "Pods", "pods": {"metric": {"name": "queue_depth"}, "target": {"type": "AverageValue", "averageValue": "10"}}}]),
        "nlp-sentiment-stable",
    ),
    "vpa-not-fighting-hpa": (
        "staging", "kubernetes:autoscaling.k8s.io/v1:VerticalPodAutoscaler", set_in(["inputs", "spec", "updatePolicy", "updateMode"], "Recreate"), "nlp-sentiment-stable-vpa",
    ),
    "serving-highly-available": ("prod", HPA, set_in(["inputs", "spec", "minReplicas"], 1), "nlp-sentiment-stable"),
    "no-emptydir-for-data": ("dev", JOB, lambda r: data_on_empty_dir(pod(r)), "nlp-sentiment-finetune-job"),
    "accelerator-toleration": ("dev", JOB, lambda r: pod(r).pop("tolerations"), "nlp-sentiment-finetune-job"),
    "job-deadline-and-ttl": ("dev", JOB, remove_in(["inputs", "spec", "activeDeadlineSeconds"]), "nlp-sentiment-finetune-job"),
    "training-not-disrupted": ("dev", JOB, lambda r: r["inputs"]["spec"]["template"]["metadata"].pop("annotations"), "nlp-sentiment-finetune-job"),
    "team-namespace-restricted": (
        "staging", "kubernetes:core/v1:Namespace",
        lambda r: r["inputs"]["metadata"]["labels"].update({"pod-security.kubernetes.io/enforce": "baseline"}), "tenancy-nlp",
    ),
    "team-namespace-guardrails": ("staging", "kubernetes:core/v1:ResourceQuota", set_in(["inputs", "metadata", "namespace"], "elsewhere")),
    "await-prerequisites-in-graph": ("dev", "kubernetes:core/v1:PersistentVolumeClaim", set_in(["dependencies"], []), "nlp-sentiment-finetune-data"),
    "system-node-group-capacity": (
        "staging", "aws:eks/nodeGroup:NodeGroup", lambda r: r["inputs"].update(instanceTypes=["m7i.large"], scalingConfig={"minSize": 2, "desiredSize": 2, "maxSize": 4})
    ),
    "eks-deletion-protection": ("prod", EKS, set_in(["inputs", "deletionProtection"], False)),
    "app-project-fenced": ("prod", "kubernetes:argoproj.io/v1alpha1:AppProject", set_in(["inputs", "spec", "clusterResourceWhitelist"], [{"group": "*", "kind": "*"}])),
    "msk-authenticated-encrypted": ("staging", "aws:msk/serverlessCluster:ServerlessCluster", set_in(["inputs", "clientAuthentication", "sasl", "iam", "enabled"], False)),
    "efs-backups-enabled": ("prod", "aws:efs/backupPolicy:BackupPolicy", set_in(["inputs", "backupPolicy", "status"], "DISABLED")),
    "data-stores-private-encrypted": ("prod", "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", set_in(["inputs", "blockPublicPolicy"], False)),
    "data-stores-deletion-protected": ("prod", "aws:s3/bucket:Bucket", set_in(["inputs", "forceDestroy"], True)),
    "control-plane-replicated": ("prod", "kubernetes:helm.sh/v3:Release", set_in(["inputs", "values", "replicaCount"], 1), "mesh-istiod"),
    "efa-instance-types": (
        "staging", "kubernetes:karpenter.sh/v1:NodePool",
        lambda r: r["inputs"]["spec"]["template"]["spec"]["requirements"][-1]["values"].append("inf2.xlarge"), "karpenter-neuron-pool",
    ),
    "node-pool-bounded": ("prod", "kubernetes:karpenter.sh/v1:NodePool", lambda r: r["inputs"]["spec"]["limits"].pop("memory"), "karpenter-cpu-pool"),
    "version-supported": ("prod", EKS, set_in(["inputs", "version"], "1.29")),
    "version-in-standard-support": ("prod", "kubernetes:helm.sh/v3:Release", set_in(["inputs", "version"], "v26.3.3"), "accelerators-gpu-operator"),
    "cost-within-budget": ("prod", "aws:budgets/budget:Budget", lambda r: r["inputs"]["tags"].update({"ml-platform.io/max-hourly-usd": "100"})),
    "training-queued": ("dev", JOB, lambda r: r["inputs"]["metadata"]["labels"].update({"kueue.x-k8s.io/queue-name": "training"}), "nlp-sentiment-finetune-job"),
    "queue-within-team-quota": (
        "staging", "kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue",
        lambda r: r["inputs"]["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0].update(nominalQuota="1000"),
    ),
    # A misspelt key (`resource` for `resources`): Helm accepts it and the chart never reads it.
    "helm-values-read": (
        "prod", "kubernetes:helm.sh/v3:Release", lambda r: r["inputs"]["values"]["controller"].update(resource={"requests": {"cpu": "1"}}),
        "scheduling-jobset",
    ),
    "accelerator-workload-schedulable": (
        "staging", ISVC, lambda r: r["inputs"]["spec"]["predictor"].update(nodeSelector={"ml-platform.io/pool": "neuron"}), "nlp-sentiment-stable-isvc",
    ),
    "inference-service-in-team-namespace": ("staging", ISVC, set_in(["inputs", "metadata", "namespace"], "default"), "nlp-sentiment-stable-isvc"),
}


def test_required_tags_covers_every_taggable_type_the_stacks_create():
    """A type whose pulumi_aws arguments take tags must be checked for them, or an untagged resource slips through."""
    import importlib
    import inspect

    from policies.rules.aws import TAGGABLE_TYPES
    from tests.conftest import STACKS

    types = {r["type"] for s in STACKS for r in synth_of(s).resources if r["type"].startswith("aws:") and r["custom"]}
    for t in sorted(types):
        module, resource = t.split(":")[1].split("/")[0], t.split(":")[2]
        args = getattr(importlib.import_module(f"pulumi_aws.{module}"), f"{resource}Args")
        assert ("tags" in inspect.signature(args.__init__).parameters) == (t in TAGGABLE_TYPES), t


def test_every_rule_has_a_case():
    assert set(CASES) == set(RULES_BY_NAME)


def test_every_rule_is_documented():
    for rule in RULES:
        assert rule.description and rule.remediation, rule.name


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_passes_on_the_shipped_stack(rule):
    stack, type_, *_ = CASES[rule]
    records = synth_of(stack).resources
    assert any(r["type"] == type_ for r in records), "the passing case must not be vacuous"
    assert violations(rule, records, stack) == []


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_fails_on_a_broken_resource(rule):
    stack, type_, mutate, *name = CASES[rule]
    found = violations(rule, broken(stack, type_, mutate, *name), stack)
    assert found, f"{rule} did not catch the broken {type_}"
    assert {v["policy"] for v in found} == {rule}
    assert all(v["urn"] and v["message"] and v["remediation"] for v in found)


def test_levels_follow_the_environment_file():
    dev, prod = enforcement_levels("dev"), enforcement_levels("prod")
    assert dev["eks-endpoint-private"].value == "advisory" and prod["eks-endpoint-private"].value == "mandatory"
    assert dev["required-tags"].value == "advisory" and prod["required-tags"].value == "mandatory"
    assert dev["eks-endpoint-not-world-open"].value == "mandatory"


def test_dev_public_endpoint_is_advisory_only():
    result = synth_of("dev").result.policy
    assert result["summary"]["mandatory"] == 0
    # Reported on the pulumi-eks component and on the EKS cluster it creates.
    assert [v["policy"] for v in result["violations"]] == ["eks-endpoint-private", "eks-endpoint-private"]


@pytest.mark.parametrize("port, allowed", [(443, True), (80, True), (22, False)])
def test_only_the_gateway_listener_may_face_the_internet(port, allowed):
    def open_listener(record):
        record["inputs"]["ingress"] = [{"protocol": "tcp", "fromPort": port, "toPort": port, "cidrBlocks": ["0.0.0.0/0"]}]

    found = violations("security-group-no-world-ingress", broken("prod", "aws:ec2/securityGroup:SecurityGroup", open_listener, "mesh-gateway-lb"))
    assert (found == []) is allowed


def training_pod(mutate) -> list[dict]:
    """The dev stack with its training Job's pod template also declared as a bare Pod, then mutated."""
    records = copy.deepcopy(synth_of("dev").resources)
    job = next(r for r in records if r["type"] == JOB and r["name"] == "nlp-sentiment-finetune-job")
    bare = {**copy.deepcopy(job), "urn": job["urn"].replace("batch/v1:Job", "core/v1:Pod") + "-pod", "type": "kubernetes:core/v1:Pod"}
    bare["inputs"] = {"apiVersion": "v1", "kind": "Pod", "metadata": job["inputs"]["metadata"], "spec": copy.deepcopy(pod(job))}
    mutate(bare["inputs"]["spec"])
    bare["outputs"] = {"id": "nlp/train-pod", **copy.deepcopy(bare["inputs"])}
    return records + [bare]


def test_antipattern_training_pod_without_requests_or_limits():
    records = training_pod(lambda spec: spec["containers"][0].pop("resources"))
    assert {v["policy"] for v in check(records, "dev")["violations"] if v["urn"].endswith("-pod")} >= {
        "container-resource-requests", "memory-limit-equals-request"
    }


def test_antipattern_ml_data_on_empty_dir():
    found = [v for v in check(training_pod(data_on_empty_dir), "dev")["violations"] if v["urn"].endswith("-pod")]
    assert any(v["policy"] == "no-emptydir-for-data" and "'/data'" in v["message"] for v in found)


def test_antipattern_hpa_without_metrics():
    records = broken("staging", HPA, remove_in(["inputs", "spec", "metrics"]), "nlp-sentiment-stable-hpa")
    result = check(records, "staging")
    assert [v["policy"] for v in result["violations"] if v["enforcement"] == "mandatory"] == ["hpa-names-metrics"]


def test_the_pack_starts_as_the_engine_starts_it():
    """`policies/__main__.py` builds the PolicyPack, which serves the analyzer on a loopback port and prints it."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    launcher = "import runpy, sys; sys.path.remove(sys.path[0]) if sys.path[0] == '' else None; runpy.run_path('.', run_name='__main__')"
    proc = subprocess.Popen([sys.executable, "-P", "-c", launcher], cwd=ROOT / "policies", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port.isdigit() and 0 < int(port) < 65536, proc.stderr.read() if proc.poll() is not None else port
    finally:
        proc.kill()
        proc.wait(timeout=10)
