"""Karpenter: controller IAM (Pod Identity), node role, interruption queue, charts, node classes and pools."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.config import GpuSharing, NodePoolBase, PlatformConfig
from infra.lib import helm
from infra.lib.accelerators import GPU_DEVICE_CLASS, KINDS, NVIDIA, AcceleratorKind, pool_labels
from infra.lib.iam import NODE_MANAGED_POLICIES, POD_IDENTITY_TRUST, pod_identity, policy_document, role_with_policies, service_trust_policy
from infra.lib.monitoring import ScrapeTarget
from policies.rules.cost import RESERVED_ANNOTATION, held, price_table
from policies.rules.efa import EFA_LABEL

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "karpenter"
CHART_REPOSITORY = "oci://public.ecr.aws/karpenter"
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
# Events Karpenter handles ahead of EC2 taking the instance away.
INTERRUPTION_EVENTS = {
    "scheduled-change": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "instance-state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
    "capacity-reservation-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"]},
}


def controller_policy(
    cluster_name: str, region: str, partition: str, account_id: str, node_role_arn: str, queue_arn: str, cluster_arn: str
) -> str:
    """The controller's permissions as Karpenter's reference policy for the pinned version grants them
    (schemas/iam, checked statement by statement): every write scoped to this cluster's tags."""
    ec2 = f"arn:{partition}:ec2:{region}"
    launched = [f"{ec2}:*:{r}/*" for r in ("fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request")]
    owned = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned"}
    requested = {f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}": "owned", "aws:RequestTag/eks:eks-cluster-name": cluster_name}
    profile = f"arn:{partition}:iam::{account_id}:instance-profile/*"
    return policy_document(
        [
            {
                "Sid": "AllowScopedEC2InstanceAccessActions",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
                "Resource": [
                    f"{ec2}::image/*", f"{ec2}::snapshot/*", f"{ec2}:*:security-group/*", f"{ec2}:*:subnet/*",
                    f"{ec2}:*:capacity-reservation/*", f"{ec2}:*:placement-group/*",
                ],
            },
            {
                "Sid": "AllowScopedEC2LaunchTemplateAccessActions",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
                "Resource": f"{ec2}:*:launch-template/*",
                "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}},
            },
            {
                "Sid": "AllowScopedEC2InstanceActionsWithTags",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
                "Resource": launched,
                "Condition": {"StringEquals": requested, "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}},
            },
            {
                "Sid": "AllowScopedResourceCreationTagging",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": launched,
                "Condition": {
                    "StringEquals": {**requested, "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]},
                    "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedResourceTagging",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": f"{ec2}:*:instance/*",
                "Condition": {
                    "StringEquals": owned,
                    "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                    "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster_name},
                    "ForAllValues:StringEquals": {"aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]},
                },
            },
            {
                "Sid": "AllowScopedDeletion",
                "Effect": "Allow",
                "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
                "Resource": [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"],
                "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}},
            },
            {
                "Sid": "AllowRegionalReadActions",
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeCapacityReservations",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstances",
                    "ec2:DescribeInstanceStatus",
                    "ec2:DescribeInstanceTypeOfferings",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplates",
                    "ec2:DescribePlacementGroups",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSpotPriceHistory",
                    "ec2:DescribeSubnets",
                ],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestedRegion": region}},
            },
            {
                "Sid": "AllowSSMReadActions",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": f"arn:{partition}:ssm:{region}::parameter/aws/service/*",
            },
            {"Sid": "AllowPricingReadActions", "Effect": "Allow", "Action": "pricing:GetProducts", "Resource": "*"},
            {
                "Sid": "AllowInterruptionQueueActions",
                "Effect": "Allow",
                "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
                "Resource": queue_arn,
            },
            {
                "Sid": "AllowPassingInstanceRole",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": node_role_arn,
                "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}},
            },
            {
                "Sid": "AllowScopedInstanceProfileCreationActions",
                "Effect": "Allow",
                "Action": "iam:CreateInstanceProfile",
                "Resource": profile,
                "Condition": {
                    "StringEquals": {**requested, "aws:RequestTag/topology.kubernetes.io/region": region},
                    "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"},
                },
            },
            {
                "Sid": "AllowScopedInstanceProfileTagActions",
                "Effect": "Allow",
                "Action": "iam:TagInstanceProfile",
                "Resource": profile,
                "Condition": {
                    "StringEquals": {**owned, "aws:ResourceTag/topology.kubernetes.io/region": region, **requested,
                                     "aws:RequestTag/topology.kubernetes.io/region": region},
                    "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                                   "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"},
                },
            },
            {
                "Sid": "AllowScopedInstanceProfileActions",
                "Effect": "Allow",
                "Action": ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile"],
                "Resource": profile,
                "Condition": {
                    "StringEquals": {**owned, "aws:ResourceTag/topology.kubernetes.io/region": region},
                    "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"},
                },
            },
            # ListInstanceProfiles takes no resource ARN: it only works on "*".
            {"Sid": "AllowUnscopedInstanceProfileListAction", "Effect": "Allow", "Action": "iam:ListInstanceProfiles", "Resource": "*"},
            {"Sid": "AllowInstanceProfileReadActions", "Effect": "Allow", "Action": "iam:GetInstanceProfile", "Resource": profile},
            {"Sid": "AllowAPIServerEndpointDiscovery", "Effect": "Allow", "Action": "eks:DescribeCluster", "Resource": cluster_arn},
            {
                "Sid": "AllowZonalShiftStatusReadOnly",
                "Effect": "Allow",
                "Action": "arc-zonal-shift:GetManagedResource",
                "Resource": "*",
                "Condition": {"StringEquals": {"arc-zonal-shift:ResourceIdentifier": cluster_arn}},
            },
        ]
    )


def node_labels(name: str, pool: NodePoolBase, kind: AcceleratorKind) -> dict[str, str]:
    """The labels of a pool's nodes; an EFA pool's also carry the label the EFA device plugin runs on."""
    return {**pool_labels(name, kind), **({EFA_LABEL: "true"} if getattr(pool, "efa", False) else {})}


def reserved_instances(pool: NodePoolBase) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in getattr(pool, "capacity_reservations", []):
        counts[r.instance_type] = counts.get(r.instance_type, 0) + r.instance_count
    return dict(sorted(counts.items()))


def node_pool_annotations(pool: NodePoolBase) -> dict[str, str]:
    counts = reserved_instances(pool)
    return {RESERVED_ANNOTATION: ",".join(f"{t}={n}" for t, n in counts.items())} if counts else {}


def mig_labels(kind: AcceleratorKind, sharing: GpuSharing) -> dict[str, str]:
    """With MIG, the label the GPU operator's MIG Manager reads on each nvidia node: the configuration to partition into."""
    return {MIG_CONFIG_LABEL: sharing.mig_config} if kind is NVIDIA and sharing.strategy == "mig" and sharing.mig_config else {}


def static_held(pool: NodePoolBase, region: str, stand_in: str | None) -> dict[str, float]:
    """What a pool's static nodes take from its limits (nothing without them)."""
    static = getattr(pool, "static", None)
    return held(static.instance_type, static.replicas, price_table(region, stand_in)) if static else {}


def node_pool_spec(name: str, pool: NodePoolBase, kind: AcceleratorKind, static: dict[str, float] | None = None) -> dict[str, Any]:
    """The pool's dynamic NodePool; `static` is what its static nodes hold (static_held), which its limits leave out."""
    requirements = [
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(pool.capacity_types)},
        {"key": "kubernetes.io/arch", "operator": "In", "values": list(pool.architectures)},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    if kind.resource:
        requirements.append({"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(pool.instance_types)})
    else:
        requirements += [
            {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": list(pool.instance_categories)},
            {"key": "karpenter.k8s.aws/instance-generation", "operator": "Gt", "values": [str(pool.min_generation - 1)]},
        ]
    static = static or {}
    limits = {"cpu": f"{pool.limits.cpu - static.get('cpu', 0):g}", "memory": f"{pool.limits.memory_gib - static.get('memory', 0):g}Gi"}
    if kind.resource:
        limits[kind.resource] = f"{pool.limits.accelerators - static.get(kind.resource, 0):g}"
    d = pool.disruption
    budgets = [b.model_dump(by_alias=True, exclude_none=True) for b in d.budgets]
    return {
        "weight": pool.weight,
        "template": {
            "metadata": {"labels": node_labels(name, pool, kind)},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": name},
                "requirements": requirements,
                "taints": [kind.taint] if kind.taint else [],
                "expireAfter": d.expire_after,
                "terminationGracePeriod": d.termination_grace_period,
            },
        },
        "disruption": {"consolidationPolicy": d.consolidation_policy, "consolidateAfter": d.consolidate_after, "budgets": budgets},
        "limits": limits,
    }


def static_node_pool_spec(name: str, pool: NodePoolBase, kind: AcceleratorKind) -> dict[str, Any]:
    """The pool's static NodePool: its node class, labels and taint, on-demand nodes of one type, `replicas` of them.
    The CRD allows no weight and no limits but `limits.nodes` beside `replicas`. The node limit leaves room for one node
    above the replicas, so a drift or expiry replacement (one at a time, the pool's budget) can launch before the node it
    replaces goes (EKS user guide, "Static Capacity Node Pools": limits.nodes above replicas for replacements)."""
    static = pool.static
    dynamic = node_pool_spec(name, pool, kind)
    template = dynamic["template"]
    requirements = [
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
        *[r for r in template["spec"]["requirements"] if r["key"] not in ("karpenter.sh/capacity-type", "node.kubernetes.io/instance-type")],
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [static.instance_type]},
    ]
    return {
        "replicas": static.replicas,
        "template": {**template, "spec": {**template["spec"], "requirements": requirements}},
        "disruption": {"consolidateAfter": "Never", "budgets": dynamic["disruption"]["budgets"]},
        "limits": {"nodes": str(static.replicas + 1)},
    }


# The nodeadm NodeConfig part Karpenter merges with its own on AL2023 (EC2NodeClass spec.userData, MIME multipart):
# FastImagePull turns on the SOCI snapshotter in parallel pull/unpack mode (awslabs/amazon-eks-ami,
# nodeadm/internal/containerd/config.go: only on nodes with at least 4 vCPUs and 7 GiB).
FAST_IMAGE_PULL_USER_DATA = """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="BOUNDARY"

--BOUNDARY
Content-Type: application/node.eks.aws

apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  featureGates:
    FastImagePull: true

--BOUNDARY--
"""


def node_class_spec(
    pool: NodePoolBase, cluster_name: str, node_role_name: str, security_group_id: str, tags: dict[str, str], efa_security_group_id: str | None = None
) -> dict[str, Any]:
    # Bottlerocket boots from its own OS volume; the configurable one is the data volume.
    device = "/dev/xvdb" if pool.ami_alias.startswith("bottlerocket@") else "/dev/xvda"
    reservations = getattr(pool, "capacity_reservations", [])
    spec: dict[str, Any] = {
        "role": node_role_name,
        "amiSelectorTerms": [{"alias": pool.ami_alias}],
        "subnetSelectorTerms": [{"tags": {"karpenter.sh/discovery": cluster_name}}],
        "securityGroupSelectorTerms": [{"id": security_group_id}, *([{"id": efa_security_group_id}] if efa_security_group_id else [])],
        "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled", "httpPutResponseHopLimit": 1, "httpTokens": "required"},
        "blockDeviceMappings": [
            {
                "deviceName": device,
                "rootVolume": True,
                "ebs": {"volumeSize": f"{pool.root_volume_gib}Gi", "volumeType": "gp3", "encrypted": True, "deleteOnTermination": True},
            }
        ],
        "tags": {k: v for k, v in tags.items() if k != "Name"},
    }
    if reservations:
        spec["capacityReservationSelectorTerms"] = [r.selector_term() for r in reservations]
    if getattr(pool, "fast_image_pull", False):
        spec["userData"] = FAST_IMAGE_PULL_USER_DATA
    return spec


@dataclass(frozen=True)
class KarpenterArgs:
    config: PlatformConfig
    cluster_name: pulumi.Output[str]
    cluster_security_group_id: pulumi.Output[str]
    vpc_id: pulumi.Output[str]
    provider: k8s.Provider
    system_node_selector: dict[str, str]
    system_toleration: dict[str, str]
    # Karpenter needs nodes for its controller and the cluster's add-ons before it can launch any.
    depends_on: list[pulumi.Resource]


@dataclass(frozen=True)
class NodePoolInfo:
    name: str
    labels: dict[str, str]
    taint: dict | None
    extended_resource: str | None
    device_class: str | None
    capacity_types: list[str]


class Karpenter(pulumi.ComponentResource):
    controller: k8s.helm.v3.Release
    node_pools: dict[str, NodePoolInfo]
    node_role_arn: pulumi.Output[str]
    node_role_name: pulumi.Output[str]
    scrape_targets: list[ScrapeTarget]
    node_pool_resources: dict[str, k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:karpenter:Karpenter", name, None, opts)
        cfg, kc = args.config, args.config.karpenter
        cluster_name = cfg.cluster_name
        child = pulumi.ResourceOptions(parent=self)
        k8s_child = pulumi.ResourceOptions(parent=self, provider=args.provider)

        node_role = role_with_policies(
            f"{name}-node",
            trust=service_trust_policy("ec2.amazonaws.com"),
            managed=NODE_MANAGED_POLICIES,
            tags=cfg.tags_for(f"{cluster_name}-karpenter-node"),
            parent=self,
        ).role
        node_access = aws.eks.AccessEntry(
            f"{name}-node",
            aws.eks.AccessEntryArgs(cluster_name=args.cluster_name, principal_arn=node_role.arn, type="EC2_LINUX", tags=cfg.tags_for(f"{cluster_name}-karpenter-node")),
            opts=child,
        )

        queue = aws.sqs.Queue(
            f"{name}-interruption",
            aws.sqs.QueueArgs(
                name=f"{cluster_name}-karpenter",
                message_retention_seconds=300,
                sqs_managed_sse_enabled=True,
                tags=cfg.tags_for(f"{cluster_name}-karpenter"),
            ),
            opts=child,
        )
        queue_policy = aws.sqs.QueuePolicy(
            f"{name}-interruption",
            aws.sqs.QueuePolicyArgs(
                queue_url=queue.url,
                policy=queue.arn.apply(
                    lambda arn: policy_document(
                        [
                            {
                                "Sid": "EventBridgeAndSqsDeliver",
                                "Effect": "Allow",
                                "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
                                "Action": "sqs:SendMessage",
                                "Resource": arn,
                            },
                            {
                                "Sid": "DenyHTTP",
                                "Effect": "Deny",
                                "Principal": "*",
                                "Action": "sqs:*",
                                "Resource": arn,
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            },
                        ]
                    )
                ),
            ),
            opts=child,
        )
        for event, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{event}",
                aws.cloudwatch.EventRuleArgs(
                    description=f"Karpenter interruption handling for {cluster_name}: {event}",
                    event_pattern=json.dumps(pattern, sort_keys=True),
                    tags=cfg.tags_for(f"{cluster_name}-karpenter-{event}"),
                ),
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-{event}",
                aws.cloudwatch.EventTargetArgs(rule=rule.name, arn=queue.arn, target_id="karpenter-interruption-queue"),
                opts=pulumi.ResourceOptions(parent=rule),
            )

        partition = aws.get_partition().partition
        account_id = aws.get_caller_identity().account_id
        cluster_arn = args.cluster_name.apply(lambda n: f"arn:{partition}:eks:{cfg.region}:{account_id}:cluster/{n}")
        controller = role_with_policies(
            f"{name}-controller",
            trust=POD_IDENTITY_TRUST,
            policy=pulumi.Output.all(node_role.arn, queue.arn, cluster_arn).apply(
                lambda v: controller_policy(cluster_name, cfg.region, partition, account_id, v[0], v[1], v[2])
            ),
            description=f"Karpenter controller of {cluster_name}",
            tags=cfg.tags_for(f"{cluster_name}-karpenter-controller"),
            parent=self,
        )
        identity = pod_identity(
            f"{name}-controller",
            cluster_name=args.cluster_name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            role=controller.role,
            tags=cfg.tags_for(f"{cluster_name}-karpenter-controller"),
            parent=self,
        )
        prerequisites: list[pulumi.Resource] = [node_access, queue_policy, *controller.attachments, identity, *args.depends_on]
        if kc.create_spot_service_linked_role:
            prerequisites.append(
                aws.iam.ServiceLinkedRole(f"{name}-spot", aws.iam.ServiceLinkedRoleArgs(aws_service_name="spot.amazonaws.com"), opts=child)
            )

        reserving = any(getattr(p, "capacity_reservations", []) for p in cfg.node_pools.enabled().values())
        static = any(getattr(p, "static", None) for p in cfg.node_pools.enabled().values())
        gates = {**({"reservedCapacity": True} if reserving else {}), **({"staticCapacity": True} if static else {})}
        crds = helm.release(
            f"{name}-crd",
            name="karpenter-crd",
            chart="karpenter-crd",
            repository=CHART_REPOSITORY,
            version=kc.version,
            namespace=NAMESPACE,
            # Definitions only: the API server takes them while the system nodes are still joining.
            opts=k8s_child,
        )
        self.controller = helm.release(
            name,
            name="karpenter",
            chart="karpenter",
            repository=CHART_REPOSITORY,
            version=kc.version,
            namespace=NAMESPACE,
            skip_crds=True,
            values={
                "settings": {
                    "clusterName": args.cluster_name,
                    "interruptionQueue": queue.name,
                    # reservedCapacity is beta and on by default at the pin: stated so a chart default that turns it off cannot
                    # strand the reservations. staticCapacity is alpha and off by default: without it `replicas` is ignored.
                    **({"featureGates": gates} if gates else {}),
                },
                "serviceAccount": {"name": SERVICE_ACCOUNT},
                "replicas": kc.replicas,
                "podDisruptionBudget": {"name": "karpenter", "maxUnavailable": 1},
                "nodeSelector": {"kubernetes.io/os": "linux", **args.system_node_selector},
                "tolerations": [args.system_toleration],
                "logLevel": kc.log_level,
                "controller": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}},
            },
            opts=pulumi.ResourceOptions.merge(k8s_child, pulumi.ResourceOptions(depends_on=[crds, *prerequisites])),
        )

        efa_group, efa_rules = (
            self._efa_security_group(name, cfg, args.vpc_id) if any(getattr(p, "efa", False) for p in cfg.node_pools.enabled().values()) else (None, [])
        )

        # Pools depend on the controller release: destroy deletes them (and their nodes) while it still runs.
        after_controller = pulumi.ResourceOptions.merge(k8s_child, pulumi.ResourceOptions(depends_on=[self.controller]))
        self.node_pools, self.node_pool_resources = {}, {}
        for pool_name, pool in cfg.node_pools.enabled().items():
            kind = KINDS[pool_name]
            dra_claimed = kind is NVIDIA and cfg.accelerators.gpu_operator.dra.enabled
            tags = cfg.tags_for(f"{cluster_name}-{pool_name}")
            node_class = k8s.apiextensions.CustomResource(
                f"{name}-{pool_name}-class",
                api_version="karpenter.k8s.aws/v1",
                kind="EC2NodeClass",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=pool_name, labels={"app.kubernetes.io/part-of": "ml-platform"}),
                spec=pulumi.Output.all(
                    node_role.name, args.cluster_security_group_id, efa_group.id if efa_group and getattr(pool, "efa", False) else None
                ).apply(lambda v, pool=pool, tags=tags: node_class_spec(pool, cluster_name, v[0], v[1], tags, v[2])),
                # An EFA pool's first node must find its group's rules in place.
                opts=pulumi.ResourceOptions.merge(after_controller, pulumi.ResourceOptions(depends_on=[self.controller, *efa_rules]))
                if getattr(pool, "efa", False) else after_controller,
            )
            spec = node_pool_spec(pool_name, pool, kind, static_held(pool, cfg.region, cfg.budget.price_table_region))
            static_spec = static_node_pool_spec(pool_name, pool, kind) if getattr(pool, "static", None) else None
            for s in filter(None, (spec, static_spec)):
                s["template"]["metadata"]["labels"].update(mig_labels(kind, cfg.accelerators.gpu_operator.sharing))
            node_pool = k8s.apiextensions.CustomResource(
                f"{name}-{pool_name}-pool",
                api_version="karpenter.sh/v1",
                kind="NodePool",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=pool_name, labels={"app.kubernetes.io/part-of": "ml-platform"}, annotations=node_pool_annotations(pool) or None
                ),
                spec=spec,
                opts=pulumi.ResourceOptions.merge(after_controller, pulumi.ResourceOptions(depends_on=[self.controller, node_class])),
            )
            if static_spec:
                # A NodePool of its own: the API server refuses to turn a NodePool between static and dynamic.
                k8s.apiextensions.CustomResource(
                    f"{name}-{pool_name}-static-pool",
                    api_version="karpenter.sh/v1",
                    kind="NodePool",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{pool_name}-static", labels={"app.kubernetes.io/part-of": "ml-platform"}),
                    spec=static_spec,
                    opts=pulumi.ResourceOptions.merge(after_controller, pulumi.ResourceOptions(depends_on=[self.controller, node_class])),
                )
            self.node_pool_resources[pool_name] = node_pool
            self.node_pools[pool_name] = NodePoolInfo(
                name=pool_name,
                labels=pool_labels(pool_name, kind),
                taint=kind.taint,
                # With DRA the device plugin is off: GPUs are claimed from the device class, not requested.
                extended_resource=None if dra_claimed else kind.resource,
                device_class=GPU_DEVICE_CLASS if dra_claimed else None,
                capacity_types=list(pool.capacity_types),
            )

        self.node_role_arn = node_role.arn
        self.node_role_name = node_role.name
        self.scrape_targets = [
            ScrapeTarget(
                "karpenter",
                "ServiceMonitor",
                NAMESPACE,
                {"matchLabels": {"app.kubernetes.io/name": "karpenter"}},
                {"port": "http-metrics", "interval": "30s"},
                self.controller,
            )
        ]
        self.register_outputs({"nodeRoleArn": self.node_role_arn, "nodePools": sorted(self.node_pools)})

    def _efa_security_group(self, name: str, cfg: PlatformConfig, vpc_id: pulumi.Output[str]) -> tuple[aws.ec2.SecurityGroup, list[pulumi.Resource]]:
        """EFA traffic (the SRD protocol, not IP) must be allowed to and from the group itself on every protocol; the
        EFA pools' nodes carry it beside the cluster security group. Created without rules, which the provider
        then keeps empty: only the self-referencing pair below."""
        cluster_name = cfg.cluster_name
        group = aws.ec2.SecurityGroup(
            f"{name}-efa",
            aws.ec2.SecurityGroupArgs(
                vpc_id=vpc_id,
                name=f"{cluster_name}-efa",
                description=f"EFA between the EFA node pools of {cluster_name}: all traffic to and from itself",
                tags=cfg.tags_for(f"{cluster_name}-efa"),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        rule_opts = pulumi.ResourceOptions(parent=group)
        ingress = aws.vpc.SecurityGroupIngressRule(
            f"{name}-efa-in",
            aws.vpc.SecurityGroupIngressRuleArgs(
                security_group_id=group.id, referenced_security_group_id=group.id, ip_protocol="-1",
                description="EFA: all traffic from itself", tags=cfg.tags_for(f"{cluster_name}-efa-in"),
            ),
            opts=rule_opts,
        )
        egress = aws.vpc.SecurityGroupEgressRule(
            f"{name}-efa-out",
            aws.vpc.SecurityGroupEgressRuleArgs(
                security_group_id=group.id, referenced_security_group_id=group.id, ip_protocol="-1",
                description="EFA: all traffic to itself", tags=cfg.tags_for(f"{cluster_name}-efa-out"),
            ),
            opts=rule_opts,
        )
        return group, [ingress, egress]
