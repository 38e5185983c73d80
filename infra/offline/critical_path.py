"""How long `pulumi up` from an empty account and `pulumi destroy` take: the longest chain of the graph.

Pulumi creates a resource once everything it depends on exists (a dependency on a component waits for all
of the component's children), and runs everything else in parallel; a destroy runs the same graph backwards.
So the deploy takes as long as its longest chain of typical create durations. The figures are typical
durations on a real account, each with its source or reasoning; a type missing here counts DEFAULT seconds
and is named in the report.

What pulumi-kubernetes waits for on create (provider/pkg/await/ at commit 94977969, July 2026, the newest in the
mirror read, after tag v4.32.0; the pin is 4.34.2): awaiters.go - a PersistentVolume until Available or Bound and a
PersistentVolumeClaim until Bound (Pending is enough when its class binds WaitForFirstConsumer), each with a hard
5-minute limit, a ResourceQuota until its status echoes its hard limits (hard 1 minute), RBAC, ConfigMaps,
StorageClasses not at all; service.go - a Service until its Endpoints target pods and settle for 10 s (headless and
ExternalName: not), a LoadBalancer one also until it has an address, 10 minutes by default; deployment.go,
statefulset.go, daemonset.go (kstatus: a DaemonSet with no desired pods is current at once), job.go - their pods,
10 minutes by default; provider/pkg/provider/helm_release.go - a release waits for its resources and hooks with a
300 s default timeout, and an atomic one is uninstalled when that expires. `pulumi.com/skipAwait` skips all of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from infra.lib import timing
from policies.rules.base import HELM_RELEASE

DEFAULT = 10

# Typical create durations in seconds.
CREATE: dict[str, int] = {
    # EKS: the control plane takes about ten minutes to become ACTIVE (EKS user guide, "Create a cluster");
    # a managed node group about four (instances launch and join); add-ons a minute once they can schedule.
    "aws:eks/cluster:Cluster": 600,
    "aws:eks/nodeGroup:NodeGroup": 240,
    "aws:eks/addon:Addon": 60,
    "aws:eks/accessEntry:AccessEntry": 5,
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": 5,
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": 5,
    # A NAT gateway is pending for one to two minutes before it is available (the provider waits for it).
    "aws:ec2/natGateway:NatGateway": 120,
    "aws:ec2/vpc:Vpc": 5,
    "aws:ec2/subnet:Subnet": 5,
    "aws:ec2/internetGateway:InternetGateway": 5,
    "aws:ec2/eip:Eip": 3,
    "aws:ec2/routeTable:RouteTable": 5,
    "aws:ec2/routeTableAssociation:RouteTableAssociation": 2,
    "aws:ec2/securityGroup:SecurityGroup": 5,
    # One AuthorizeSecurityGroupIngress/Egress call each.
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": 2,
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": 2,
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": 3,
    "aws:ec2/vpcEndpoint:VpcEndpoint": 10,
    "aws:ec2/flowLog:FlowLog": 5,
    "aws:ec2/launchTemplate:LaunchTemplate": 3,
    # EFS mount targets take about a minute and a half to become available, one per AZ in parallel.
    "aws:efs/fileSystem:FileSystem": 10,
    "aws:efs/mountTarget:MountTarget": 90,
    "aws:efs/backupPolicy:BackupPolicy": 3,
    "aws:efs/fileSystemPolicy:FileSystemPolicy": 3,
    "aws:efs/accessPoint:AccessPoint": 3,
    # OpenSearch Service: a VPC domain with dedicated managers is typically ready in 15 to 20 minutes; its
    # access policy applies in about a minute.
    "aws:opensearch/domain:Domain": 1080,
    "aws:opensearch/domainPolicy:DomainPolicy": 60,
    # MSK: a provisioned cluster takes 10 to 30 minutes by region (Snowflake's MSK quickstart, see
    # Snowflake-Labs/sfquickstarts#662; reports of close to 60 in hashicorp/terraform-provider-aws#17726): the
    # upper end. Serverless has no published figure and no brokers to launch: it counts the "up to 15 minutes"
    # the Akka MSK guide gives a typical cluster (akka/akka-guide#445) until a deploy measures it. Topics are
    # one MSK API call each.
    "aws:msk/cluster:Cluster": 1800,
    "aws:msk/serverlessCluster:ServerlessCluster": 900,
    "aws:msk/topic:Topic": 10,
    # The EKS Argo CD capability: AWS publishes no creation time; counted like a managed add-on at five minutes
    # (it provisions Argo CD in an AWS account and installs its CRDs) until a deploy measures it.
    "aws:eks/capability:Capability": 300,
    # Aurora: AWS publishes no creation time. The cluster (storage volume, endpoints) counts three minutes and each
    # Serverless v2 instance twelve, the upper end of the 5-15 minutes commonly seen, until a deploy measures them.
    "aws:rds/cluster:Cluster": 180,
    "aws:rds/clusterInstance:ClusterInstance": 720,
    "aws:rds/subnetGroup:SubnetGroup": 3,
    "aws:appautoscaling/target:Target": 3,
    "aws:appautoscaling/policy:Policy": 3,
    # IAM is eventually consistent; the provider waits a few seconds for a new role to propagate.
    "aws:iam/role:Role": 5,
    "aws:iam/policy:Policy": 3,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 3,
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": 3,
    "aws:iam/serviceLinkedRole:ServiceLinkedRole": 5,
    "aws:kms/key:Key": 5,
    "aws:kms/alias:Alias": 2,
    "aws:cloudwatch/logGroup:LogGroup": 2,
    "aws:cloudwatch/logResourcePolicy:LogResourcePolicy": 2,
    "aws:cloudwatch/eventRule:EventRule": 2,
    "aws:cloudwatch/eventTarget:EventTarget": 2,
    "aws:sqs/queue:Queue": 2,
    "aws:sqs/queuePolicy:QueuePolicy": 2,
    "aws:budgets/budget:Budget": 3,
    # One CreatePullThroughCacheRule call; ECR stores the rule and returns.
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule": 2,
    # S3: CreateBucket returns once the bucket exists; the provider then polls until reads of it succeed (its
    # bucket create waiter, seconds). Each bucket sub-resource is one API call plus the same read-back.
    "aws:s3/bucket:Bucket": 10,
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": 3,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 3,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": 3,
    "aws:s3/bucketVersioning:BucketVersioning": 3,
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": 3,
    "aws:s3/bucketPolicy:BucketPolicy": 3,
    "random:index/randomPassword:RandomPassword": 1,
    "random:index/randomId:RandomId": 1,
    "pulumi:providers:kubernetes": 1,
}
SERVICE = "kubernetes:core/v1:Service"
PVC, PV = "kubernetes:core/v1:PersistentVolumeClaim", "kubernetes:core/v1:PersistentVolume"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
# A Service of type LoadBalancer waits for its address: the Load Balancer Controller provisions the NLB, about
# three minutes. Any other Service: its endpoints settle 10 s after they target pods (service.go).
SERVICE_LOAD_BALANCER, SERVICE_SETTLE = 180, 10
# A claim bound to a static volume, or provisioned at once (an EFS access point), binds in seconds.
PVC_BIND = 10
# The engine's hard limits that no annotation changes (awaiters.go).
HARD_LIMITS = {PVC: 300, PV: 300, "kubernetes:core/v1:ResourceQuota": 60}
# Durations that vary widely on a real account: (low, high) minutes; the report names the ones on the up chain.
RANGES = {
    # OpenSearch Service: reported creation times of a VPC domain with dedicated managers and fine-grained access
    # control are 15 to 25 minutes, often longer; the table counts 18.
    "aws:opensearch/domain:Domain": (15, 25),
}
# Helm releases by chart: what their pods wait for. Charts not listed install on running nodes in a minute.
CHART_CREATE = {
    # Prometheus, Alertmanager and Grafana wait for a Karpenter node and their EBS volumes.
    "kube-prometheus-stack": timing.NODE_LAUNCH["cpu"] + timing.IMAGE_PULL["cpu"],
    # Argo CD's pods wait for a Karpenter cpu node and their images.
    "argo-cd": timing.NODE_LAUNCH["cpu"] + timing.IMAGE_PULL["cpu"],
    # The gateway runs on the cpu pool: a node launch and a pull (istiod runs on the system nodes).
    "gateway": timing.NODE_LAUNCH["cpu"] + 60,
    # A DaemonSet on the nodes that exist; it follows new nodes without holding the release.
    "fluent-bit": 60,
    # Its controllers are the first pods that may need a cpu node; then its post-install API check.
    "cert-manager": timing.NODE_LAUNCH["cpu"] + 60,
    # After cert-manager (same pool): the controller's readiness probe starts 30 s after the container.
    "kserve-resources": 90,
}
CHART_DEFAULT = 60
WORKLOAD_KINDS = {f"kubernetes:{k}" for k in ("apps/v1:Deployment", "apps/v1:DaemonSet", "apps/v1:StatefulSet", "batch/v1:Job")}
# Typical destroy durations where they differ from a few seconds (everything else: DEFAULT_DELETE).
DELETE: dict[str, int] = {
    "aws:eks/cluster:Cluster": 300,
    "aws:eks/nodeGroup:NodeGroup": 300,
    "aws:ec2/natGateway:NatGateway": 60,
    "aws:efs/mountTarget:MountTarget": 60,
    "aws:opensearch/domain:Domain": 600,
    # Deleting an instance, then the cluster (with its final snapshot where kept), takes minutes each.
    "aws:rds/clusterInstance:ClusterInstance": 420,
    "aws:rds/cluster:Cluster": 300,
    "kubernetes:core/v1:Service": 120,  # the controller deletes the NLB before the finalizer lets go
    HELM_RELEASE: 60,
}
DEFAULT_DELETE = 5


POOL_LABELS = ("ml-platform.io/accelerator", "karpenter.sh/nodepool")


def _only_on_pool_nodes(record: dict[str, Any]) -> bool:
    selector = (((record["inputs"].get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return any(k in selector for k in POOL_LABELS)


def create_seconds(record: dict[str, Any], binding: Optional[dict[str, str]] = None) -> Optional[int]:
    """Typical create time, or None when the type is not in the table. `binding`: storage class -> volumeBindingMode."""
    kind = record["type"]
    if kind == HELM_RELEASE:
        return CHART_CREATE.get(str(record["inputs"].get("chart", "")).rsplit("/", 1)[-1], CHART_DEFAULT)
    annotations = ((record["inputs"].get("metadata") or {}).get("annotations")) or {}
    if annotations.get("pulumi.com/skipAwait") == "true":
        return 2
    if "pulumi.com/timeoutSeconds" in annotations:
        # Sized with a margin for the worst case; typically it takes the await without the margin.
        return max(2, int(annotations["pulumi.com/timeoutSeconds"]) - timing.MARGIN)
    if kind == SERVICE:
        spec = record["inputs"].get("spec") or {}
        if spec.get("type") == "LoadBalancer":
            return SERVICE_LOAD_BALANCER
        return 2 if spec.get("clusterIP") == "None" or spec.get("type") == "ExternalName" else SERVICE_SETTLE
    if kind == PVC:
        cls = (record["inputs"].get("spec") or {}).get("storageClassName")
        return 2 if (binding or {}).get(cls) == "WaitForFirstConsumer" else PVC_BIND
    if kind == "kubernetes:apps/v1:DaemonSet" and _only_on_pool_nodes(record):
        # Its nodes come from Karpenter later: no desired pods on a first up, so it is current at once (kstatus).
        return 2
    if kind.startswith("kubernetes:") and kind not in CREATE:
        # Pods on nodes that run already become ready in about a minute; other objects are stored at once.
        return 60 if kind in WORKLOAD_KINDS else 2
    return CREATE.get(kind)


@dataclass
class Chain:
    seconds: int
    chain: list[tuple[str, str, int]]  # (type, name, seconds) from the first resource to the last


def _descendants(records: list[dict]) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    for r in records:
        if r.get("parent"):
            children.setdefault(r["parent"], []).append(r["urn"])
    out: dict[str, list[str]] = {}

    def walk(urn: str) -> list[str]:
        if urn not in out:
            out[urn] = [d for c in children.get(urn, []) for d in (c, *walk(c))]
        return out[urn]

    for urn in list(children):
        walk(urn)
    return out


def _waits_for(records: list[dict]) -> dict[str, set[str]]:
    """URN -> the custom resources it waits for: its dependencies, a component standing for all its descendants."""
    by_urn = {r["urn"]: r for r in records}
    descendants = _descendants(records)
    waits: dict[str, set[str]] = {}
    for r in records:
        if not r["custom"]:
            continue
        found: set[str] = set()
        for dep in r["dependencies"] + ([r["provider"]] if r.get("provider") in by_urn else []):
            if dep not in by_urn:
                continue
            if by_urn[dep]["custom"]:
                found.add(dep)
            else:
                found.update(d for d in descendants.get(dep, []) if by_urn[d]["custom"])
        found.discard(r["urn"])
        waits[r["urn"]] = found
    return waits


def _longest(records: list[dict], waits: dict[str, set[str]], seconds: dict[str, int]) -> Chain:
    by_urn = {r["urn"]: r for r in records}
    finish: dict[str, int] = {}
    via: dict[str, Optional[str]] = {}

    def done(urn: str) -> int:
        if urn not in finish:
            # Sorted: of equally long chains, the same one every run.
            before = max(sorted(waits[urn]), key=done, default=None)
            via[urn] = before
            finish[urn] = (done(before) if before else 0) + seconds[urn]
        return finish[urn]

    end = max(sorted(waits), key=done, default=None)
    chain, urn = [], end
    while urn:
        chain.append((by_urn[urn]["type"], by_urn[urn]["name"], seconds[urn]))
        urn = via[urn]
    return Chain(finish[end] if end else 0, list(reversed(chain)))


HELM_TIMEOUT = 300  # helm_release.go: defaultTimeoutSeconds, per wait and per hook
KUBERNETES_TIMEOUT = 600  # deployment.go, statefulset.go, daemonset.go, job.go, service.go: 10 minutes


def limit_seconds(record: dict[str, Any]) -> Optional[int]:
    """How long the engine waits for the resource before it fails the update; None when it does not wait."""
    kind, inputs = record["type"], record["inputs"]
    if kind == HELM_RELEASE:
        return int(inputs.get("timeout") or HELM_TIMEOUT)
    if not kind.startswith("kubernetes:"):
        return None
    annotations = ((inputs.get("metadata") or {}).get("annotations")) or {}
    if annotations.get("pulumi.com/skipAwait") == "true":
        return None
    if kind in HARD_LIMITS:
        return HARD_LIMITS[kind]
    if kind in WORKLOAD_KINDS or kind == SERVICE:
        return int(annotations.get("pulumi.com/timeoutSeconds", KUBERNETES_TIMEOUT))
    return None


def report(records: list[dict]) -> dict[str, Any]:
    waits = _waits_for(records)
    custom = [r for r in records if r["custom"]]
    binding = {
        str((r["inputs"].get("metadata") or {}).get("name")): str(r["inputs"].get("volumeBindingMode") or "Immediate")
        for r in records if r["type"] == STORAGE_CLASS
    }
    unknown = sorted({r["type"] for r in custom if create_seconds(r, binding) is None})
    create = {r["urn"]: create_seconds(r, binding) or DEFAULT for r in custom}
    up = _longest(records, waits, create)
    # Destroy: a resource goes once everything that waited for it is gone.
    reverse: dict[str, set[str]] = {r["urn"]: set() for r in custom}
    for urn, deps in waits.items():
        for d in deps:
            reverse[d].add(urn)
    down = _longest(records, reverse, {r["urn"]: DELETE.get(r["type"], DEFAULT_DELETE) for r in custom})

    def as_json(path: Chain) -> dict[str, Any]:
        return {"seconds": path.seconds, "minutes": round(path.seconds / 60, 1), "chain": [{"type": t, "name": n, "seconds": s} for t, n, s in path.chain]}

    by_urn = {r["urn"]: r for r in custom}
    over = [
        {"urn": urn, "type": by_urn[urn]["type"], "name": by_urn[urn]["name"], "seconds": seconds, "limitSeconds": limit}
        for urn, seconds in sorted(create.items())
        if (limit := limit_seconds(by_urn[urn])) is not None and seconds > limit
    ]
    on_chain = sorted({t for t, _, _ in up.chain if t in RANGES})
    ranges = [{"type": t, "typicalMinutes": round(CREATE[t] / 60, 1), "rangeMinutes": list(RANGES[t]), "note": "often longer"} for t in on_chain]
    longest = up.seconds + sum(RANGES[t][1] * 60 - CREATE[t] for t in on_chain)
    return {
        "up": {**as_json(up), "likelyUpToMinutes": round(longest / 60, 1)},
        "ranges": ranges,
        # Awaits whose typical duration exceeds the engine's limit: the update would fail.
        "overTimeout": over,
        "destroy": as_json(down),
        "unknownTypes": unknown,
        "defaultSeconds": DEFAULT,
        "note": "typical durations on a real account (infra/offline/critical_path.py names each source); unknown types count defaultSeconds",
    }
