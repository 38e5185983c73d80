"""Awaits the engine can meet: what an awaited resource's readiness needs is created before it in the graph.

pulumi-kubernetes waits for a Job, Deployment, StatefulSet or DaemonSet until its pods run (10 minutes by default)
and for a PersistentVolumeClaim until it is Bound, or Pending when its class binds WaitForFirstConsumer (a hard
5 minutes, provider/pkg/await/awaiters.go). A pod on a Karpenter pool needs the pool's NodePool; a claim needs
its class and the driver that provisions it. If those come later in the graph, or never, the wait times out.
`pulumi.com/skipAwait: "true"` takes a resource out of this check: nothing waits for it.
"""
from __future__ import annotations

from .base import MANDATORY, dig, stack_rule

POD_OWNERS = {"kubernetes:batch/v1:Job", "kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"}
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
PV = "kubernetes:core/v1:PersistentVolume"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
# CSI provisioners and the EKS add-on that runs them.
PROVISIONER_ADDONS = {"ebs.csi.aws.com": "aws-ebs-csi-driver", "efs.csi.aws.com": "aws-efs-csi-driver"}


def skips_await(r) -> bool:
    return dig(r.props, "metadata", "annotations", "pulumi.com/skipAwait") == "true"


def before(r, children: dict) -> set[str]:
    """URNs of everything `r` waits for: its dependencies, theirs, and the children of a component among them."""
    seen, todo = set(), list(r.dependencies)
    while todo:
        d = todo.pop()
        if d.urn in seen:
            continue
        seen.add(d.urn)
        todo.extend(d.dependencies)
        todo.extend(children.get(d.urn, []))
    return seen


def _pools(resources) -> list:
    return [r for r in resources if r.resource_type == NODE_POOL]


def _pool_for(selector: dict, pools: list):
    for pool in pools:
        labels = dig(pool.props, "spec", "template", "metadata", "labels", default={}) or {}
        if selector and all(labels.get(k) == v for k, v in selector.items() if k.startswith("ml-platform.io/") or k == "karpenter.sh/nodepool"):
            if any(k in labels for k in selector):
                return pool
    return None


@stack_rule(
    "await-prerequisites-in-graph",
    "Every resource the engine awaits has what its readiness needs created before it in the graph: a pod on a Karpenter "
    "pool waits for the pool's NodePool, a PersistentVolumeClaim for its StorageClass and the driver that provisions it "
    "(or its static PersistentVolume); otherwise the await times out (10 minutes for pods, a hard 5 for claims).",
    "Add the NodePool, StorageClass, CSI add-on or PersistentVolume to the resource's depends_on, or mark it "
    "`pulumi.com/skipAwait: \"true\"` when the cluster, not the deploy, should wait for it.",
    MANDATORY,
)
def await_prerequisites_in_graph(resources, settings):
    pools = _pools(resources)
    children: dict = {}
    for r in resources:
        if r.parent is not None:
            children.setdefault(r.parent.urn, []).append(r)
    classes = {dig(r.props, "metadata", "name"): r for r in resources if r.resource_type == STORAGE_CLASS}
    volumes = {dig(r.props, "metadata", "name"): r for r in resources if r.resource_type == PV}
    addons = {r.props.get("addonName"): r for r in resources if r.resource_type == "aws:eks/addon:Addon"}
    for r in resources:
        if r.resource_type in POD_OWNERS and not skips_await(r):
            selector = dig(r.props, "spec", "template", "spec", "nodeSelector", default={}) or {}
            pool = _pool_for(selector, pools)
            if pool is not None and pool.urn not in before(r, children):
                yield f"awaited pods select pool nodes ({selector}) but the NodePool {dig(pool.props, 'metadata', 'name')} is not created before it", r.urn
        if r.resource_type == PVC and not skips_await(r):
            yield from _claim(r, before(r, children), classes, volumes, addons)


def _claim(r, earlier: set[str], classes: dict, volumes: dict, addons: dict):
    cls_name = dig(r.props, "spec", "storageClassName")
    if cls_name == "":
        pv = volumes.get(dig(r.props, "spec", "volumeName"))
        if pv is None:
            yield "awaited claim has no storage class and no PersistentVolume of the stack to bind to: it never binds", r.urn
        elif pv.urn not in earlier:
            yield f"awaited claim binds to PersistentVolume {dig(pv.props, 'metadata', 'name')}, which is not created before it", r.urn
        return
    cls = classes.get(cls_name)
    if cls is None:
        yield f"awaited claim uses StorageClass {cls_name!r}, which the stack does not create", r.urn
        return
    if cls.urn not in earlier:
        yield f"awaited claim is created before its StorageClass {cls_name!r}: the engine cannot read its binding mode", r.urn
    if cls.props.get("volumeBindingMode") == "WaitForFirstConsumer":
        return  # Pending is enough
    provisioner = cls.props.get("provisioner")
    if provisioner == NO_PROVISIONER:
        yield f"awaited claim on StorageClass {cls_name!r} with no provisioner and Immediate binding: nothing binds it", r.urn
        return
    addon = addons.get(PROVISIONER_ADDONS.get(provisioner, ""))
    if provisioner in PROVISIONER_ADDONS and (addon is None or addon.urn not in earlier):
        yield f"awaited claim needs the {PROVISIONER_ADDONS[provisioner]} add-on ({provisioner}) created before it", r.urn
