"""Placement: the pods pinned to the system node group fit it, with room to lose one node.

Nothing scales the managed node group, and its pods cannot go anywhere else: a pod that does not fit stays
Pending, the Helm release waiting for it times out and, being atomic, is uninstalled, so the `up` fails.
Pods are read from what the program declares: Helm values over the vendored chart defaults
(schemas/charts/<chart>/<version>/values.yaml), Kubernetes workloads, and the EKS add-ons (table below).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from .capacity import Allocatable, allocatable

from .base import HELM_RELEASE, MANDATORY, dig, quantity, stack_rule

CHARTS = Path(__file__).resolve().parent.parent.parent / "schemas" / "charts"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ADDON = "aws:eks/addon:Addon"
WORKLOADS = {"kubernetes:apps/v1:Deployment": "Deployment", "kubernetes:apps/v1:StatefulSet": "StatefulSet", "kubernetes:apps/v1:DaemonSet": "DaemonSet"}
CONFIG_KEY = "ml-platform:cluster.systemNodeGroup"

# Pods of the EKS managed add-ons, from each add-on's published manifest (the add-ons are not charts here):
# name -> (pods per cluster, or None for one per node; cpu cores, memory GiB per pod).
# coredns: Deployment of 2, 100m / 70Mi (EKS CoreDNS manifest); aws-ebs-csi-driver: controller of 2 and a node
# DaemonSet, each container 10m / 40Mi (aws-ebs-csi-driver chart values: 6 containers in the controller, 3 in
# the node pod); vpc-cni: aws-node 25m (amazon-vpc-cni-k8s config/master/aws-k8s-cni.yaml); kube-proxy 100m
# (EKS kube-proxy manifest); eks-pod-identity-agent: no requests published, counted as a pod.
ADDON_PODS: dict[str, list[tuple[Optional[int], float, float]]] = {
    "coredns": [(2, 0.1, 70 / 1024)],
    "aws-ebs-csi-driver": [(2, 0.06, 240 / 1024), (None, 0.03, 120 / 1024)],
    "vpc-cni": [(None, 0.025, 0.0)],
    "kube-proxy": [(None, 0.1, 0.0)],
    "eks-pod-identity-agent": [(None, 0.0, 0.0)],
}


@lru_cache(maxsize=None)
def chart_defaults(chart: str, version: str) -> dict:
    """The vendored default values of a chart, with those of its vendored subcharts under their keys."""
    path = CHARTS / chart / str(version) / "values.yaml"
    if not path.exists():
        return {}
    # libyaml when the platform has it: the monitoring chart's defaults alone are 200 KB.
    values = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    for key in list(values):
        sub = CHARTS / key
        if isinstance(values[key], dict) and sub.is_dir() and key != chart:
            versions = sorted(p.name for p in sub.iterdir() if (p / "values.yaml").exists())
            if versions:
                values[key] = _merge(chart_defaults(key, versions[-1]), values[key])
    return values


def _merge(base: Any, over: Any) -> Any:
    """`over` over `base`, sharing what `over` leaves alone: merged values are only read (the defaults are cached)."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over if over is not None else base


def _requests(resources: Any) -> tuple[float, float]:
    req = dig(resources, "requests", default={}) or {}
    return quantity(req.get("cpu", 0)), (quantity(req["memory"]) if "memory" in req else 0.0)


def _pinned(selector: Any, labels: dict) -> bool:
    return isinstance(selector, dict) and any(labels.get(k) == v for k, v in selector.items())


def _everywhere(tolerations: Any) -> bool:
    """Tolerates every taint: a DaemonSet so configured runs on the system nodes too."""
    return any(isinstance(t, dict) and not t.get("key") and t.get("operator") == "Exists" for t in tolerations or [])


def _release_pods(values: dict, labels: dict, where: str) -> Iterable[tuple[str, Optional[int], float, float]]:
    """(what, replicas or None for per node, cpu, memory) of each pod spec in a release's values that lands on the
    system nodes: pinned by nodeSelector, or a DaemonSet tolerating every taint."""

    def walk(node: Any, path: str):
        if not isinstance(node, dict) or node.get("enabled") is False:
            return
        pinned, everywhere = _pinned(node.get("nodeSelector"), labels), _everywhere(node.get("tolerations"))
        if pinned or everywhere:
            cpu, mem = _requests(node.get("resources"))
            if not (cpu or mem):  # requests set per container, one level down (karpenter controller, kueue manager)
                for child in node.values():
                    if isinstance(child, dict) and isinstance(child.get("resources"), dict):
                        c, m = _requests(child["resources"])
                        cpu, mem = cpu + c, mem + m
            replicas = node.get("replicas", node.get("replicaCount", 1))
            yield f"{where}:{path or '(top)'}", (None if everywhere and not pinned else int(replicas or 1)), cpu, mem
            return
        for key, child in node.items():
            yield from walk(child, f"{path}.{key}" if path else key)

    yield from walk(values, "")


def _workload_pods(kind: str, props: dict, labels: dict) -> Optional[tuple[str, Optional[int], float, float]]:
    spec = dig(props, "spec", "template", "spec", default={}) or {}
    pinned, everywhere = _pinned(spec.get("nodeSelector"), labels), _everywhere(spec.get("tolerations"))
    if not (pinned or (everywhere and kind == "DaemonSet")):
        return None
    cpu = mem = 0.0
    for c in spec.get("containers") or []:
        a, b = _requests(c.get("resources"))
        cpu, mem = cpu + a, mem + b
    name = f"{kind} {dig(props, 'metadata', 'namespace', default='')}/{dig(props, 'metadata', 'name', default='')}"
    return name, (None if kind == "DaemonSet" else int(dig(props, "spec", "replicas", default=1) or 1)), cpu, mem


def system_pods(resources: list, labels: dict) -> list[tuple[str, Optional[int], float, float]]:
    pods = []
    for r in resources:
        props = r.props
        if getattr(r, "parent", None) is not None and r.parent.resource_type == HELM_RELEASE:
            continue  # a chart's rendered pod: counted from its release's values below
        if r.resource_type == HELM_RELEASE:
            chart = str(props.get("chart", "")).rsplit("/", 1)[-1]
            values = _merge(chart_defaults(chart, str(props.get("version", ""))), props.get("values") or {})
            pods.extend(_release_pods(values, labels, f"release {props.get('name')}"))
        elif r.resource_type in WORKLOADS:
            found = _workload_pods(WORKLOADS[r.resource_type], props, labels)
            if found:
                pods.append(found)
        elif r.resource_type == ADDON:
            for replicas, cpu, mem in ADDON_PODS.get(str(props.get("addonName")), []):
                pods.append((f"add-on {props.get('addonName')}", replicas, cpu, mem))
    return pods


def fit(node: Allocatable, nodes: int, pods: list[tuple[str, Optional[int], float, float]]) -> dict[str, float]:
    """Shortfall per resource (cpu cores, memory GiB, pods) when one of `nodes` is lost; empty when it fits."""
    per_node = [p for p in pods if p[1] is None]
    pinned = [p for p in pods if p[1] is not None]
    need = {
        "cpu": sum(p[1] * p[2] for p in pinned),
        "memory": sum(p[1] * p[3] for p in pinned),
        "pods": float(sum(p[1] for p in pinned)),
    }
    free = {
        "cpu": node.cpu - sum(p[2] for p in per_node),
        "memory": node.memory_gib - sum(p[3] for p in per_node),
        "pods": float(node.pods - len(per_node)),
    }
    have = {k: (nodes - 1) * v for k, v in free.items()}
    return {k: round(need[k] - have[k], 2) for k in need if need[k] > have[k] + 1e-9}


def nodes_needed(node: Allocatable, pods: list) -> int:
    n = 2
    while fit(node, n, pods) and n < 50:
        n += 1
    return n


@stack_rule(
    "system-node-group-capacity",
    "The requests of every pod pinned to the system node group (system charts, DaemonSets on every node, EKS add-ons) fit "
    "the node group's allocatable CPU, memory and pods with one node lost; nothing else can run them.",
    "Raise cluster.systemNodeGroup.desiredSize (and minSize) or pick a larger instance type in cluster.systemNodeGroup.instanceTypes.",
    MANDATORY,
)
def system_node_group_capacity(resources, settings):
    groups = [r for r in resources if r.resource_type == NODE_GROUP]
    for group in groups:
        labels = group.props.get("labels") or {}
        pods = system_pods(resources, labels)
        if not any(p[1] is not None for p in pods):
            continue
        types = group.props.get("instanceTypes") or []
        try:
            smallest = min((allocatable(t) for t in types), key=lambda a: (a.cpu, a.memory_gib))
        except KeyError as exc:
            yield f"instance type {exc.args[0]} is not in the capacity table (policies/rules/capacity.py); {CONFIG_KEY}.instanceTypes", group.urn
            continue
        nodes = int(dig(group.props, "scalingConfig", "desiredSize", default=0))
        short = fit(smallest, nodes, pods)
        if short:
            units = {"cpu": "vCPU", "memory": "GiB", "pods": "pods"}
            yield (
                f"system node group ({nodes} x {'/'.join(types)}) cannot hold its pinned pods with one node lost: short by "
                + ", ".join(f"{v:g} {units[k]}" for k, v in short.items())
                + f"; set {CONFIG_KEY}.desiredSize and minSize to {nodes_needed(smallest, pods)} or raise {CONFIG_KEY}.instanceTypes"
            ), group.urn
