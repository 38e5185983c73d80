"""Typed platform configuration, validated once before any resource is registered.

Stack files hold `ml-platform:<section>` keys in camelCase; `load()` reads every key of the
project namespace (unknown keys included) and returns one frozen `PlatformConfig`.
"""
from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Iterable, Literal, Optional

import pulumi
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel

from infra.accelerators import NEURON, NVIDIA, AcceleratorKind, family_of
from infra.versions import PINS

PROJECT = "ml-platform"

SUPPORTED_KUBERNETES_VERSIONS = ("1.32", "1.33", "1.34", "1.35")
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
NODE_AMI_TYPES = ("AL2023_x86_64_STANDARD", "AL2023_ARM_64_STANDARD")


# Keys whose values are secrets: never echoed in an error.
SECRET_KEYS = ("alertingSecrets",)


class ConfigError(pulumi.RunError):
    """Invalid configuration; the message names the key path, the bad value and what is allowed."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


def _ipv4_network(value: str) -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise ValueError("expected an IPv4 CIDR with no host bits set, like 10.0.0.0/16") from None
    return str(net)


Cidr = Annotated[str, AfterValidator(_ipv4_network)]
RetentionDays = Literal[LOG_RETENTION_DAYS]  # type: ignore[valid-type]
IamRoleArn = Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")]
AddonVersion = Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+-eksbuild\.\d+$")]


class Tags(Model):
    owner: Annotated[str, Field(min_length=1, max_length=128)]
    cost_center: Annotated[str, Field(min_length=1, max_length=128)]
    extra: dict[str, str] = {}


class FlowLogs(Model):
    # Every VPC keeps a record of its traffic for incident response; retention is the cost lever.
    enabled: bool = True
    retention_days: RetentionDays = 30


class NetworkConfig(Model):
    cidr: Cidr = "10.0.0.0/16"
    az_count: Annotated[int, Field(ge=2, le=6)] = 3
    availability_zones: Optional[list[str]] = None
    nat_gateways: Literal["single", "perAz"] = "perAz"
    private_subnet_prefix: Annotated[int, Field(ge=16, le=26)] = 19
    public_subnet_prefix: Annotated[int, Field(ge=16, le=28)] = 24
    flow_logs: FlowLogs = FlowLogs()

    @model_validator(mode="after")
    def _subnets_fit(self) -> "NetworkConfig":
        if self.availability_zones is not None and len(self.availability_zones) != self.az_count:
            raise ValueError(f"availabilityZones lists {len(self.availability_zones)} zones but azCount is {self.az_count}")
        plan_subnets(self)
        return self


def plan_subnets(net: NetworkConfig) -> tuple[list[str], list[str]]:
    """Carves `az_count` private then `az_count` public subnets out of the VPC CIDR, largest first."""
    vpc = ipaddress.IPv4Network(net.cidr)
    for key, prefix in (("privateSubnetPrefix", net.private_subnet_prefix), ("publicSubnetPrefix", net.public_subnet_prefix)):
        if prefix <= vpc.prefixlen:
            raise ValueError(f"{key} /{prefix} must be longer than the VPC CIDR /{vpc.prefixlen}")
    free = [vpc]
    allocated: dict[str, list[str]] = {"private": [], "public": []}
    for kind, prefix in (("private", net.private_subnet_prefix), ("public", net.public_subnet_prefix)):
        for _ in range(net.az_count):
            block = next((b for b in free if b.prefixlen <= prefix), None)
            if block is None:
                raise ValueError(
                    f"cidr {net.cidr} is too small for {net.az_count} private /{net.private_subnet_prefix} and "
                    f"{net.az_count} public /{net.public_subnet_prefix} subnets; widen it or lengthen the subnet prefixes"
                )
            free.remove(block)
            first, *rest = block.subnets(new_prefix=prefix)
            free = sorted(free + list(rest), key=lambda b: (b.network_address, b.prefixlen))
            allocated[kind].append(str(first))
    return allocated["private"], allocated["public"]


class EndpointAccess(Model):
    private_access: Literal[True] = True
    public_access: bool = False
    public_access_cidrs: list[Cidr] = []

    @model_validator(mode="after")
    def _public_needs_cidrs(self) -> "EndpointAccess":
        if self.public_access and not self.public_access_cidrs:
            raise ValueError("publicAccess is on but publicAccessCidrs is empty; list the CIDRs allowed to reach the API")
        if not self.public_access and self.public_access_cidrs:
            raise ValueError("publicAccessCidrs is set but publicAccess is off")
        return self


class ClusterAccess(Model):
    """Who administers the cluster. Prefer listing the roles, including the one Pulumi runs as: access entries
    in the stack are auditable and survive the creator's departure. `clusterCreatorAdmin` lets EKS bootstrap an
    entry for whoever creates the cluster; that identity must then not be listed too (the preflight checks)."""

    admin_role_arns: list[IamRoleArn] = []
    cluster_creator_admin: bool = False

    @model_validator(mode="after")
    def _someone_is_admin(self) -> "ClusterAccess":
        if not self.admin_role_arns and not self.cluster_creator_admin:
            raise ValueError(
                "adminRoleArns is empty and clusterCreatorAdmin is false, so nobody could administer the cluster; list the "
                "admin role ARNs (the role Pulumi runs as among them), or set clusterCreatorAdmin: true to let EKS admit the creator"
            )
        return self


class SystemNodeGroup(Model):
    instance_types: Annotated[list[str], Field(min_length=1)] = ["m7i.large"]
    ami_type: Literal[NODE_AMI_TYPES] = "AL2023_x86_64_STANDARD"  # type: ignore[valid-type]
    # EKS-optimized AMI release for the node group; None takes the newest at creation and then stays put.
    release_version: Optional[Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+-\d{8}$")]] = None
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    min_size: Annotated[int, Field(ge=1, le=50)] = 2
    desired_size: Annotated[int, Field(ge=1, le=50)] = 2
    max_size: Annotated[int, Field(ge=1, le=50)] = 4
    disk_size_gib: Annotated[int, Field(ge=20, le=1000)] = 50

    @model_validator(mode="after")
    def _sizes(self) -> "SystemNodeGroup":
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(f"minSize <= desiredSize <= maxSize must hold, got {self.min_size}, {self.desired_size}, {self.max_size}")
        return self


class AddonVersions(Model):
    vpc_cni: AddonVersion = "v1.21.1-eksbuild.3"
    coredns: AddonVersion = "v1.13.2-eksbuild.1"
    kube_proxy: AddonVersion = "v1.35.0-eksbuild.2"
    eks_pod_identity_agent: AddonVersion = "v1.3.9-eksbuild.3"
    aws_ebs_csi_driver: AddonVersion = "v1.51.1-eksbuild.1"


class ClusterConfig(Model):
    name: Optional[Annotated[str, Field(pattern=r"^[a-zA-Z][-a-zA-Z0-9]{0,99}$")]] = None
    kubernetes_version: Literal[SUPPORTED_KUBERNETES_VERSIONS] = "1.35"  # type: ignore[valid-type]
    endpoint: EndpointAccess = EndpointAccess()
    access: ClusterAccess
    log_retention_days: RetentionDays = 90
    service_ipv4_cidr: Cidr = "172.20.0.0/16"
    deletion_protection: bool = False
    system_node_group: SystemNodeGroup = SystemNodeGroup()
    addons: AddonVersions = AddonVersions()

    @model_validator(mode="after")
    def _kube_proxy_matches(self) -> "ClusterConfig":
        minor = re.match(r"^v(\d+\.\d+)\.", self.addons.kube_proxy).group(1)  # type: ignore[union-attr]
        if minor != self.kubernetes_version:
            raise ValueError(
                f"addons.kubeProxy {self.addons.kube_proxy} is for Kubernetes {minor} but kubernetesVersion is "
                f"{self.kubernetes_version}; pin the kube-proxy build for {self.kubernetes_version}"
            )
        return self


Quantity = Annotated[str, Field(pattern=r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?$")]
Duration = Annotated[str, Field(pattern=r"^(([0-9]+(s|m|h))+|Never)$")]
CapacityType = Literal["spot", "on-demand"]
# Karpenter AMI aliases pinned to a release; `@latest` would roll every node on each new AMI.
AmiAlias = Annotated[str, Field(pattern=r"^(al2023@v\d{8}|bottlerocket@v\d+\.\d+\.\d+)$")]
InstanceType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[0-9a-z]+$")]


class KarpenterConfig(Model):
    version: Annotated[str, Field(pattern=r"^1\.\d+\.\d+$")] = PINS["karpenter"]
    replicas: Annotated[int, Field(ge=1, le=5)] = 2
    # Accounts that ever used spot already have this role; creating it twice fails.
    create_spot_service_linked_role: bool = False
    log_level: Literal["debug", "info", "error"] = "info"


class DisruptionBudget(Model):
    nodes: Annotated[str, Field(pattern=r"^((100|[0-9]{1,2})%|[0-9]+)$")]
    reasons: Optional[list[Literal["Underutilized", "Empty", "Drifted"]]] = None
    schedule: Optional[str] = None
    duration: Optional[Annotated[str, Field(pattern=r"^([0-9]+h)?([0-9]+m)?$")]] = None

    @model_validator(mode="after")
    def _schedule_with_duration(self) -> "DisruptionBudget":
        if (self.schedule is None) != (self.duration is None):
            raise ValueError("schedule and duration must be set together")
        return self


class Disruption(Model):
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"]
    consolidate_after: Duration
    expire_after: Duration = "720h"
    termination_grace_period: Duration = "24h"
    budgets: Annotated[list[DisruptionBudget], Field(min_length=1)]


class PoolLimits(Model):
    cpu: Annotated[int, Field(ge=1)]
    memory_gib: Annotated[int, Field(ge=1)]
    accelerators: Optional[Annotated[int, Field(ge=1)]] = None


class NodePoolBase(Model):
    enabled: bool = True
    capacity_types: Annotated[list[CapacityType], Field(min_length=1)] = ["on-demand"]
    architectures: Annotated[list[Literal["amd64", "arm64"]], Field(min_length=1)] = ["amd64"]
    # An AL2023 release that builds the standard, NVIDIA and Neuron AMIs for Kubernetes 1.33 to 1.36.
    ami_alias: AmiAlias = "al2023@v20260714"
    root_volume_gib: Annotated[int, Field(ge=20, le=16000)] = 100
    weight: Annotated[int, Field(ge=1, le=100)] = 10
    # No default: a pool's limits are the most it may ever buy, a choice each stack makes explicitly.
    limits: PoolLimits
    disruption: Disruption


class CpuPool(NodePoolBase):
    instance_categories: Annotated[list[Literal["c", "m", "r"]], Field(min_length=1)] = ["c", "m", "r"]
    min_generation: Annotated[int, Field(ge=1, le=9)] = 6
    weight: Annotated[int, Field(ge=1, le=100)] = 50
    root_volume_gib: Annotated[int, Field(ge=20, le=16000)] = 50
    disruption: Disruption = Disruption(
        consolidation_policy="WhenEmptyOrUnderutilized", consolidate_after="1m", budgets=[DisruptionBudget(nodes="10%")]
    )


# Accelerator nodes are slow to start and expensive to churn: consolidate only when empty.
ACCELERATOR_DISRUPTION = Disruption(
    consolidation_policy="WhenEmpty",
    consolidate_after="15m",
    termination_grace_period="48h",
    budgets=[DisruptionBudget(nodes="1"), DisruptionBudget(nodes="0", reasons=["Drifted"], schedule="0 8 * * mon-fri", duration="10h")],
)


class AcceleratorPool(NodePoolBase):
    instance_types: Annotated[list[InstanceType], Field(min_length=1)]
    disruption: Disruption = ACCELERATOR_DISRUPTION

    @model_validator(mode="after")
    def _limits_cover_accelerators(self) -> "AcceleratorPool":
        if self.limits.accelerators is None:
            raise ValueError("limits.accelerators is required, so a runaway job cannot buy unbounded accelerators")
        return self


class NvidiaPool(AcceleratorPool):
    instance_types: Annotated[list[InstanceType], Field(min_length=1)] = ["g5.xlarge", "g5.2xlarge", "g6.xlarge", "g6.2xlarge", "g6e.xlarge"]
    root_volume_gib: Annotated[int, Field(ge=20, le=16000)] = 200

    @model_validator(mode="after")
    def _gpu_families(self) -> "NvidiaPool":
        return _families_of(self, NVIDIA)


class NeuronPool(AcceleratorPool):
    instance_types: Annotated[list[InstanceType], Field(min_length=1)] = ["inf1.xlarge", "inf1.2xlarge", "inf2.xlarge", "inf2.8xlarge"]
    root_volume_gib: Annotated[int, Field(ge=20, le=16000)] = 150

    @model_validator(mode="after")
    def _neuron_families(self) -> "NeuronPool":
        return _families_of(self, NEURON)


def _families_of(pool: AcceleratorPool, kind: AcceleratorKind):
    wrong = [t for t in pool.instance_types if family_of(t) not in kind.families]
    if wrong:
        raise ValueError(
            f"instanceTypes {wrong} carry no {kind.resource}; allowed families: {', '.join(sorted(kind.families))}"
        )
    return pool


class NodePools(Model):
    """The cpu pool always runs (the gateway and monitoring live there); accelerator pools exist once declared."""

    cpu: CpuPool
    nvidia: Optional[NvidiaPool] = None
    neuron: Optional[NeuronPool] = None

    @model_validator(mode="after")
    def _cpu_pool_enabled(self) -> "NodePools":
        if not self.cpu.enabled:
            raise ValueError("cpu.enabled must stay true: the ingress gateway, Prometheus and Grafana run on the cpu pool")
        return self

    def enabled(self) -> dict[str, NodePoolBase]:
        return {name: pool for name, pool in (("cpu", self.cpu), ("nvidia", self.nvidia), ("neuron", self.neuron)) if pool and pool.enabled}


class HelmChart(Model):
    version: Annotated[str, Field(pattern=r"^v?\d+\.\d+\.\d+$")]


class GpuSharing(Model):
    strategy: Literal["none", "timeSlicing", "mig"] = "none"
    time_slicing_replicas: Annotated[int, Field(ge=2, le=48)] = 4
    mig_strategy: Literal["single", "mixed"] = "single"


class NvidiaDra(Model):
    """GPUs through Dynamic Resource Allocation (resource.k8s.io/v1): the NVIDIA DRA driver publishes them, workloads
    claim them with a ResourceClaimTemplate, and the GPU operator's device plugin steps aside (the two cannot share
    a node)."""

    enabled: bool = False
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["dra-driver-nvidia-gpu"]


class GpuOperator(Model):
    version: Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")] = PINS["gpu-operator"]
    # The AL2023 NVIDIA AMIs ship the driver and container toolkit.
    driver_from_ami: bool = True
    sharing: GpuSharing = GpuSharing()
    dra: NvidiaDra = NvidiaDra()

    @model_validator(mode="after")
    def _dra_alone(self) -> "GpuOperator":
        if self.dra.enabled and self.sharing.strategy != "none":
            raise ValueError(f"dra.enabled with sharing.strategy {self.sharing.strategy!r}: GPU sharing is the device plugin's, which DRA replaces")
        return self


class AcceleratorsConfig(Model):
    gpu_operator: GpuOperator = GpuOperator()
    neuron: HelmChart = HelmChart(version=PINS["neuron-helm-chart"])
    neuron_monitor_image: Annotated[str, Field(pattern=r"^[a-z0-9./-]+:[0-9][A-Za-z0-9._-]*$")] = "public.ecr.aws/neuron/neuron-monitor:1.1.0"
    metrics_server: HelmChart = HelmChart(version=PINS["metrics-server"])
    metrics_server_replicas: Annotated[int, Field(ge=1, le=5)] = 2


DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class EfsStorageClass(Model):
    purpose: Annotated[str, Field(min_length=3)]
    base_path: Annotated[str, Field(pattern=r"^/[a-z0-9][-a-z0-9/]*$")]
    uid: Annotated[int, Field(ge=0, le=2147483647)] = 1000
    gid: Annotated[int, Field(ge=0, le=2147483647)] = 1000
    directory_perms: Annotated[str, Field(pattern=r"^0?[0-7]{3}$")] = "750"


class ModelStore(Model):
    """A team's model store: an EFS access point rooted at /model-stores/<team>, whose files all belong to this
    POSIX identity whatever the client's; only pods in the team's namespace can claim it."""

    uid: Annotated[int, Field(ge=1000, le=2147483647)]
    gid: Optional[Annotated[int, Field(ge=1000, le=2147483647)]] = None
    size_gib: Annotated[int, Field(ge=1, le=1000000)] = 1000

    @property
    def group(self) -> int:
        return self.gid if self.gid is not None else self.uid


class StorageConfig(Model):
    efs_csi_driver_version: AddonVersion = "v2.1.13-eksbuild.1"
    throughput_mode: Literal["elastic", "bursting"] = "elastic"
    transition_to_ia: Optional[Literal["AFTER_7_DAYS", "AFTER_14_DAYS", "AFTER_30_DAYS", "AFTER_60_DAYS", "AFTER_90_DAYS"]] = "AFTER_30_DAYS"
    backups: bool = False
    # Pulumi refuses to delete a protected file system: datasets and checkpoints outlive a mistaken destroy.
    protect: bool = False
    reclaim_policy: Literal["Retain", "Delete"] = "Delete"
    classes: Annotated[dict[DnsLabel, EfsStorageClass], Field(min_length=1)] = {
        "efs-shared": EfsStorageClass(purpose="datasets and training checkpoints shared by a team", base_path="/shared"),
    }
    # Per team (by name): where its trained and downloaded models live, versioned.
    model_stores: dict[DnsLabel, ModelStore] = {}


class GatewayConfig(Model):
    scheme: Literal["internet-facing", "internal"] = "internal"
    # Who may reach the listener; defaults to the VPC for internal, everyone for internet-facing.
    allowed_cidrs: Optional[list[Cidr]] = None
    # An ACM certificate: the NLB terminates TLS on 443.
    certificate_arn: Optional[Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$")]] = None
    hosts: Annotated[list[str], Field(min_length=1)] = ["*"]
    min_replicas: Annotated[int, Field(ge=1, le=20)] = 2
    max_replicas: Annotated[int, Field(ge=1, le=50)] = 5

    @model_validator(mode="after")
    def _replicas(self) -> "GatewayConfig":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}")
        return self


class MeshConfig(Model):
    istio_version: Annotated[str, Field(pattern=r"^1\.\d+\.\d+$")] = PINS["istio"]
    istiod_replicas: Annotated[int, Field(ge=1, le=5)] = 1
    load_balancer_controller_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["aws-load-balancer-controller"]
    gateway: GatewayConfig = GatewayConfig()


class AlertReceiver(Model):
    """Where alerts go. Its credential (PagerDuty Events API v2 routing key, or an https webhook URL for slack and
    webhook) is the secret `alertingSecrets.<name>`, never a plain config value."""

    name: DnsLabel
    kind: Literal["pagerduty", "slack", "webhook"]
    slack_channel: Optional[Annotated[str, Field(pattern=r"^#[-a-z0-9_]+$")]] = None

    @model_validator(mode="after")
    def _channel(self) -> "AlertReceiver":
        if (self.kind == "slack") != (self.slack_channel is not None):
            raise ValueError("slackChannel is required for kind slack and only for it")
        return self


class AlertRoutes(Model):
    """The receiver for each severity; without one, alerts of that severity stay in Alertmanager's UI."""

    critical: Optional[DnsLabel] = None
    warning: Optional[DnsLabel] = None


class Watchdog(Model):
    """The always-firing Watchdog alert, sent to a dead man's switch that pages when the heartbeat stops."""

    receiver: Optional[DnsLabel] = None
    repeat_interval: Annotated[str, Field(pattern=r"^[0-9]+[mh]$")] = "5m"


class AlertingConfig(Model):
    receivers: list[AlertReceiver] = []
    routes: AlertRoutes = AlertRoutes()
    watchdog: Watchdog = Watchdog()

    def receiver_references(self, teams: list["TeamConfig"]) -> dict[str, str]:
        """Key path -> receiver name, for every place that names a receiver."""
        refs = {f"alerting.routes.{k}": v for k, v in (("critical", self.routes.critical), ("warning", self.routes.warning)) if v}
        if self.watchdog.receiver:
            refs["alerting.watchdog.receiver"] = self.watchdog.receiver
        refs.update({f"teams[{i}].alertReceiver": t.alert_receiver for i, t in enumerate(teams) if t.alert_receiver})
        return refs


class OpenSearchConfig(Model):
    """The opt-in search sink: an Amazon OpenSearch Service domain inside the VPC (Dashboards reachable only from there)."""

    enabled: bool = False
    engine_version: Annotated[str, Field(pattern=r"^OpenSearch_\d+\.\d+$")] = "OpenSearch_2.19"
    instance_type: Annotated[str, Field(pattern=r"^[a-z0-9]+\.[a-z0-9]+\.search$")] = "r6g.large.search"
    # Data nodes, spread evenly over zoneCount availability zones.
    instance_count: Annotated[int, Field(ge=1, le=80)] = 3
    zone_count: Literal[1, 2, 3] = 3
    # Three dedicated cluster managers keep the domain available through a zone outage; None runs without.
    dedicated_manager_type: Optional[Annotated[str, Field(pattern=r"^[a-z0-9]+\.[a-z0-9]+\.search$")]] = "m6g.large.search"
    volume_gib: Annotated[int, Field(ge=10, le=16000)] = 100
    # Gets full access inside OpenSearch (all_access, security_manager); required when enabled.
    admin_role_arn: Optional[IamRoleArn] = None
    # VPC domains need AWSServiceRoleForAmazonOpenSearchService; an account has it once, creating it twice fails.
    create_service_linked_role: bool = False

    @model_validator(mode="after")
    def _shape(self) -> "OpenSearchConfig":
        if self.enabled and self.admin_role_arn is None:
            raise ValueError("openSearch.adminRoleArn is required when openSearch.enabled: the role that administers the domain")
        if self.instance_count % self.zone_count:
            raise ValueError(f"openSearch.instanceCount {self.instance_count} must be a multiple of zoneCount {self.zone_count}, one share per zone")
        return self


class LoggingConfig(Model):
    """Container logs to CloudWatch Logs (always) and OpenSearch (opt-in), shipped by Fluent Bit on every node."""

    fluent_bit_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["fluent-bit"]
    retention_days: RetentionDays = 30
    # Fluent Bit buffers on the node's disk while a sink is down: this long at the rate below loses nothing.
    outage_tolerance_minutes: Annotated[int, Field(ge=1, le=1440)] = 60
    # Typical container log volume of one node; sizes the buffer and the cost estimate of log ingestion.
    node_log_rate_kib_per_second: Annotated[int, Field(ge=1, le=10240)] = 32
    open_search: OpenSearchConfig = OpenSearchConfig()

    @property
    def buffer_mib(self) -> int:
        return math.ceil(self.outage_tolerance_minutes * 60 * self.node_log_rate_kib_per_second / 1024)


class SchedulingConfig(Model):
    """Gang admission of training: every run is admitted whole through its team's queue, or waits."""

    gang: Literal["kueue", "volcano"] = "kueue"
    kueue_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["kueue"]
    jobset_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["jobset"]
    volcano_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["volcano"]
    # What a team may borrow from the cohort's idle quota, in percent of its own; its ResourceQuota grows by as much.
    borrowing_limit_percent: Annotated[int, Field(ge=0, le=100)] = 0
    # An admitted run whose pods are not all running by then is evicted and requeued, freeing its quota: longer
    # than an accelerator node launch plus an image pull (about 13 minutes), or runs would be evicted while starting.
    wait_for_pods_ready_minutes: Annotated[int, Field(ge=15, le=120)] = 20
    replicas: Annotated[int, Field(ge=1, le=3)] = 1


class BudgetConfig(Model):
    """What the stack may cost at most: the policy pack holds its worst case to this, and an AWS Budget alerts on real spend."""

    # No default: like a pool's limits, the most an environment may spend is each stack's explicit choice.
    max_hourly_usd: Annotated[float, Field(gt=0)]
    # Spot-only pools priced at this fraction of on-demand; 1 assumes spot may cost as much (its upper bound).
    spot_price_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    # Alerted when actual or forecast monthly spend passes the ceiling.
    notify_emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = []


class ObservabilityConfig(Model):
    kube_prometheus_stack_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["kube-prometheus-stack"]
    prometheus_retention: Annotated[str, Field(pattern=r"^\d+[dhw]$")] = "15d"
    prometheus_volume_gib: Annotated[int, Field(ge=10, le=16000)] = 100
    prometheus_replicas: Annotated[int, Field(ge=1, le=3)] = 1
    alertmanager_replicas: Annotated[int, Field(ge=1, le=3)] = 1
    grafana_volume_gib: Annotated[int, Field(ge=1, le=1000)] = 10
    latency_objective_ms: Annotated[int, Field(ge=1)] = 500
    error_rate_objective: Annotated[float, Field(gt=0, lt=1)] = 0.05
    gpu_idle_minutes: Annotated[int, Field(ge=10)] = 60


class PrometheusAdapterConfig(Model):
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["prometheus-adapter"]
    # HPAs on custom metrics, and API discovery, need custom.metrics.k8s.io up: two replicas survive a node drain.
    replicas: Annotated[int, Field(ge=1, le=5)] = 2


class VerticalPodAutoscalerConfig(Model):
    # The recommender: every serving workload gets recommendations (VPA mode Off) without a pod being touched.
    enabled: bool = True
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["vertical-pod-autoscaler"]
    replicas: Annotated[int, Field(ge=1, le=5)] = 2
    # Opt-in, for workloads whose vpaUpdateMode is not Off: the updater applies recommendations to running pods
    # (eviction or in-place resize), the admission controller sets the recommended requests on new pods.
    updater: bool = False
    admission_controller: bool = False


class AutoscalingConfig(Model):
    prometheus_adapter: PrometheusAdapterConfig = PrometheusAdapterConfig()
    vertical_pod_autoscaler: VerticalPodAutoscalerConfig = VerticalPodAutoscalerConfig()


def _pinned_image(value: str) -> str:
    repository, sep, tag = value.rpartition(":")
    if "@sha256:" in value:
        return value
    if not sep or "/" in tag or not repository:
        raise ValueError("expected an image pinned by tag or digest, like registry/name:1.2.3")
    if tag == "latest":
        raise ValueError("the tag 'latest' moves; pin a version tag or a digest")
    return value


# An image pinned by tag (not `latest`) or by digest.
ImageRef = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9./_:@-]*[A-Za-z0-9._-]$"), AfterValidator(_pinned_image)]
CpuQuantity = Annotated[str, Field(pattern=r"^(\d+m|\d+(\.\d+)?)$")]
Accelerator = Literal["cpu", "nvidia", "neuron"]


class TeamQuota(Model):
    cpu: Annotated[int, Field(ge=1)] = 32
    memory_gib: Annotated[int, Field(ge=1)] = 128
    nvidia_gpus: Annotated[int, Field(ge=0)] = 0
    neuron_cores: Annotated[int, Field(ge=0)] = 0
    pvcs: Annotated[int, Field(ge=0)] = 20
    storage_gib: Annotated[int, Field(ge=0)] = 1000


class ContainerDefaults(Model):
    cpu: CpuQuantity = "250m"
    memory_mib: Annotated[int, Field(ge=16)] = 512


class TeamConfig(Model):
    name: DnsLabel
    # Team members assume this role; an access entry maps it to the team's Kubernetes group.
    iam_role_arn: IamRoleArn
    quota: TeamQuota = TeamQuota()
    container_defaults: ContainerDefaults = ContainerDefaults()
    # The team's own receiver: alerts from its namespace go there too (an AlertmanagerConfig in the namespace).
    alert_receiver: Optional[DnsLabel] = None


class Resources(Model):
    cpu: CpuQuantity
    memory_gib: Annotated[float, Field(gt=0, le=2048)]


class VolumeConfig(Model):
    storage_class: DnsLabel
    size_gib: Annotated[int, Field(ge=1, le=100000)]
    mount_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9._/-]+$")]


class Probe(Model):
    path: Optional[Annotated[str, Field(pattern=r"^/[A-Za-z0-9._/-]*$")]] = None  # HTTP GET; None probes the TCP port
    startup_seconds: Annotated[int, Field(ge=10, le=3600)] = 300  # model load time allowed


def custom_metrics() -> dict:
    """The per-pod metrics the platform's Prometheus adapter serves, by name (imported on use: components import this module)."""
    from components.autoscaling import CUSTOM_METRICS

    return CUSTOM_METRICS


def _served_metric(value: str) -> str:
    if value not in custom_metrics():
        raise ValueError(f"expected one of {', '.join(sorted(custom_metrics()))}: the metrics the platform's Prometheus adapter serves")
    return value


def _vpa_update_mode(value: Any) -> Any:
    if value is False:
        return "Off"  # a YAML 1.1 reader (PyYAML) reads an unquoted Off as false
    if value == "Auto":
        raise ValueError("'Auto' is deprecated at the pinned VPA, where it means Recreate; use Recreate or InPlaceOrRecreate")
    return value


# The CRD's update modes at the pinned VPA, less InPlace (behind a VPA feature gate) and the deprecated Auto.
VpaUpdateMode = Literal["Off", "Initial", "Recreate", "InPlaceOrRecreate"]


class Autoscaling(Model):
    min_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 3
    target_cpu_utilization: Annotated[int, Field(ge=10, le=100)] = 70
    # A per-pod metric the platform's Prometheus adapter serves, instead of CPU; customMetricTarget is its average per pod.
    custom_metric: Optional[Annotated[str, AfterValidator(_served_metric)]] = None
    custom_metric_target: Optional[CpuQuantity] = None
    # What the workload's VerticalPodAutoscaler does with its recommendations; Off only records them.
    vpa_update_mode: Annotated[VpaUpdateMode, BeforeValidator(_vpa_update_mode)] = "Off"

    @model_validator(mode="after")
    def _bounds(self) -> "Autoscaling":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}")
        if (self.custom_metric is None) != (self.custom_metric_target is None):
            raise ValueError("customMetric and customMetricTarget go together")
        return self


# A model version is a label that names content forever (published versions are immutable).
ModelVersion = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$")]
# Services and Deployments are named after workloads: a DNS-1035 label with room for "-canary".
WorkloadName = Annotated[str, Field(pattern=r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$")]
NeuronTarget = Literal["inf1", "inf2", "trn1", "trn2"]


class ExternalModel(Model):
    """A public model, downloaded into the team's store by the bootstrap job at an exact commit."""

    hub_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[-A-Za-z0-9_.]+$")]
    # A commit, not a branch: the version's content must never move.
    revision: Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]


class ModelRef(Model):
    name: DnsLabel
    version: ModelVersion
    external: Optional[ExternalModel] = None

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


class ModelOutput(Model):
    name: DnsLabel
    version: ModelVersion

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


class StableTrack(Model):
    """What keeps serving the rest of the traffic while a canary runs; each defaults to the workload's own."""

    model: Optional[ModelRef] = None
    image: Optional[ImageRef] = None


class Canary(Model):
    """A rollout in progress: the workload's `model` and `image` are the canary's, `stable` what they replace.
    `promote` (or weight 100) makes the canary the only version."""

    weight: Annotated[int, Field(ge=1, le=100)]
    promote: bool = False
    stable: StableTrack = StableTrack()

    @property
    def promoted(self) -> bool:
        return self.promote or self.weight == 100


@dataclass(frozen=True)
class Track:
    """One version of a serving workload: its Deployment, Service and share of the route."""

    role: str  # stable or canary
    image: str
    model: Optional[ModelRef]
    weight: int
    min_replicas: int
    max_replicas: int


class WorkloadBase(Model):
    name: WorkloadName
    team: DnsLabel
    image: ImageRef
    accelerator: Accelerator = "cpu"
    accelerator_count: Annotated[int, Field(ge=0, le=16)] = 0
    resources: Resources
    env: dict[Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")], str] = {}

    @model_validator(mode="after")
    def _accelerator_count(self):
        if (self.accelerator == "cpu") != (self.accelerator_count == 0):
            raise ValueError("acceleratorCount must be 0 for cpu and at least 1 for nvidia or neuron")
        return self


class ServingWorkload(WorkloadBase):
    kind: Literal["serving"]
    port: Annotated[int, Field(ge=1024, le=65535)] = 8080
    metrics_port: Annotated[int, Field(ge=1024, le=65535)] = 9100
    path: Annotated[str, Field(pattern=r"^/[a-z0-9][-a-z0-9/]*$")]
    probe: Probe = Probe()
    autoscaling: Autoscaling = Autoscaling()
    # What it serves, from the team's model store (read-only); with a canary, the canary's model.
    model: Optional[ModelRef] = None
    # The Neuron instance family it runs on, which decides the compiler (inf1: torch-neuron, others: torch-neuronx).
    neuron_target: Optional[NeuronTarget] = None
    canary: Optional[Canary] = None
    # True: `pulumi up` waits for the first rollout (model download, compile, start), sized in infra/timing.py.
    # False: it returns once the objects exist; the cluster finishes the rollout, and kube-prometheus-stack's
    # KubeDeploymentReplicasMismatch and KubeJobFailed alerts report one that does not (a deploy stays short).
    await_rollout: bool = True

    def tracks(self) -> list[Track]:
        a = self.autoscaling
        if not self.canary or self.canary.promoted:
            return [Track("stable", self.image, self.model, 100, a.min_replicas, a.max_replicas)]
        stable = self.canary.stable
        weight = self.canary.weight
        return [
            Track("stable", stable.image or self.image, stable.model or self.model, 100 - weight, a.min_replicas, a.max_replicas),
            # The canary scales with its share of the traffic, never below one pod.
            Track("canary", self.image, self.model, weight, 1, max(1, math.ceil(a.max_replicas * weight / 100))),
        ]

    def models(self) -> list[ModelRef]:
        return [t.model for t in self.tracks() if t.model]

    @property
    def max_pods(self) -> int:
        return sum(t.max_replicas for t in self.tracks())

    @model_validator(mode="after")
    def _serving(self) -> "ServingWorkload":
        if self.port == self.metrics_port:
            raise ValueError(f"metricsPort must differ from port {self.port}")
        if (self.accelerator == "neuron") != (self.neuron_target is not None):
            raise ValueError("neuronTarget (inf1, inf2, trn1 or trn2) is required for accelerator neuron, and only for it")
        metric = self.autoscaling.custom_metric
        if metric and self.accelerator not in custom_metrics()[metric].accelerators:
            raise ValueError(
                f"autoscaling.customMetric {metric!r} is not measured on {self.accelerator} pods (only on "
                f"{', '.join(custom_metrics()[metric].accelerators)}): the autoscaler would never scale; pick another metric"
            )
        if self.canary and self.canary.stable.model and not self.model:
            raise ValueError("canary.stable.model is set but the workload serves no model")
        if self.canary and not self.canary.promoted:
            stable = self.tracks()[0]
            if (stable.image, stable.model) == (self.image, self.model):
                raise ValueError("canary runs the same image and model as the stable version; set model or image to the new one, and canary.stable to what it replaces")
        return self


class TrainingWorkload(WorkloadBase):
    kind: Literal["training"]
    command: Annotated[list[str], Field(min_length=1)]
    # A new runId starts a new Job; Jobs are immutable once created.
    run_id: DnsLabel = "1"
    schedule: Optional[Annotated[str, Field(pattern=r"^(@(hourly|daily|weekly|monthly))|(\S+ \S+ \S+ \S+ \S+)$")]] = None
    backoff_limit: Annotated[int, Field(ge=0, le=20)] = 2
    active_deadline_hours: Annotated[int, Field(ge=1, le=720)] = 24
    ttl_after_finished_hours: Annotated[int, Field(ge=1, le=720)] = 24
    data: VolumeConfig
    checkpoints: VolumeConfig
    # The model version the run publishes to its team's store (immutable: a new run needs a new version).
    output: Optional[ModelOutput] = None
    # More than one: a distributed run (torchrun, one process group per pod), admitted and started all together.
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    # How often a distributed run restarts all its workers (from the last checkpoint) after one fails or is preempted.
    max_restarts: Annotated[int, Field(ge=0, le=20)] = 3

    @property
    def max_pods(self) -> int:
        return self.workers

    @model_validator(mode="after")
    def _distributed(self) -> "TrainingWorkload":
        if self.workers > 1 and self.schedule:
            raise ValueError("workers > 1 with a schedule: distributed runs are one-off (runId), a schedule runs single-worker jobs")
        return self

    @model_validator(mode="after")
    def _output_once(self) -> "TrainingWorkload":
        if self.output and self.schedule:
            raise ValueError("output is set on a scheduled training: every run would publish the same immutable version; publish from one-off runs (runId) instead")
        return self


Workload = Annotated[ServingWorkload | TrainingWorkload, Field(discriminator="kind")]


class PlatformConfig(Model):
    environment: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,15}$")]
    region: str
    tags: Tags
    network: NetworkConfig = NetworkConfig()
    cluster: ClusterConfig
    karpenter: KarpenterConfig = KarpenterConfig()
    node_pools: NodePools
    accelerators: AcceleratorsConfig = AcceleratorsConfig()
    storage: StorageConfig = StorageConfig()
    mesh: MeshConfig = MeshConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    alerting: AlertingConfig = AlertingConfig()
    logging: LoggingConfig = LoggingConfig()
    scheduling: SchedulingConfig = SchedulingConfig()
    budget: BudgetConfig
    # Secret: `pulumi config set --secret --path 'ml-platform:alertingSecrets.<receiver>' <routing key or URL>`.
    alerting_secrets: dict[str, SecretStr] = {}
    teams: list[TeamConfig] = []
    workloads: list[Workload] = []

    @model_validator(mode="after")
    def _dra_fits(self) -> "PlatformConfig":
        if not self.accelerators.gpu_operator.dra.enabled:
            return self
        if tuple(int(p) for p in self.cluster.kubernetes_version.split(".")) < (1, 34):
            raise ValueError(f"accelerators.gpuOperator.dra needs Kubernetes 1.34 or newer (resource.k8s.io/v1); cluster.kubernetesVersion is {self.cluster.kubernetes_version}")
        for i, w in enumerate(self.workloads):
            # Karpenter 1.14 sizes nodes without DRA claims: a claim for several GPUs could land on a one-GPU node.
            if w.accelerator == "nvidia" and w.accelerator_count > 1:
                raise ValueError(f"workloads[{i}].acceleratorCount {w.accelerator_count} with DRA: claim one GPU per pod (Karpenter does not size nodes for DRA claims yet)")
        return self

    @model_validator(mode="after")
    def _search_domain_fits_the_network(self) -> "PlatformConfig":
        search = self.logging.open_search
        if not search.enabled:
            return self
        zones = len(self.network.availability_zones) if self.network.availability_zones else self.network.az_count
        if search.zone_count > zones:
            raise ValueError(f"logging.openSearch.zoneCount {search.zone_count} exceeds the stack's {zones} availability zones")
        if self.environment == "prod" and search.zone_count == 1:
            raise ValueError("logging.openSearch.zoneCount 1 in prod: a zone outage would take the log search with it; use 2 or 3")
        if len(self.search_domain_name) > 28:
            raise ValueError(f"logging.openSearch: the domain name {self.search_domain_name!r} is over OpenSearch's 28 characters; shorten the cluster name")
        return self

    @property
    def search_domain_name(self) -> str:
        return f"{self.cluster_name}-logs"

    @model_validator(mode="after")
    def _cidrs_disjoint(self) -> "PlatformConfig":
        vpc = ipaddress.IPv4Network(self.network.cidr)
        svc = ipaddress.IPv4Network(self.cluster.service_ipv4_cidr)
        if vpc.overlaps(svc):
            raise ValueError(
                f"cluster.serviceIpv4Cidr {svc} overlaps network.cidr {vpc}; pick a service range outside the VPC"
            )
        return self

    @model_validator(mode="after")
    def _workloads_fit_the_platform(self) -> "PlatformConfig":
        teams = {t.name: t for t in self.teams}
        if len(teams) != len(self.teams):
            raise ValueError("teams has duplicate names")
        names, paths = set(), set()
        for i, w in enumerate(self.workloads):
            where = f"workloads[{i}]"
            if w.team not in teams:
                raise ValueError(f"{where}.team {w.team!r} is not one of the teams: {sorted(teams)}")
            if (w.team, w.name) in names:
                raise ValueError(f"{where}.name {w.name!r} is used twice in team {w.team!r}")
            names.add((w.team, w.name))
            if w.accelerator not in self.node_pools.enabled():
                raise ValueError(f"{where}.accelerator {w.accelerator!r} has no enabled node pool")
            volumes = [v for v in (getattr(w, "data", None), getattr(w, "checkpoints", None)) if v]
            for v in volumes:
                if v.storage_class not in self.storage.classes:
                    raise ValueError(f"{where} volume storageClass {v.storage_class!r} is not one of {sorted(self.storage.classes)}")
            if isinstance(w, ServingWorkload):
                if w.path in paths:
                    raise ValueError(f"{where}.path {w.path!r} is already routed to another workload")
                paths.add(w.path)
            self._fits_quota(where, w, teams[w.team])
        return self

    @model_validator(mode="after")
    def _models(self) -> "PlatformConfig":
        """Every served model has a producer in its team (a training run or a pinned public model), each version
        names one content only, and Neuron targets have a compiler path."""
        teams = {t.name for t in self.teams}
        for team in self.storage.model_stores:
            if team not in teams:
                raise ValueError(f"storage.modelStores.{team}: {team!r} is not one of the teams: {sorted(teams)}")
        produced: dict[tuple[str, str], str] = {}  # (team, model@version) -> what produces it
        for i, w in enumerate(self.workloads):
            outputs = [w.output] if isinstance(w, TrainingWorkload) and w.output else []
            externals = [m for m in (w.models() if isinstance(w, ServingWorkload) else []) if m.external]
            for ref, source in [(o, f"workloads[{i}] ({w.name})") for o in outputs] + [(m, f"{m.external.hub_id}@{m.external.revision}") for m in externals]:
                if w.team not in self.storage.model_stores:
                    raise ValueError(f"workloads[{i}] uses model {ref.key} but team {w.team!r} has no model store; add storage.modelStores.{w.team}")
                previous = produced.setdefault((w.team, ref.key), source)
                if previous != source:
                    raise ValueError(
                        f"workloads[{i}] model {ref.key} of team {w.team!r} already comes from {previous}, not {source}: "
                        "a version names one content forever, publish under a new version"
                    )
        for i, w in enumerate(self.workloads):
            if not isinstance(w, ServingWorkload):
                continue
            for ref in w.models():
                if w.team not in self.storage.model_stores:
                    raise ValueError(f"workloads[{i}].model {ref.key}: team {w.team!r} has no model store; add storage.modelStores.{w.team}")
                if (w.team, ref.key) not in produced:
                    known = sorted(k for t, k in produced if t == w.team)
                    raise ValueError(
                        f"workloads[{i}].model {ref.key} is produced by no training workload of team {w.team!r} and is not "
                        f"external (hubId and revision); models of the team: {known}"
                    )
                if not ref.external and w.await_rollout:
                    raise ValueError(
                        f"workloads[{i}].model {ref.key} comes from {produced[(w.team, ref.key)]}, a training run that takes hours: "
                        "no await covers it; set awaitRollout: false (the pods wait for the model, the alerts watch the rollout)"
                    )
            if w.neuron_target:
                pool = self.node_pools.neuron
                offered = sorted({family_of(t) for t in pool.instance_types}) if pool else []
                if w.neuron_target not in offered:
                    raise ValueError(
                        f"workloads[{i}].neuronTarget {w.neuron_target!r} has no compile path (nor nodes to run on): the neuron pool offers {offered}; "
                        f"add {w.neuron_target} instance types to nodePools.neuron.instanceTypes"
                    )
        return self

    @model_validator(mode="after")
    def _vertical_autoscaling(self) -> "PlatformConfig":
        """A VPA that changes requests needs the components that do it, and never shares CPU with an HPA."""
        vpa = self.autoscaling.vertical_pod_autoscaler
        for i, w in enumerate(self.workloads):
            mode = w.autoscaling.vpa_update_mode if isinstance(w, ServingWorkload) else "Off"
            if mode == "Off":
                continue
            key = f"workloads[{i}].autoscaling.vpaUpdateMode {mode!r}"
            if not w.autoscaling.custom_metric:
                raise ValueError(
                    f"{key} with the workload's CPU-based autoscaler: CPU utilisation is relative to requests, so the VPA "
                    "changing them moves the HPA, whose new replicas move the VPA; scale on customMetric, or keep vpaUpdateMode Off"
                )
            needs = {
                "enabled": (vpa.enabled, "the recommender computes what to apply"),
                "admissionController": (vpa.admission_controller, "it sets the recommended requests on new pods"),
                "updater": (vpa.updater or mode == "Initial", f"it applies recommendations to running pods in {mode} mode"),
            }
            for name, (on, why) in needs.items():
                if not on:
                    raise ValueError(f"{key} needs autoscaling.verticalPodAutoscaler.{name}: true ({why})")
            version = tuple(int(p) for p in self.cluster.kubernetes_version.split("."))
            if mode == "InPlaceOrRecreate" and version < (1, 33):
                raise ValueError(f"{key} needs in-place pod resize, on by default from Kubernetes 1.33; the cluster runs {self.cluster.kubernetes_version}")
        return self

    @staticmethod
    def _fits_quota(where: str, w: "ServingWorkload | TrainingWorkload", team: TeamConfig) -> None:
        replicas = w.max_pods
        quota = {"nvidia": team.quota.nvidia_gpus, "neuron": team.quota.neuron_cores}.get(w.accelerator)
        if quota is not None and replicas * w.accelerator_count > quota:
            raise ValueError(
                f"{where} needs up to {replicas * w.accelerator_count} {w.accelerator} accelerators "
                f"({replicas} pods x {w.accelerator_count}) but team {team.name!r} has a quota of {quota}"
            )

    @model_validator(mode="after")
    def _alerting(self, info: ValidationInfo) -> "PlatformConfig":
        receivers = {r.name: r for r in self.alerting.receivers}
        if len(receivers) != len(self.alerting.receivers):
            raise ValueError("alerting.receivers has duplicate names")
        for key, name in self.alerting.receiver_references(self.teams).items():
            if name not in receivers:
                raise ValueError(f"{key} {name!r} is not one of the receivers: {sorted(receivers)}")
        if self.alerting_secrets and f"{PROJECT}:alertingSecrets" not in (info.context or {}).get("secret_keys", ()):
            raise ValueError(
                "alertingSecrets holds routing keys and webhook URLs but is not a secret in the stack file; "
                "set each with pulumi config set --secret --path 'ml-platform:alertingSecrets.<receiver>' <value>"
            )
        unknown = sorted(set(self.alerting_secrets) - set(receivers))
        if unknown:
            raise ValueError(f"alertingSecrets has entries for unknown receivers {unknown}; receivers: {sorted(receivers)}")
        missing = sorted(set(receivers) - set(self.alerting_secrets))
        if missing:
            raise ValueError(
                f"alertingSecrets has no credential for receivers {missing}; set each with "
                "pulumi config set --secret --path 'ml-platform:alertingSecrets.<receiver>' <routing key or https URL>"
            )
        for name, receiver in receivers.items():
            if receiver.kind != "pagerduty" and not self.alerting_secrets[name].get_secret_value().startswith("https://"):
                raise ValueError(f"alertingSecrets.{name} must be an https:// URL for a {receiver.kind} receiver (value not shown)")
        return self

    @property
    def cluster_name(self) -> str:
        return self.cluster.name or f"{PROJECT}-{self.environment}"

    def tags_for(self, name: str) -> dict[str, str]:
        """The tags every taggable AWS resource carries."""
        return {
            "Name": name,
            "environment": self.environment,
            "project": PROJECT,
            "owner": self.tags.owner,
            "cost-center": self.tags.cost_center,
            "managed-by": "pulumi",
            **self.tags.extra,
        }


WORKLOAD_KINDS = ("serving", "training")
# Why a required key has no default, said where it is missing (key path pattern -> hint).
MISSING_HINTS = {
    r"nodePools\.\w+\.limits": "; set cpu, memoryGib (and accelerators for GPU and Neuron pools): the most Karpenter may buy for the pool",
    r"nodePools(\.cpu)?": "; declare nodePools.cpu with its limits: the gateway and monitoring run on the cpu pool",
}


def _format_error(err: dict[str, Any]) -> str:
    # Tagged unions put the tag in the location (workloads.0.serving.image); the key path has none.
    loc = [str(p) for i, p in enumerate(err["loc"]) if not (p in WORKLOAD_KINDS and i and isinstance(err["loc"][i - 1], int))]
    # Model-level validators report at the model; the path then names the section.
    path = f"{PROJECT}:" + ".".join(loc[:1]) + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        # The value is not shown: a mistyped key may hold a secret.
        return f"{path}: unknown key; check the spelling against the configuration reference"
    if err["type"] == "missing":
        hint = next((h for pattern, h in MISSING_HINTS.items() if re.fullmatch(pattern, ".".join(loc))), "")
        return f"{path}: required key is missing{hint}"
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        tag = json.dumps(err.get("ctx", {}).get("tag"))
        return f"{path}.kind: {tag} is not allowed: expected one of {', '.join(WORKLOAD_KINDS)}"
    shown = err.get("input")
    if loc and loc[0] in SECRET_KEYS:
        return f"{path}: {msg} (value not shown: it is a secret)"
    if isinstance(shown, dict):
        # A model-level check: its message starts with the key it is about.
        return f"{path}{'.' if loc else ''}{msg}"
    return f"{path}: {json.dumps(shown, default=str)} is not allowed: {msg}"


def parse(raw: dict[str, Any], secret_keys: Iterable[str] = ()) -> PlatformConfig:
    """Validates a dict of `<section>: value` (already JSON-decoded); `secret_keys` are the config keys the
    stack holds encrypted (`ml-platform:alertingSecrets`, ...). Raises ConfigError."""
    try:
        return PlatformConfig.model_validate(raw, context={"secret_keys": set(secret_keys)})
    except ValidationError as exc:
        lines = [_format_error(e) for e in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def from_bag(bag: dict[str, Any], secret_keys: Iterable[str] = ()) -> PlatformConfig:
    """Validates a config bag as the engine hands it over (`<namespace>:<key>` -> string or JSON string)."""
    raw = {k.split(":", 1)[1]: _decode(v) for k, v in sorted(bag.items()) if k.startswith(f"{PROJECT}:")}
    region = _decode(bag["aws:region"]) if bag.get("aws:region") else None
    if not region:
        raise ConfigError("invalid configuration:\n  aws:region: required key is missing; set the AWS region of the stack")
    raw["region"] = region
    return parse(raw, secret_keys)


def load() -> PlatformConfig:
    """Reads the whole `ml-platform:` namespace the engine handed the program, plus `aws:region`."""
    from pulumi.runtime.config import CONFIG, get_config_env, get_config_secret_keys_env, is_config_secret

    bag = {**get_config_env(), **CONFIG.get()}
    return from_bag(bag, {k for k in bag if is_config_secret(k)} | set(get_config_secret_keys_env()))
