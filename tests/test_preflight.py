"""The AWS preflight against moto (STS, EC2, IAM) and API-shaped fakes where moto has no model (EC2 quotas, EKS versions)."""
from __future__ import annotations

import copy
import functools
import json

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError, NoCredentialsError
from moto import mock_aws

from infra import preflight
from tests.test_config import ROOT, parse_stack, stack_raw

REGION = "us-east-1"
# One session for every mocked account: it keeps the services' models it has read (EC2's alone is megabytes of
# JSON), where a session per test reads them again. moto answers its clients all the same.
SESSION = boto3.session.Session()
AMPLE = {code: 10_000 for code, _ in preflight.VCPU_QUOTAS.values()} | {"L-0263D0A3": 5}


class FakeQuotas:
    """Service Quotas' GetServiceQuota: moto models only VPC quotas."""

    def __init__(self, values: dict[str, float]):
        self.values = values

    def get_service_quota(self, ServiceCode: str, QuotaCode: str) -> dict:
        if QuotaCode not in self.values:
            raise ClientError({"Error": {"Code": "NoSuchResourceException", "Message": "unknown quota"}}, "GetServiceQuota")
        return {"Quota": {"ServiceCode": ServiceCode, "QuotaCode": QuotaCode, "Value": self.values[QuotaCode]}}


class FakeEks:
    """EKS DescribeClusterVersions and DescribeAddonVersions: moto has no model of them."""

    def __init__(self, status: dict[str, str], addons: dict[str, list[str]]):
        self.status, self.addons = status, addons

    def describe_cluster_versions(self, clusterVersions: list[str]) -> dict:
        return {"clusterVersions": [{"clusterVersion": v, "versionStatus": self.status[v]} for v in clusterVersions if v in self.status]}

    def describe_addon_versions(self, addonName: str, kubernetesVersion: str, nextToken: str | None = None) -> dict:
        # Two pages, as the API pages its answers.
        versions = self.addons.get(addonName, [])
        page, rest = (versions[1:], None) if nextToken else (versions[:1], "page-2" if len(versions) > 1 else None)
        return {"addons": [{"addonName": addonName, "addonVersions": [{"addonVersion": v} for v in page]}], **({"nextToken": rest} if rest else {})}


class FakeSsm:
    """The public AMI parameters under /aws/service: reserved names moto will not hold."""

    def __init__(self, parameters: set[str]):
        self.parameters = parameters

    def get_parameter(self, Name: str) -> dict:
        if Name not in self.parameters:
            raise ClientError({"Error": {"Code": "ParameterNotFound", "Message": Name}}, "GetParameter")
        return {"Parameter": {"Name": Name, "Value": "ami-0123456789abcdef0"}}


def offered_addons(cfg) -> dict[str, list[str]]:
    return {addon: ["v9.9.9-eksbuild.1", version] for addon, (version, _) in preflight.pinned_addons(cfg).items()}


def published_amis(cfg) -> set[str]:
    return {
        preflight.ami_parameter(pool.ami_alias, cfg.cluster.kubernetes_version, arch, name)
        for name, pool in cfg.node_pools.enabled().items()
        for arch in pool.architectures
    }


@pytest.fixture
def aws(monkeypatch):
    # The preflight reads no AMI from EC2 (the aliases come from SSM): moto's default catalogue of thousands is
    # parsed again for every account it mocks.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with mock_aws():
        yield


def clients_with(quotas=None, eks=None, addons=None, amis=None, cfg=None):
    """moto for STS, EC2 and IAM; fakes for the rest, by default describing an account where the stack's pins exist."""
    cfg = cfg or config()
    moto_client = functools.lru_cache(maxsize=None)(lambda name: SESSION.client(name, region_name=REGION))
    fakes = {
        "service-quotas": FakeQuotas(AMPLE if quotas is None else quotas),
        "eks": FakeEks(eks or {"1.35": "STANDARD_SUPPORT"}, offered_addons(cfg) if addons is None else addons),
        "ssm": FakeSsm(published_amis(cfg) if amis is None else amis),
    }
    return lambda name: fakes.get(name) or moto_client(name)


def config(stack: str = "prod", mutate=None):
    raw = copy.deepcopy(stack_raw(stack))
    raw["region"] = REGION
    if mutate:
        mutate(raw)
    return parse_stack(raw)


def by_name(checks) -> dict[str, preflight.Check]:
    return {c.name: c for c in checks}


def service_linked_role(name: str, service: str) -> None:
    """The role as AWS names it (moto's create_service_linked_role derives another name)."""
    SESSION.client("iam", region_name=REGION).create_role(
        RoleName=name, Path=f"/aws-service-role/{service}/", AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}'
    )


def test_a_ready_account_passes(aws):
    service_linked_role(preflight.SEARCH_ROLE, "opensearchservice.amazonaws.com")
    checks = preflight.run_checks(config(), clients_with())
    assert [c for c in checks if c.status != preflight.PASS] == []
    names = by_name(checks)
    assert names["credentials"].detail.startswith("account 123456789012")
    assert "us-east-1a, us-east-1b, us-east-1c" in names["availability zones"].detail
    assert {"instance types: nodePools.nvidia.instanceTypes", "instance types: nodePools.neuron.instanceTypes",
            "instance types: cluster.systemNodeGroup.instanceTypes"} <= set(names)
    assert names["spot service-linked role"].detail == "no pool uses spot"


def test_instance_type_not_offered_in_the_chosen_zones(aws):
    def zones_where_inf2_48_is_scarce(raw):
        raw["network"]["availabilityZones"] = ["us-east-1d", "us-east-1e", "us-east-1f"]
        raw["nodePools"]["neuron"]["instanceTypes"] = ["inf1.xlarge", "inf2.48xlarge"]

    check = by_name(preflight.run_checks(config(mutate=zones_where_inf2_48_is_scarce), clients_with()))["instance types: nodePools.neuron.instanceTypes"]
    assert check.status == preflight.FAIL
    assert check.detail == "inf2.48xlarge is offered in 1 of the chosen zones (us-east-1f)"
    assert "nodePools.neuron.instanceTypes" in check.fix


def test_quota_below_a_pools_limit_names_the_quota_and_the_fix(aws):
    quotas = {**AMPLE, "L-1945791B": 96}
    check = by_name(preflight.run_checks(config(), clients_with(quotas)))["quota: Running On-Demand Inf instances"]
    assert check.status == preflight.FAIL
    assert check.detail == "L-1945791B allows 96 vCPUs; the stack may use 512 (nodePools.neuron 512)"
    assert "--quota-code L-1945791B --desired-value 512" in check.fix


def test_standard_quota_counts_the_cpu_pool_and_the_system_group(aws):
    check = by_name(preflight.run_checks(config(), clients_with()))["quota: Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"]
    # prod: system group at most 6 x m7i.xlarge (4 vCPUs) plus the cpu pool's limit of 2000.
    assert check.detail.endswith("the stack may use 2024 (system node group 24, nodePools.cpu 2000)")


def test_spot_pools_need_the_spot_service_linked_role(aws):
    dev = config("dev", lambda raw: raw.update(region=REGION))
    assert by_name(preflight.run_checks(dev, clients_with(cfg=dev)))["spot service-linked role"].status == preflight.FAIL
    service_linked_role(preflight.SPOT_ROLE, "spot.amazonaws.com")
    assert by_name(preflight.run_checks(dev, clients_with(cfg=dev)))["spot service-linked role"].status == preflight.PASS
    creates_it = config("dev", lambda raw: raw.setdefault("karpenter", {}).update(createSpotServiceLinkedRole=True))
    assert "the stack creates it" in by_name(preflight.run_checks(creates_it, clients_with(cfg=creates_it)))["spot service-linked role"].detail


def test_an_opensearch_domain_in_the_vpc_needs_its_service_linked_role(aws):
    clients = clients_with()
    check = preflight.check_search_role(config(), clients)
    assert check.status == preflight.FAIL and "logging.openSearch.createServiceLinkedRole: true" in check.fix
    service_linked_role(preflight.SEARCH_ROLE, "opensearchservice.amazonaws.com")
    assert preflight.check_search_role(config(), clients).status == preflight.PASS
    creates_it = config(mutate=lambda raw: raw["logging"]["openSearch"].update(createServiceLinkedRole=True))
    assert "the stack creates it" in preflight.check_search_role(creates_it, clients).detail
    assert preflight.check_search_role(config("dev"), clients).detail == "no OpenSearch domain"
    assert "OpenSearch service-linked role" in by_name(preflight.run_checks(config(), clients))


def test_spot_quota_is_checked_for_spot_pools(aws):
    dev = config("dev")
    check = by_name(preflight.run_checks(dev, clients_with({**AMPLE, "L-3819A6DF": 16}, cfg=dev)))["quota: All G and VT Spot Instance Requests"]
    assert check.status == preflight.FAIL and "L-3819A6DF allows 16 vCPUs; the stack may use 64" in check.detail


def test_elastic_ips_for_nat_gateways(aws):
    ec2 = SESSION.client("ec2", region_name=REGION)
    for _ in range(3):
        ec2.allocate_address(Domain="vpc")
    check = by_name(preflight.run_checks(config(), clients_with()))["quota: EC2-VPC Elastic IPs"]
    assert check.status == preflight.FAIL and check.detail == "3 addresses in use + 3 for NAT gateways exceeds the quota of 5"


@pytest.mark.parametrize("status, result", [("STANDARD_SUPPORT", "PASS"), ("EXTENDED_SUPPORT", "WARN"), (None, "FAIL")])
def test_kubernetes_version_support(aws, status, result):
    eks = {"1.35": status} if status else {"1.33": "STANDARD_SUPPORT"}
    assert by_name(preflight.run_checks(config(), clients_with(eks=eks)))["EKS version"].status == result


def test_unreadable_quota_is_a_warning_not_a_failure(aws):
    checks = preflight.run_checks(config(), clients_with({"L-0263D0A3": 5}))
    quota_checks = [c for c in checks if c.name.startswith("quota: Running")]
    assert quota_checks and all(c.status == preflight.WARN and "could not read quota" in c.detail for c in quota_checks)


def test_missing_credentials_stop_early():
    class NoCredentials:
        def get_caller_identity(self):
            raise NoCredentialsError()

    checks = preflight.run_checks(config(), lambda name: NoCredentials())
    assert [(c.name, c.status) for c in checks] == [("credentials", "FAIL")]


def test_command_prints_a_table_and_exits_nonzero_on_failure(aws, capsys, tmp_path):
    stack = tmp_path / "Pulumi.prod.yaml"
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
    doc["config"]["aws:region"] = REGION
    doc["config"]["ml-platform:alertingSecrets"] = {"oncall": {"secure": "v1:AAAAZW5jcnlwdGVk"}}
    stack.write_text(yaml.safe_dump(doc).replace(preflight.EXAMPLE_ACCOUNT, "123456789012"))
    service_linked_role(preflight.SEARCH_ROLE, "opensearchservice.amazonaws.com")
    assert preflight.main(["--stack", "prod", "--config", str(stack)], clients=clients_with()) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split() == ["check", "result", "detail"] and "0 failed" in out.splitlines()[-1]
    assert preflight.main(["--stack", "prod", "--config", str(stack)], clients=clients_with({**AMPLE, "L-1945791B": 8})) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "fix: request an increase" in out and "1 failed" in out.splitlines()[-1]


def test_command_rejects_invalid_config(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "stacks" / "Pulumi.prod.yaml").read_text().replace("azCount: 3", "azCount: 0"))
    assert preflight.main(["--stack", "prod", "--config", str(bad)], clients=lambda name: None) == 2
    assert "ml-platform:network.azCount" in capsys.readouterr().err


def test_pinned_addon_versions_must_be_offered(aws):
    cfg = config()
    addons = {**offered_addons(cfg), "coredns": ["v1.12.3-eksbuild.2", "v1.12.2-eksbuild.1"]}
    check = by_name(preflight.run_checks(cfg, clients_with(addons=addons)))["EKS add-on versions"]
    assert check.status == preflight.FAIL
    assert check.detail == "coredns v1.13.2-eksbuild.1 is not offered for Kubernetes 1.35 (newest: v1.12.3-eksbuild.2)"
    assert check.fix == "pin offered versions: cluster.addons.coredns: v1.12.3-eksbuild.2"


def test_the_second_page_of_addon_versions_counts(aws):
    cfg = config()
    assert by_name(preflight.run_checks(cfg, clients_with()))["EKS add-on versions"].status == preflight.PASS


def test_pinned_ami_aliases_must_exist_for_the_kubernetes_version(aws):
    cfg = config()
    nvidia = preflight.ami_parameter(cfg.node_pools.nvidia.ami_alias, "1.35", "amd64", "nvidia")
    assert nvidia == (
        "/aws/service/eks/optimized-ami/1.35/amazon-linux-2023/x86_64/nvidia/"
        "amazon-eks-node-al2023-x86_64-nvidia-1.35-v20260714/image_id"
    )
    check = by_name(preflight.run_checks(cfg, clients_with(amis=published_amis(cfg) - {nvidia})))["AMI aliases"]
    assert check.status == preflight.FAIL
    assert check.detail.startswith("nodePools.nvidia: al2023@v20260714 has no amd64 image for Kubernetes 1.35")


def test_bottlerocket_alias_parameter():
    assert preflight.ami_parameter("bottlerocket@v1.49.0", "1.34", "arm64", "nvidia") == "/aws/service/bottlerocket/aws-k8s-1.34-nvidia/arm64/1.49.0/image_id"


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_shipped_stacks_still_hold_example_values_and_the_preflight_names_each_key(stack):
    from infra.synth import read_stack_file

    check = preflight.check_placeholders(read_stack_file(ROOT / "stacks" / f"Pulumi.{stack}.yaml").bag)
    assert check.status == preflight.FAIL
    assert "ml-platform:cluster.access.adminRoleArns[0]" in check.detail and "ml-platform:teams[0].iamRoleArn" in check.detail
    if stack == "dev":
        assert "ml-platform:cluster.endpoint.publicAccessCidrs[0]" in check.detail
        assert "ml-platform:mesh.gateway.allowedCidrs[0]" in check.detail


def test_real_values_pass_the_placeholder_check():
    bag = {"ml-platform:cluster": json.dumps({"access": {"adminRoleArns": ["arn:aws:iam::123456789012:role/admin"]},
                                              "endpoint": {"publicAccessCidrs": ["198.18.0.0/15"]}}),
           "aws:region": "eu-west-1"}
    assert preflight.check_placeholders(bag).status == preflight.PASS
    assert preflight.check_placeholders({"ml-platform:mesh": json.dumps({"gateway": {"allowedCidrs": ["203.0.113.7/32"]}})}).status == preflight.FAIL


class FakeSts:
    def __init__(self, arn: str):
        self.arn = arn

    def get_caller_identity(self):
        return {"Account": self.arn.split(":")[4], "Arn": self.arn, "UserId": "AROAEXAMPLE:ci"}


@pytest.mark.parametrize(
    "caller, creator_admin, status",
    [
        # The CI role assumed through a session: the same role as adminRoleArns' path-qualified ARN.
        ("arn:aws:sts::123456789012:assumed-role/platform-ci/gha-run-42", True, "FAIL"),
        ("arn:aws:sts::123456789012:assumed-role/platform-ci/gha-run-42", False, "PASS"),
        ("arn:aws:sts::123456789012:assumed-role/someone-else/session", True, "PASS"),
        ("arn:aws:sts::210987654321:assumed-role/platform-ci/session", True, "PASS"),
    ],
)
def test_creator_in_admin_roles_is_refused_when_eks_also_bootstraps_it(caller, creator_admin, status):
    def mutate(raw):
        raw["cluster"]["access"] = {"adminRoleArns": ["arn:aws:iam::123456789012:role/ci/platform-ci"], "clusterCreatorAdmin": creator_admin}

    check = preflight.check_creator_access(config(mutate=mutate), caller)
    assert check.status == status
    if status == "FAIL":
        assert "cluster.access.adminRoleArns" in check.detail and "clusterCreatorAdmin: false" in check.fix


def test_credentials_left_for_the_operator_fail_until_set():
    from infra.synth import read_stack_file

    check = preflight.check_secrets_set(read_stack_file(ROOT / "stacks" / "Pulumi.prod.yaml").unset)
    assert check.status == preflight.FAIL and "ml-platform:alertingSecrets.oncall" in check.detail
    assert check.fix.startswith("pulumi config set --secret --path 'ml-platform:alertingSecrets.oncall'")
    assert preflight.check_secrets_set([]).status == preflight.PASS
