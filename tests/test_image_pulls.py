"""Image pulls: SOCI parallel pull on the accelerator pools, ECR interface endpoints, pull-through cache rules."""
from __future__ import annotations

import copy
import email
import json

import pytest
import yaml

from infra.config import ConfigError
from tests.conftest import synth_of
from tests.test_config import parse_stack, stack_raw

ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"


def node_class(stack: str, name: str) -> dict:
    return next(m for m in synth_of(stack).result.manifests.values() if m["kind"] == "EC2NodeClass" and m["metadata"]["name"] == name)


def node_config(user_data: str) -> dict:
    """The nodeadm NodeConfig part of a MIME multipart user data, as nodeadm reads it."""
    message = email.message_from_string(user_data)
    assert message.is_multipart()
    [part] = [p for p in message.get_payload() if p.get_content_type() == "application/node.eks.aws"]
    return yaml.safe_load(part.get_payload())


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_accelerator_pools_pull_images_in_parallel(stack):
    for pool in ("nvidia", "neuron"):
        config = node_config(node_class(stack, pool)["spec"]["userData"])
        assert config["apiVersion"] == "node.eks.aws/v1alpha1" and config["kind"] == "NodeConfig"
        assert config["spec"] == {"featureGates": {"FastImagePull": True}}
    # The cpu pool keeps the default pull (small images; nodes below nodeadm's 4 vCPU / 7 GiB floor ignore the gate).
    assert "userData" not in node_class(stack, "cpu")["spec"]


def test_fast_image_pull_needs_al2023():
    raw = copy.deepcopy(stack_raw("prod"))
    raw["nodePools"]["nvidia"]["amiAlias"] = "bottlerocket@v1.50.0"
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    assert "ml-platform:nodePools.nvidia.fastImagePull needs an al2023@ amiAlias (nodeadm's FastImagePull gate), not bottlerocket@v1.50.0" in str(exc.value)
    raw["nodePools"]["nvidia"]["fastImagePull"] = False
    assert not parse_stack(raw).node_pools.nvidia.fast_image_pull


def test_ecr_is_reached_through_interface_endpoints(stack):
    region = stack.result.outputs["region"]
    endpoints = {e["inputs"]["serviceName"]: e for e in stack.of_type(ENDPOINT)}
    private = {s["outputs"]["id"] for s in stack.of_type("aws:ec2/subnet:Subnet") if s["inputs"]["tags"].get("tier") == "private"}
    for service in ("ecr.api", "ecr.dkr"):
        endpoint = endpoints[f"com.amazonaws.{region}.{service}"]["inputs"]
        assert endpoint["vpcEndpointType"] == "Interface" and endpoint["privateDnsEnabled"] is True
        assert set(endpoint["subnetIds"]) == private
        [group] = [g for g in stack.of_type("aws:ec2/securityGroup:SecurityGroup") if g["outputs"]["id"] in endpoint["securityGroupIds"]]
        assert [(r["fromPort"], r["toPort"], r["cidrBlocks"]) for r in group["inputs"]["ingress"]] == [(443, 443, [stack.one("aws:ec2/vpc:Vpc")["inputs"]["cidrBlock"]])]
        assert group["inputs"]["egress"] == []
    # Layers come from S3: the gateway endpoint is what keeps them off the NAT.
    assert endpoints[f"com.amazonaws.{region}.s3"]["inputs"]["vpcEndpointType"] == "Gateway"


def test_without_ecr_endpoints_the_ceiling_drops_their_hourly_charge():
    import datetime

    from infra import cost

    raw = copy.deepcopy(stack_raw("prod"))
    on = cost.checked_ceiling(parse_stack(raw), datetime.date(2026, 12, 1))
    raw.setdefault("network", {})["ecrEndpoints"] = False
    off = cost.checked_ceiling(parse_stack(raw), datetime.date(2026, 12, 1))
    line = lambda c: next(i.hourly_usd for i in c.items if i.name == "vpc-interface-endpoints")  # noqa: E731
    assert line(on) - line(off) == pytest.approx(2 * 3 * 0.01)


def test_pull_through_cache_rules_per_upstream_under_the_clusters_prefix(stack):
    cluster = stack.result.outputs["cluster"]["name"]
    rules = {r["inputs"]["ecrRepositoryPrefix"]: r["inputs"]["upstreamRegistryUrl"] for r in stack.of_type(RULE)}
    assert rules == {f"{cluster}/ecr-public": "public.ecr.aws", f"{cluster}/k8s": "registry.k8s.io", f"{cluster}/quay": "quay.io"}
    assert all("credentialArn" not in r["inputs"] for r in stack.of_type(RULE))
    # The node role may create and fill the cache repositories, and nothing else.
    [policy] = [p for p in stack.of_type("aws:iam/policy:Policy") if p["name"] == "images-fill"]
    [statement] = json.loads(policy["inputs"]["policy"])["Statement"]
    assert sorted(statement["Action"]) == ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]
    assert sorted(r.split(":repository/")[1] for r in statement["Resource"]) == sorted(f"{p}/*" for p in rules)
    [attachment] = [a for a in stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") if a["name"] == "images-fill"]
    node_role = next(r for r in stack.of_type("aws:iam/role:Role") if r["name"] == "karpenter-node")
    assert attachment["inputs"]["role"] == node_role["outputs"]["name"]


def test_a_cache_prefix_over_ecrs_limit_names_the_key():
    raw = copy.deepcopy(stack_raw("prod"))
    raw["environment"] = "production-east"
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    assert "ml-platform:images.pullThroughCache: the cache prefix 'ml-platform-production-east/ecr-public' is over ECR's 30 characters" in str(exc.value)


def test_app_teams_read_the_caches_from_the_stack_outputs(stack):
    out = stack.result.outputs
    cluster = out["cluster"]["name"]
    assert out["imageCache"]["prefixes"] == {u: f"{cluster}/{u}" for u in ("ecr-public", "k8s", "quay")}
    assert out["imageCache"]["upstreams"] == {"ecr-public": "public.ecr.aws", "k8s": "registry.k8s.io", "quay": "quay.io"}
    assert out["imageCache"]["registry"].endswith(f".dkr.ecr.{out['region']}.amazonaws.com")
