"""Every rule passes on the shipped stacks and fails on a resource broken the way it forbids."""
from __future__ import annotations

import copy
import json
from typing import Callable

import pytest

from infra.policy_check import check, enforcement_levels
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
    mutate(target)
    return records


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
}


def test_every_rule_has_a_case():
    assert set(CASES) == set(RULES_BY_NAME)


def test_every_rule_is_documented():
    for rule in RULES:
        assert rule.description and rule.remediation, rule.name


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_passes_on_the_shipped_prod_stack(rule):
    assert violations(rule, synth_of("prod").resources) == []


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_fails_on_a_broken_resource(rule):
    stack, type_, mutate, *name = CASES[rule]
    found = violations(rule, broken(stack, type_, mutate, *name))
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
    assert [v["policy"] for v in result["violations"]] == ["eks-endpoint-private"]


@pytest.mark.parametrize("port, allowed", [(443, True), (80, True), (22, False)])
def test_only_the_gateway_listener_may_face_the_internet(port, allowed):
    def open_listener(record):
        record["inputs"]["ingress"] = [{"protocol": "tcp", "fromPort": port, "toPort": port, "cidrBlocks": ["0.0.0.0/0"]}]

    found = violations("security-group-no-world-ingress", broken("prod", "aws:ec2/securityGroup:SecurityGroup", open_listener, "mesh-gateway-lb"))
    assert (found == []) is allowed
