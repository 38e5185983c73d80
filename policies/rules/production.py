"""What a production environment promises: it survives a mistaken destroy, keeps backups, runs its control
components replicated and bounds every node pool. The per-environment policy config decides where these hold."""
from __future__ import annotations

from .aws import EKS_CLUSTER, EKS_COMPONENT, RDS_CLUSTER, RDS_INSTANCE, S3_BUCKET
from .base import ADVISORY, HELM_RELEASE, MANDATORY, dig, resource_rule, stack_rule

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
# Where each chart the platform installs takes the replica count of its control component.
REPLICA_VALUES = {
    "karpenter": [("replicas",)],
    "istiod": [("replicaCount",), ("autoscaleMin",)],
    "gateway": [("autoscaling", "minReplicas")],
    "aws-load-balancer-controller": [("replicaCount",)],
    "metrics-server": [("replicas",)],
    "kube-prometheus-stack": [("prometheus", "prometheusSpec", "replicas"), ("alertmanager", "alertmanagerSpec", "replicas")],
    "kueue": [("controllerManager", "replicas")],
    "jobset": [("controller", "replicas")],
    "kubeflow-trainer": [("manager", "replicas")],
    "volcano": [("custom", "scheduler_replicas"), ("custom", "controller_replicas"), ("custom", "admission_replicas")],
}


@resource_rule(
    "eks-deletion-protection",
    "The EKS cluster has deletion protection, so neither a mistaken destroy nor a console click can remove it.",
    "Set ml-platform:cluster.deletionProtection: true (turn it off deliberately before a planned teardown).",
    ADVISORY,
    [EKS_COMPONENT, EKS_CLUSTER],
)
def eks_deletion_protection(props, args):
    if props.get("deletionProtection") is not True:
        yield "the cluster can be deleted: deletion protection is off"


@resource_rule(
    "data-stores-deletion-protected",
    "Buckets and databases survive a mistaken destroy: no bucket is emptied by a destroy (forceDestroy), and every "
    "RDS/Aurora database has deletion protection.",
    "Leave forceDestroy off on buckets; set ml-platform:database.deletionProtection: true (turn it off deliberately before a planned teardown).",
    ADVISORY,
    [S3_BUCKET, RDS_CLUSTER, RDS_INSTANCE],
)
def data_stores_deletion_protected(props, args):
    if args.resource_type == S3_BUCKET:
        if props.get("forceDestroy") is True:
            yield "a destroy would delete the bucket with every object in it (forceDestroy)"
    elif props.get("deletionProtection") is not True:
        yield "the database can be deleted: deletion protection is off"


@stack_rule(
    "efs-backups-enabled",
    "Every EFS file system has AWS Backup enabled, so datasets, checkpoints and models survive a bad write or delete.",
    "Set ml-platform:storage.backups: true.",
    ADVISORY,
)
def efs_backups_enabled(resources, settings):
    # A backup policy names its file system by id, which the engine does not show policies; its dependency does.
    enabled = {
        d.urn
        for r in resources
        if r.resource_type == "aws:efs/backupPolicy:BackupPolicy" and dig(r.props, "backupPolicy", "status") == "ENABLED"
        for d in r.dependencies
    }
    for r in resources:
        if r.resource_type == "aws:efs/fileSystem:FileSystem" and r.urn not in enabled:
            yield "file system has no enabled backup policy", r.urn


@stack_rule(
    "control-plane-replicated",
    "Controllers the platform depends on (Karpenter, istiod and the gateway, the load balancer controller, metrics-server, Prometheus and Alertmanager) run replicated, on a system node group that tolerates losing a node.",
    "Raise the replica settings the message names (karpenter.replicas, mesh.istiodReplicas, mesh.gateway.minReplicas, accelerators.metricsServerReplicas, observability.*Replicas, scheduling.replicas, cluster.systemNodeGroup.minSize).",
    ADVISORY,
    config_schema={
        "minReplicas": {"type": "integer", "minimum": 1, "default": 2, "description": "replicas each control component runs at least"},
        "minSystemNodes": {"type": "integer", "minimum": 1, "default": 2, "description": "nodes the system node group keeps at least"},
    },
)
def control_plane_replicated(resources, settings):
    for r in resources:
        if r.resource_type == HELM_RELEASE:
            chart = str(r.props.get("chart", "")).rsplit("/", 1)[-1]
            for path in REPLICA_VALUES.get(chart, []):
                replicas = dig(r.props.get("values") or {}, *path)
                if not isinstance(replicas, int) or replicas < settings["minReplicas"]:
                    yield f"{chart} {'.'.join(path)} is {replicas!r}, below {settings['minReplicas']}", r.urn
        elif r.resource_type == NODE_GROUP and "system" in (r.props.get("labels") or {}).values():
            minimum = dig(r.props, "scalingConfig", "minSize")
            if not isinstance(minimum, int) or minimum < settings["minSystemNodes"]:
                yield f"the system node group may shrink to {minimum} nodes, below {settings['minSystemNodes']}", r.urn


@resource_rule(
    "node-pool-bounded",
    "Every Karpenter NodePool has CPU and memory limits, so no workload or bug can buy unbounded capacity.",
    "Set nodePools.<pool>.limits (cpu, memoryGib and, for accelerator pools, accelerators).",
    MANDATORY,
    ["kubernetes:karpenter.sh/v1:NodePool"],
)
def node_pool_bounded(props, args):
    limits = dig(props, "spec", "limits") or {}
    if dig(props, "spec", "replicas") is not None:
        # A static NodePool: the CRD allows no cpu or memory limit beside its replicas, only a node count.
        if not limits.get("nodes"):
            yield "static pool has no nodes limit"
        return
    missing = [r for r in ("cpu", "memory") if not limits.get(r)]
    if missing:
        yield f"pool has no {' or '.join(missing)} limit"
