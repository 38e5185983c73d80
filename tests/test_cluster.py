"""The EKS cluster as synthesized: control plane settings, node group, add-ons, provider."""
from __future__ import annotations

import json

import pulumi
import pytest

from components.cluster import CONTROL_PLANE_LOG_TYPES, creator_admin_transform, kubeconfig
from tests.test_config import stack_raw

EKS = "eks:index:Cluster"
ADDON = "aws:eks/addon:Addon"


def test_control_plane_settings(stack):
    eks = stack.one(EKS)["inputs"]
    key = stack.one("aws:kms/key:Key", "cluster-secrets")
    assert eks["authenticationMode"] == "API"
    assert eks["encryptionConfigKeyArn"] == key["outputs"]["arn"]
    assert key["inputs"]["enableKeyRotation"] is True
    assert sorted(eks["enabledClusterLogTypes"]) == sorted(CONTROL_PLANE_LOG_TYPES)
    assert eks["skipDefaultNodeGroup"] is True and eks["createOidcProvider"] is False
    assert eks["serviceRole"]["urn"] == stack.one("aws:iam/role:Role", "cluster-service")["urn"]
    assert eks["bootstrapSelfManagedAddons"] is False
    assert eks["version"] == stack_raw(stack.result.stack)["cluster"]["kubernetesVersion"]
    assert eks["privateSubnetIds"] == stack.result.outputs["network"]["privateSubnetIds"]


def test_control_plane_log_group_exists_first_with_configured_retention(stack):
    raw = stack_raw(stack.result.stack)
    group = stack.one("aws:cloudwatch/logGroup:LogGroup", "cluster-control-plane")
    assert group["inputs"]["name"] == f"/aws/eks/{stack.result.outputs['cluster']['name']}/cluster"
    assert group["inputs"]["retentionInDays"] == raw["cluster"]["logRetentionDays"]
    assert stack.depends_on(stack.one(EKS), group)


@pytest.mark.parametrize("stack_name, public, cidrs", [("dev", True, ["203.0.113.0/24"]), ("prod", False, None)])
def test_endpoint_access_per_environment(stack_name, public, cidrs):
    from tests.conftest import synth_of

    eks = synth_of(stack_name).one(EKS)["inputs"]
    assert eks["endpointPrivateAccess"] is True
    assert eks["endpointPublicAccess"] is public
    assert eks.get("publicAccessCidrs") == cidrs


def test_admin_access_entries_from_config_are_tagged_and_gate_the_provider(stack):
    raw = stack_raw(stack.result.stack)["cluster"]["access"]
    entries = [r for r in stack.of_type("aws:eks/accessEntry:AccessEntry") if r["name"].startswith("cluster-admin-")]
    assert sorted(e["inputs"]["principalArn"] for e in entries) == sorted(raw["adminRoleArns"])
    assert "accessEntries" not in stack.one(EKS)["inputs"], "not created inside pulumi-eks, where they would be untagged"
    provider = stack.one("pulumi:providers:kubernetes", "cluster-k8s")
    for entry in entries:
        assert entry["inputs"]["type"] == "STANDARD" and entry["inputs"]["tags"]["cost-center"]
        [association] = [r for r in stack.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation") if r["parent"] == entry["urn"]]
        assert association["inputs"]["policyArn"].endswith("AmazonEKSClusterAdminPolicy")
        assert association["inputs"]["accessScope"] == {"type": "cluster"}
        assert stack.depends_on(provider, entry) and stack.depends_on(provider, association)


def test_pulumi_eks_children_are_recorded_as_it_creates_them(stack):
    """pulumi-eks creates the aws:eks/cluster:Cluster and its own provider; with our service role and OIDC provider, nothing else."""
    component = stack.one(EKS)
    children = {r["type"]: r for r in stack.resources if r["parent"] == component["urn"]}
    assert set(children) == {"aws:eks/cluster:Cluster", "pulumi:providers:kubernetes"}
    cluster = children["aws:eks/cluster:Cluster"]["inputs"]
    role = stack.one("aws:iam/role:Role", "cluster-service")
    assert cluster["roleArn"] == role["outputs"]["arn"] and "eks.amazonaws.com" in role["inputs"]["assumeRolePolicy"]
    assert cluster["tags"]["Name"] == component["inputs"]["name"] and cluster["tags"]["cost-center"]
    assert cluster["encryptionConfig"] == {"provider": {"keyArn": component["inputs"]["encryptionConfigKeyArn"]}, "resources": ["secrets"]}
    assert sorted(cluster["vpcConfig"]["subnetIds"]) == sorted(stack.result.outputs["network"]["privateSubnetIds"] + stack.result.outputs["network"]["publicSubnetIds"])
    creator_admin = stack_raw(stack.result.stack)["cluster"]["access"].get("clusterCreatorAdmin", False)
    assert cluster["accessConfig"] == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": creator_admin}, "after the transform"
    assert stack.result.outputs["cluster"]["endpoint"] == children["aws:eks/cluster:Cluster"]["outputs"]["endpoint"]


def test_oidc_provider_is_ours_and_tagged(stack):
    oidc = stack.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert oidc["inputs"]["clientIdLists"] == ["sts.amazonaws.com"] and oidc["inputs"]["tags"]["owner"]
    assert stack.result.outputs["cluster"]["oidcProviderArn"] == oidc["outputs"]["arn"]
    assert oidc["inputs"]["url"] == f"https://{stack.result.outputs['cluster']['oidcIssuer']}"


def test_creator_admin_transform_sets_the_bootstrap_flag_on_the_cluster_only():
    opts = pulumi.ResourceOptions()
    props = {"name": "c", "accessConfig": {"authenticationMode": "API"}}
    for enabled in (True, False):
        t = creator_admin_transform(enabled)
        result = t(pulumi.ResourceTransformArgs(True, "aws:eks/cluster:Cluster", "c", props, opts))
        assert result.props["accessConfig"] == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": enabled}
        assert t(pulumi.ResourceTransformArgs(True, "aws:iam/role:Role", "r", props, opts)) is None


def test_creator_admin_transform_is_registered_with_the_eks_cluster(stack):
    # Katib's groups carry the other transforms of a stack (tests/test_katib.py).
    assert {u: n for u, n in stack.result.transforms.items() if ":katib:" not in u} == {stack.one(EKS)["urn"]: 1}


def test_system_node_group(stack):
    raw = stack_raw(stack.result.stack)["cluster"].get("systemNodeGroup", {})
    ng = stack.one("aws:eks/nodeGroup:NodeGroup", "cluster-system")["inputs"]
    lt = stack.one("aws:ec2/launchTemplate:LaunchTemplate", "cluster-system")
    assert ng["taints"] == [{"key": "CriticalAddonsOnly", "value": "true", "effect": "NO_SCHEDULE"}]
    assert ng["labels"] == {"ml-platform.io/pool": "system"}
    assert ng["amiType"] == "AL2023_x86_64_STANDARD" and ng["capacityType"] == "ON_DEMAND"
    assert ng["instanceTypes"] == raw.get("instanceTypes", ["m7i.large"])
    assert ng["scalingConfig"]["desiredSize"] == raw.get("desiredSize", 2)
    assert sorted(ng["subnetIds"]) == sorted(stack.result.outputs["network"]["privateSubnetIds"])
    assert ng["launchTemplate"]["id"] == lt["outputs"]["id"]
    meta = lt["inputs"]["metadataOptions"]
    assert meta == {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}
    ebs = lt["inputs"]["blockDeviceMappings"][0]["ebs"]
    assert ebs["encrypted"] == "true" and ebs["volumeType"] == "gp3"


def test_addons_pinned_and_ordered_around_the_node_group(stack):
    cluster = stack.one("ml-platform:cluster:Cluster")
    addons = {a["inputs"]["addonName"]: a for a in stack.of_type(ADDON) if a["parent"] == cluster["urn"]}
    assert set(addons) == {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "aws-ebs-csi-driver"}
    assert addons["kube-proxy"]["inputs"]["addonVersion"].startswith(f"v{stack.one(EKS)['inputs']['version']}.")
    assert all(a["inputs"]["addonVersion"].count("eksbuild") == 1 for a in addons.values())
    ng = stack.one("aws:eks/nodeGroup:NodeGroup", "cluster-system")
    for before in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
        assert stack.depends_on(ng, addons[before])
    for after in ("coredns", "aws-ebs-csi-driver"):
        assert stack.depends_on(addons[after], ng)
    identity = addons["aws-ebs-csi-driver"]["inputs"]["podIdentityAssociations"][0]
    role = stack.one("aws:iam/role:Role", "cluster-ebs-csi")
    assert identity == {"serviceAccount": "ebs-csi-controller-sa", "roleArn": role["outputs"]["arn"]}
    assert "pods.eks.amazonaws.com" in role["inputs"]["assumeRolePolicy"]


def test_every_kubernetes_resource_uses_the_one_provider(stack):
    provider = stack.one("pulumi:providers:kubernetes", "cluster-k8s")
    k8s = [r for r in stack.resources if r["type"].startswith("kubernetes:")]
    assert k8s, "the cluster declares at least the gp3 storage class"
    assert {r["provider"] for r in k8s} == {provider["urn"]}
    assert provider["inputs"]["kubeconfig"] == "[secret]"


def test_gp3_is_the_encrypted_default_storage_class(stack):
    sc = stack.result.manifests["storageclass--cluster--gp3.yaml"]
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["parameters"]["encrypted"] == "true" and sc["parameters"]["type"] == "gp3"
    assert sc["provisioner"] == "ebs.csi.aws.com"


def test_kubeconfig_is_stable_and_carries_no_credentials():
    first = kubeconfig("ml", "https://x.eks.amazonaws.com", "Q0E=", "us-east-1")
    assert first == kubeconfig("ml", "https://x.eks.amazonaws.com", "Q0E=", "us-east-1")
    doc = json.loads(first)
    user = doc["users"][0]["user"]
    assert set(user) == {"exec"}, "no token, no client certificate"
    assert user["exec"]["args"] == ["eks", "get-token", "--cluster-name", "ml", "--region", "us-east-1", "--output", "json"]
    assert "env" not in user["exec"], "no profile or other per-machine setting"


def test_every_log_group_is_encrypted_with_the_logs_key(stack):
    key = stack.one("aws:kms/key:Key", "encryption-logs")
    groups = stack.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert groups
    assert all(g["inputs"].get("kmsKeyId") == key["outputs"]["arn"] for g in groups), [g["name"] for g in groups]


def test_logs_key_lets_cloudwatch_logs_use_it_for_this_accounts_log_groups_only(stack):
    from tests.iam_eval import decide

    key = stack.one("aws:kms/key:Key", "encryption-logs")
    policy = key["inputs"]["policy"]
    region, account = stack.result.outputs["region"], key["outputs"]["arn"].split(":")[4]
    statement = next(s for s in json.loads(policy)["Statement"] if s["Sid"] == "AllowCloudWatchLogsUse")
    assert statement["Principal"] == {"Service": f"logs.{region}.amazonaws.com"}
    own = {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{region}:{account}:log-group:/aws/eks/x/cluster"}
    other = {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{region}:999988887777:log-group:stolen"}
    logs = f"logs.{region}.amazonaws.com"
    assert decide(policy, "kms:GenerateDataKey", "*", own, caller=logs) == "Allow"
    assert decide(policy, "kms:GenerateDataKey", "*", other, caller=logs) == "ImplicitDeny"
    assert decide(policy, "kms:GenerateDataKey", "*", own, caller="sqs.amazonaws.com") == "ImplicitDeny"


def test_every_kms_key_has_an_explicit_policy_with_account_administration(stack):
    keys = stack.of_type("aws:kms/key:Key")
    assert len(keys) >= 3
    for key in keys:
        statements = json.loads(key["inputs"]["policy"])["Statement"]
        admin = statements[0]
        account = key["outputs"]["arn"].split(":")[4]
        assert admin == {"Sid": "AccountAdministration", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                         "Action": "kms:*", "Resource": "*"}, key["name"]
        assert len(statements) >= 2, f"{key['name']}: the service that uses the key has its own statement"
        for st in statements[1:]:
            assert st.get("Condition"), f"{key['name']} {st['Sid']}: service use is scoped by a condition"
