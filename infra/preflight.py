"""Checks that an AWS account and region can run a stack, before a long `pulumi up`.

    python -m infra.preflight --stack prod [--config FILE] [--profile NAME]

Uses the AWS credentials of the environment (boto3's usual chain). Prints a table of checks with
PASS, WARN or FAIL and what to do about each failure; exits 1 when any check fails, 2 when the
stack configuration is invalid.
"""
from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from botocore.exceptions import BotoCoreError, ClientError

from infra.lib.accelerators import family_of
from infra.config import ConfigError, PlatformConfig, from_bag

ROOT = Path(__file__).resolve().parent.parent
PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
SPOT_ROLE = "AWSServiceRoleForEC2Spot"
SEARCH_ROLE = "AWSServiceRoleForAmazonOpenSearchService"
ELASTIC_IP_QUOTA = ("L-0263D0A3", "EC2-VPC Elastic IPs")
# EC2 vCPU quotas by instance family group and capacity type.
VCPU_QUOTAS = {
    ("standard", "on-demand"): ("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
    ("standard", "spot"): ("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
    ("g", "on-demand"): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("g", "spot"): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("p", "on-demand"): ("L-417A185B", "Running On-Demand P instances"),
    ("p", "spot"): ("L-7212CCBC", "All P Spot Instance Requests"),
    ("inf", "on-demand"): ("L-1945791B", "Running On-Demand Inf instances"),
    ("inf", "spot"): ("L-B5D1601B", "All Inf Spot Instance Requests"),
    ("trn", "on-demand"): ("L-2C3B7624", "Running On-Demand Trn instances"),
    ("trn", "spot"): ("L-6B0D517C", "All Trn Spot Instance Requests"),
}

Clients = Callable[[str], Any]
# Values the shipped stack files use as examples: AWS's documentation account and the RFC 5737 ranges.
EXAMPLE_ACCOUNT = "111122223333"
DOCUMENTATION_RANGES = [ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
# The capacity reservation id AWS's documentation uses, which the staging stack carries as its example.
EXAMPLE_RESERVATIONS = {"cr-1234567890abcdef0"}


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def quota_group(instance_type_or_family: str) -> str:
    family = family_of(instance_type_or_family)
    for prefix, group in (("inf", "inf"), ("trn", "trn"), ("vt", "g"), ("g", "g"), ("p", "p")):
        if family.startswith(prefix):
            return group
    return "standard"


def _error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return f"{exc.response['Error'].get('Code')}: {exc.response['Error'].get('Message')}"
    return str(exc)


def _is_example(value: str) -> bool:
    if EXAMPLE_ACCOUNT in value or value in EXAMPLE_RESERVATIONS:
        return True
    try:
        net = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        return False
    return any(net.overlaps(doc) for doc in DOCUMENTATION_RANGES)


def _example_keys(value: Any, path: str) -> Iterable[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _example_keys(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _example_keys(v, f"{path}[{i}]")
    elif isinstance(value, str) and _is_example(value):
        yield path


def check_placeholders(bag: dict[str, str]) -> Check:
    """The stack files ship with example values; a real account needs real ones."""
    keys = []
    for key, raw in sorted(bag.items()):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        keys += _example_keys(value, key)
    if keys:
        return Check(
            "example values",
            FAIL,
            f"the stack still holds example values (account {EXAMPLE_ACCOUNT}, a documentation IP range or reservation id) at: {', '.join(keys)}",
            "replace each with your account's role ARNs, ECR registry, capacity reservation ids and your own CIDRs",
        )
    return Check("example values", PASS, "no example account id or documentation IP range in the stack")


def check_secrets_set(unset: list[str]) -> Check:
    if unset:
        return Check(
            "secrets",
            FAIL,
            f"the stack file leaves these secrets to set: {', '.join(unset)}",
            f"pulumi config set --secret --path '{unset[0]}' <value> (for each)",
        )
    return Check("secrets", PASS, "every receiver's credential is set as a secret")


def check_identity(clients: Clients) -> tuple[Check, Optional[str]]:
    """The credentials check, and the caller's ARN when there are credentials."""
    try:
        who = clients("sts").get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        return Check("credentials", FAIL, f"no usable AWS credentials ({_error(exc)})", "configure credentials (AWS_PROFILE, SSO login or an instance role) and retry"), None
    return Check("credentials", PASS, f"account {who['Account']} as {who['Arn']}"), who["Arn"]


def principal_of(caller_arn: str) -> str:
    """The IAM principal behind a caller ARN: an assumed-role session maps to its role (path-less, as STS reports it)."""
    m = re.match(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/.+$", caller_arn)
    return f"arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}" if m else caller_arn


def _same_principal(a: str, b: str) -> bool:
    """Role ARNs name the same role when account and name match; a role's path is not part of its session ARN."""
    account = lambda arn: arn.split(":")[4]  # noqa: E731
    name = lambda arn: arn.rsplit("/", 1)[-1]  # noqa: E731
    kind = lambda arn: arn.split(":")[5].split("/", 1)[0]  # noqa: E731
    return (account(a), kind(a), name(a)) == (account(b), kind(b), name(b))


def check_creator_access(cfg: PlatformConfig, caller_arn: str) -> Check:
    """With clusterCreatorAdmin, EKS creates an access entry for whoever runs Pulumi; a second, explicit entry for
    the same principal fails the first `pulumi up` with a conflict."""
    access = cfg.cluster.access
    if not access.cluster_creator_admin:
        return Check("cluster creator access", PASS, "clusterCreatorAdmin is off; admins come from adminRoleArns only")
    principal = principal_of(caller_arn)
    clash = [arn for arn in access.admin_role_arns if _same_principal(arn, principal)]
    if clash:
        return Check(
            "cluster creator access",
            FAIL,
            f"you run as {principal}, which is also in cluster.access.adminRoleArns ({clash[0]}); with clusterCreatorAdmin "
            "EKS creates its access entry itself and the explicit one would fail with a conflict",
            "set cluster.access.clusterCreatorAdmin: false (the role stays admin through adminRoleArns), or run Pulumi as another identity",
        )
    return Check("cluster creator access", PASS, f"{principal} gets its admin entry from EKS (clusterCreatorAdmin) and is not listed in adminRoleArns")


def chosen_zones(cfg: PlatformConfig, clients: Clients) -> tuple[Check, list[str]]:
    zones = clients("ec2").describe_availability_zones(
        Filters=[{"Name": "state", "Values": ["available"]}, {"Name": "zone-type", "Values": ["availability-zone"]}]
    )["AvailabilityZones"]
    offered = sorted(z["ZoneName"] for z in zones)
    wanted = list(cfg.network.availability_zones or offered[: cfg.network.az_count])
    missing = [z for z in wanted if z not in offered]
    if len(offered) < cfg.network.az_count or missing:
        detail = f"{cfg.region} offers {len(offered)} zones ({', '.join(offered)}); the stack needs {cfg.network.az_count}"
        if missing:
            detail += f" and names unavailable zones {missing}"
        return Check("availability zones", FAIL, detail, "lower network.azCount or pick zones the region offers"), wanted
    return Check("availability zones", PASS, f"{len(wanted)} of {len(offered)} zones: {', '.join(wanted)}"), wanted


def pinned_instance_types(cfg: PlatformConfig) -> dict[str, list[str]]:
    """Instance types the stack names explicitly, by where they are configured (the cpu pool lets Karpenter choose)."""
    types = {"cluster.systemNodeGroup.instanceTypes": list(cfg.cluster.system_node_group.instance_types)}
    for name, pool in cfg.node_pools.enabled().items():
        if hasattr(pool, "instance_types"):
            types[f"nodePools.{name}.instanceTypes"] = list(pool.instance_types)
    return types


def check_instance_offerings(cfg: PlatformConfig, zones: list[str], clients: Clients) -> list[Check]:
    checks = []
    for key, types in pinned_instance_types(cfg).items():
        offerings = clients("ec2").describe_instance_type_offerings(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": types}]
        )["InstanceTypeOfferings"]
        where: dict[str, set[str]] = {t: set() for t in types}
        for o in offerings:
            if o["Location"] in zones and o["InstanceType"] in where:
                where[o["InstanceType"]].add(o["Location"])
        scarce = {t: sorted(z) for t, z in where.items() if len(z) < 2}
        if scarce:
            detail = "; ".join(f"{t} is offered in {len(z)} of the chosen zones{' (' + ', '.join(z) + ')' if z else ''}" for t, z in scarce.items())
            checks.append(Check(f"instance types: {key}", FAIL, detail, f"remove them from {key}, or choose network.availabilityZones where they are offered"))
        else:
            checks.append(Check(f"instance types: {key}", PASS, f"{len(types)} types, each in at least 2 of the chosen zones"))
    return checks


def vcpu_needs(cfg: PlatformConfig, clients: Clients) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """vCPUs each quota must cover, with where they come from: every pool at its limit, the system group at its maximum."""
    needs: dict[tuple[str, str], list[tuple[str, int]]] = {}
    ng = cfg.cluster.system_node_group
    described = clients("ec2").describe_instance_types(InstanceTypes=list(ng.instance_types))["InstanceTypes"]
    largest = max(t["VCpuInfo"]["DefaultVCpus"] for t in described)
    capacity = "spot" if ng.capacity_type == "SPOT" else "on-demand"
    needs.setdefault(("standard", capacity), []).append(("system node group", ng.max_size * largest))
    for name, pool in cfg.node_pools.enabled().items():
        groups = {quota_group(t) for t in pool.instance_types} if hasattr(pool, "instance_types") else {"standard"}
        for group in groups:
            # Instances in an On-Demand Capacity Reservation count against the On-Demand quota.
            for capacity in sorted({"on-demand" if c == "reserved" else c for c in pool.capacity_types}):
                needs.setdefault((group, capacity), []).append((f"nodePools.{name}", pool.limits.cpu))
    return needs


def _quota(clients: Clients, code: str) -> float:
    return float(clients("service-quotas").get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])


def check_vcpu_quotas(cfg: PlatformConfig, clients: Clients) -> list[Check]:
    checks = []
    for key, sources in sorted(vcpu_needs(cfg, clients).items()):
        code, quota_name = VCPU_QUOTAS[key]
        needed = sum(v for _, v in sources)
        label = f"quota: {quota_name}"
        try:
            value = _quota(clients, code)
        except (ClientError, BotoCoreError) as exc:
            checks.append(Check(label, WARN, f"could not read quota {code}: {_error(exc)}", "grant servicequotas:GetServiceQuota, or check the quota in the console"))
            continue
        origin = ", ".join(f"{src} {v}" for src, v in sources)
        if value < needed:
            checks.append(
                Check(
                    label,
                    FAIL,
                    f"{code} allows {value:g} vCPUs; the stack may use {needed} ({origin})",
                    f"request an increase: aws service-quotas request-service-quota-increase --service-code ec2 "
                    f"--quota-code {code} --desired-value {needed}, or lower those limits",
                )
            )
        else:
            checks.append(Check(label, PASS, f"{code} allows {value:g} vCPUs, the stack may use {needed} ({origin})"))
    return checks


def _describe_reservation(ec2: Any, reservation: Any) -> list[dict]:
    if reservation.id:
        try:
            return ec2.describe_capacity_reservations(CapacityReservationIds=[reservation.id])["CapacityReservations"]
        except ClientError as exc:
            if exc.response["Error"].get("Code") in ("InvalidCapacityReservationId.NotFound", "InvalidCapacityReservationId.Malformed"):
                return []
            raise
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted((reservation.tags or {}).items())]
    if reservation.owner_id:
        filters.append({"Name": "owner-id", "Values": [reservation.owner_id]})
    return ec2.describe_capacity_reservations(Filters=filters)["CapacityReservations"]


def check_reservations(cfg: PlatformConfig, zones: list[str], clients: Clients) -> list[Check]:
    """Each pool's capacity reservations exist, are active (a Capacity Block not yet begun warns), and hold the
    instance type, zone and count the stack declares, in one of the stack's zones."""
    checks = []
    for name, pool in cfg.node_pools.enabled().items():
        for i, r in enumerate(getattr(pool, "capacity_reservations", [])):
            key = f"nodePools.{name}.capacityReservations[{i}]"
            label = f"capacity reservation: {key}"
            what = r.id or f"tags {r.tags}"
            found = _describe_reservation(clients("ec2"), r)
            if not found:
                checks.append(Check(label, FAIL, f"no capacity reservation {what} in {cfg.region}", f"buy or share it in {cfg.region}, or correct {key}"))
                continue
            wrong = []
            for res in found:
                rid = res["CapacityReservationId"]
                if res["InstanceType"] not in pool.instance_types or res["InstanceType"] != r.instance_type:
                    wrong.append(f"{rid} holds {res['InstanceType']}, the stack declares {r.instance_type} (pool types {list(pool.instance_types)})")
                if res["AvailabilityZone"] != r.availability_zone or res["AvailabilityZone"] not in zones:
                    wrong.append(f"{rid} is in {res['AvailabilityZone']}, the stack declares {r.availability_zone} and runs in {', '.join(zones)}")
                if res.get("ReservationType", "default") != r.type:
                    wrong.append(f"{rid} is of type {res.get('ReservationType', 'default')}, the stack declares {r.type}")
            total = sum(res["TotalInstanceCount"] for res in found)
            if total < r.instance_count:
                wrong.append(f"{what} holds {total} instances, the stack declares {r.instance_count}")
            states = {res["CapacityReservationId"]: res["State"] for res in found}
            inactive = {rid: st for rid, st in states.items() if st not in ("active", "scheduled")}
            if inactive:
                wrong.append("not active: " + ", ".join(f"{rid} is {st}" for rid, st in sorted(inactive.items())))
            if wrong:
                checks.append(Check(label, FAIL, "; ".join(wrong), f"make {key} match the reservation the account holds"))
            elif "scheduled" in states.values():
                starts = ", ".join(f"{res['CapacityReservationId']} at {res.get('StartDate')}" for res in found if res["State"] == "scheduled")
                checks.append(Check(label, WARN, f"{what} has not begun ({starts}): the pool falls back until then", ""))
            else:
                checks.append(Check(label, PASS, f"{what}: {total} x {r.instance_type} in {r.availability_zone}, active"))
    return checks


def check_efa(cfg: PlatformConfig, clients: Clients) -> list[Check]:
    """EC2's own word on each EFA pool's instance types (the config checks them against the device plugin's list)."""
    checks = []
    for name, pool in cfg.node_pools.enabled().items():
        if not getattr(pool, "efa", False):
            continue
        described = clients("ec2").describe_instance_types(InstanceTypes=list(pool.instance_types))["InstanceTypes"]
        info = {t["InstanceType"]: t.get("NetworkInfo", {}) for t in described}
        lacking = sorted(t for t in pool.instance_types if not info.get(t, {}).get("EfaSupported"))
        label = f"EFA: nodePools.{name}"
        if lacking:
            checks.append(Check(label, FAIL, f"EC2 reports no EFA on {', '.join(lacking)} in {cfg.region}", f"remove them from nodePools.{name}.instanceTypes, or set efa: false"))
        else:
            interfaces = ", ".join(f"{t} {info[t].get('EfaInfo', {}).get('MaximumEfaInterfaces', '?')}" for t in pool.instance_types)
            checks.append(Check(label, PASS, f"EFA on every type (most EFA interfaces: {interfaces})"))
    return checks


def check_elastic_ips(cfg: PlatformConfig, clients: Clients) -> Check:
    nat = cfg.network.az_count if cfg.network.nat_gateways == "perAz" else 1
    code, quota_name = ELASTIC_IP_QUOTA
    try:
        value = _quota(clients, code)
        in_use = len(clients("ec2").describe_addresses()["Addresses"])
    except (ClientError, BotoCoreError) as exc:
        return Check(f"quota: {quota_name}", WARN, f"could not read quota {code}: {_error(exc)}", "check the Elastic IP quota in the console")
    if in_use + nat > value:
        return Check(
            f"quota: {quota_name}",
            FAIL,
            f"{in_use} addresses in use + {nat} for NAT gateways exceeds the quota of {value:g}",
            f"release unused addresses, set network.natGateways: single, or raise {code}",
        )
    return Check(f"quota: {quota_name}", PASS, f"{in_use} in use + {nat} for NAT gateways within {value:g}")


def check_kubernetes_version(cfg: PlatformConfig, clients: Clients) -> Check:
    version = cfg.cluster.kubernetes_version
    try:
        found = clients("eks").describe_cluster_versions(clusterVersions=[version])["clusterVersions"]
    except (ClientError, BotoCoreError) as exc:
        return Check("EKS version", WARN, f"could not look up {version}: {_error(exc)}", "check the EKS console for supported versions")
    if not found:
        return Check("EKS version", FAIL, f"EKS in {cfg.region} does not offer Kubernetes {version}", "set cluster.kubernetesVersion to a supported version")
    status = found[0].get("versionStatus", "")
    if status == "STANDARD_SUPPORT":
        return Check("EKS version", PASS, f"Kubernetes {version} is in standard support")
    if status == "EXTENDED_SUPPORT":
        return Check("EKS version", WARN, f"Kubernetes {version} is in extended support (billed extra)", "plan the upgrade to a version in standard support")
    return Check("EKS version", FAIL, f"Kubernetes {version} is {status or 'not supported'}", "set cluster.kubernetesVersion to a supported version")


def pinned_addons(cfg: PlatformConfig) -> dict[str, tuple[str, str]]:
    """EKS add-on -> (pinned version, where it is configured)."""
    a = cfg.cluster.addons
    # Installed only when a team's model store is on S3 (components/model_store.py).
    mountpoint = {"aws-mountpoint-s3-csi-driver": (cfg.storage.mountpoint_csi_driver_version, "storage.mountpointCsiDriverVersion")} if cfg.storage.s3_stores() else {}
    return {
        "vpc-cni": (a.vpc_cni, "cluster.addons.vpcCni"),
        "coredns": (a.coredns, "cluster.addons.coredns"),
        "kube-proxy": (a.kube_proxy, "cluster.addons.kubeProxy"),
        "eks-pod-identity-agent": (a.eks_pod_identity_agent, "cluster.addons.eksPodIdentityAgent"),
        "aws-ebs-csi-driver": (a.aws_ebs_csi_driver, "cluster.addons.awsEbsCsiDriver"),
        "aws-efs-csi-driver": (cfg.storage.efs_csi_driver_version, "storage.efsCsiDriverVersion"),
        **mountpoint,
    }


def _offered_addon_versions(eks: Any, addon: str, kubernetes_version: str) -> list[str]:
    versions, token = [], None
    while True:
        page = eks.describe_addon_versions(addonName=addon, kubernetesVersion=kubernetes_version, **({"nextToken": token} if token else {}))
        versions += [v["addonVersion"] for a in page.get("addons", []) for v in a.get("addonVersions", [])]
        token = page.get("nextToken")
        if not token:
            return versions


def check_addon_versions(cfg: PlatformConfig, clients: Clients) -> Check:
    k8s = cfg.cluster.kubernetes_version
    problems, fixes = [], []
    try:
        for addon, (version, key) in pinned_addons(cfg).items():
            offered = _offered_addon_versions(clients("eks"), addon, k8s)
            if version not in offered:
                newest = offered[0] if offered else "none"
                problems.append(f"{addon} {version} is not offered for Kubernetes {k8s} (newest: {newest})")
                fixes.append(f"{key}: {newest}")
    except (ClientError, BotoCoreError) as exc:
        return Check("EKS add-on versions", WARN, f"could not list add-on versions: {_error(exc)}")
    if problems:
        return Check("EKS add-on versions", FAIL, "; ".join(problems), "pin offered versions: " + ", ".join(fixes))
    return Check("EKS add-on versions", PASS, f"{len(pinned_addons(cfg))} pinned add-ons are offered for Kubernetes {k8s}")


ARCH = {"amd64": "x86_64", "arm64": "arm64"}


def ami_parameter(alias: str, kubernetes_version: str, arch: str, accelerator: str) -> str:
    """The SSM parameter Karpenter resolves a pinned alias through."""
    family, version = alias.split("@", 1)
    if family == "bottlerocket":
        variant = "-nvidia" if accelerator == "nvidia" else ""
        return f"/aws/service/bottlerocket/aws-k8s-{kubernetes_version}{variant}/{ARCH[arch]}/{version.removeprefix('v')}/image_id"
    variant = {"nvidia": "nvidia", "neuron": "neuron"}.get(accelerator, "standard")
    return (
        f"/aws/service/eks/optimized-ami/{kubernetes_version}/amazon-linux-2023/{ARCH[arch]}/{variant}/"
        f"amazon-eks-node-al2023-{ARCH[arch]}-{variant}-{kubernetes_version}-{version}/image_id"
    )


def check_ami_aliases(cfg: PlatformConfig, clients: Clients) -> Check:
    k8s, missing = cfg.cluster.kubernetes_version, []
    try:
        for name, pool in cfg.node_pools.enabled().items():
            for arch in pool.architectures:
                parameter = ami_parameter(pool.ami_alias, k8s, arch, name)
                try:
                    clients("ssm").get_parameter(Name=parameter)
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "ParameterNotFound":
                        raise
                    missing.append(f"nodePools.{name}: {pool.ami_alias} has no {arch} image for Kubernetes {k8s} ({parameter})")
    except (ClientError, BotoCoreError) as exc:
        return Check("AMI aliases", WARN, f"could not read the AMI parameters: {_error(exc)}")
    if missing:
        return Check("AMI aliases", FAIL, "; ".join(missing), "pin a released alias for this Kubernetes version in nodePools.<pool>.amiAlias")
    return Check("AMI aliases", PASS, f"every pool's pinned AMI exists for Kubernetes {k8s}")


def _service_linked_role(name: str, role: str, needed_by: str, created_by_key: Optional[str], fix: str, clients: Clients) -> Check:
    """A service-linked role the stack needs but (unless `created_by_key`) leaves to the account to have."""
    if created_by_key:
        return Check(name, PASS, f"the stack creates it ({created_by_key})")
    try:
        clients("iam").get_role(RoleName=role)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchEntity":
            return Check(name, WARN, f"could not look up {role}: {_error(exc)}")
        return Check(name, FAIL, f"{role} does not exist but {needed_by}", fix)
    return Check(name, PASS, f"{role} exists")


def check_spot_role(cfg: PlatformConfig, clients: Clients) -> Check:
    spot_pools = [name for name, pool in cfg.node_pools.enabled().items() if "spot" in pool.capacity_types]
    if not spot_pools:
        return Check("spot service-linked role", PASS, "no pool uses spot")
    return _service_linked_role(
        "spot service-linked role",
        SPOT_ROLE,
        f"pools {spot_pools} use spot",
        "karpenter.createSpotServiceLinkedRole" if cfg.karpenter.create_spot_service_linked_role else None,
        "set karpenter.createSpotServiceLinkedRole: true, or run aws iam create-service-linked-role --aws-service-name spot.amazonaws.com",
        clients,
    )


def check_search_role(cfg: PlatformConfig, clients: Clients) -> Check:
    """An OpenSearch domain inside a VPC is refused until the account has OpenSearch's service-linked role."""
    search = cfg.logging.open_search
    if not search.enabled:
        return Check("OpenSearch service-linked role", PASS, "no OpenSearch domain")
    return _service_linked_role(
        "OpenSearch service-linked role",
        SEARCH_ROLE,
        "the stack creates an OpenSearch domain in the VPC",
        "logging.openSearch.createServiceLinkedRole" if search.create_service_linked_role else None,
        "set logging.openSearch.createServiceLinkedRole: true, or run aws iam create-service-linked-role --aws-service-name opensearchservice.amazonaws.com",
        clients,
    )


def run_checks(cfg: PlatformConfig, clients: Clients) -> list[Check]:
    identity, caller = check_identity(clients)
    if caller is None:
        return [identity]
    checks = [identity, check_creator_access(cfg, caller)]
    try:
        zones_check, zones = chosen_zones(cfg, clients)
        checks.append(zones_check)
        checks += check_instance_offerings(cfg, zones, clients)
        checks += check_vcpu_quotas(cfg, clients)
        checks += check_reservations(cfg, zones, clients)
        checks += check_efa(cfg, clients)
    except (ClientError, BotoCoreError) as exc:
        checks.append(Check("EC2", FAIL, f"EC2 calls failed: {_error(exc)}", "grant ec2:Describe* to the identity running the preflight"))
    checks += [
        check_elastic_ips(cfg, clients),
        check_kubernetes_version(cfg, clients),
        check_addon_versions(cfg, clients),
        check_ami_aliases(cfg, clients),
        check_spot_role(cfg, clients),
        check_search_role(cfg, clients),
    ]
    return checks


def table(checks: Iterable[Check]) -> str:
    checks = list(checks)
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  result  detail", f"{'-' * width}  ------  ------"]
    for c in checks:
        lines.append(f"{c.name:<{width}}  {c.status:<6}  {c.detail}")
        if c.fix and c.status != PASS:
            lines.append(f"{'':<{width}}          fix: {c.fix}")
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    lines.append(f"{len(checks) - failed - warned} passed, {failed} failed" + (f", {warned} warnings" if warned else ""))
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None, clients: Optional[Clients] = None) -> int:
    from infra.synth import SynthConfigError, read_stack_file

    parser = argparse.ArgumentParser(prog="python -m infra.preflight", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--config", type=Path, help="a stack config file instead of stacks/Pulumi.<stack>.yaml")
    parser.add_argument("--profile", help="AWS profile to use")
    args = parser.parse_args(argv)
    try:
        stack_file = read_stack_file(args.config or ROOT / "stacks" / f"Pulumi.{args.stack}.yaml")
        cfg = from_bag(stack_file.bag, stack_file.secret_keys)
    except (SynthConfigError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if clients is None:
        import boto3

        session = boto3.Session(profile_name=args.profile, region_name=cfg.region)
        clients = functools.lru_cache(maxsize=None)(session.client)
    checks = [check_placeholders(stack_file.bag), check_secrets_set(stack_file.unset), *run_checks(cfg, clients)]
    print(f"preflight for stack '{args.stack}' in {cfg.region}\n{table(checks)}")
    return 1 if any(c.status == FAIL for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
