"""Which Karpenter NodePools could launch a node for a pod: taints, node selectors, extended resources.

A deliberately small model of the scheduler and Karpenter's pool selection, enough to prove that
accelerator workloads land on exactly the pool meant for them.
"""
from __future__ import annotations

from typing import Any, Iterable

# Extended resource advertised by each EC2 instance family's device plugin.
FAMILY_RESOURCES = {
    **{f: "nvidia.com/gpu" for f in ("g4dn", "g5", "g5g", "g6", "g6e", "gr6", "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200")},
    **{f: "aws.amazon.com/neuron" for f in ("inf1", "inf2", "trn1", "trn1n", "trn2")},
}
CORE_RESOURCES = {"cpu", "memory", "ephemeral-storage", "pods"}


def tolerates(tolerations: Iterable[dict], taint: dict) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator", "Equal") == "Exists":
            if not t.get("key") or t["key"] == taint["key"]:
                return True
        elif t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _requirement_values(pool_spec: dict, key: str) -> list[str] | None:
    for req in pool_spec["template"]["spec"].get("requirements", []):
        if req["key"] == key and req["operator"] == "In":
            return list(req["values"])
    return None


def offered_resources(pool_spec: dict) -> set[str]:
    """Extended resources the pool's instance types carry (every type must carry it)."""
    types = _requirement_values(pool_spec, "node.kubernetes.io/instance-type")
    families = [t.split(".", 1)[0] for t in types] if types else _requirement_values(pool_spec, "karpenter.k8s.aws/instance-family")
    if not families:
        return set()
    per_family = [{FAMILY_RESOURCES[f]} if f in FAMILY_RESOURCES else set() for f in families]
    return set.intersection(*per_family)


INSTANCE_FAMILY = "karpenter.k8s.aws/instance-family"


def _label_possible(pool_spec: dict, key: str, value: str) -> bool:
    labels = pool_spec["template"].get("metadata", {}).get("labels", {})
    if key in labels:
        return labels[key] == value
    values = _requirement_values(pool_spec, key)
    if values is None and key == INSTANCE_FAMILY:
        # Karpenter labels every node with its family: a pool listing instance types offers their families.
        types = _requirement_values(pool_spec, "node.kubernetes.io/instance-type")
        values = sorted({t.split(".", 1)[0] for t in types}) if types else None
    return values is not None and value in values


def requested_extended_resources(pod_spec: dict) -> set[str]:
    names: set[str] = set()
    for c in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        res = c.get("resources", {})
        for bucket in (res.get("requests", {}), res.get("limits", {})):
            names |= {n for n in bucket if n not in CORE_RESOURCES}
    return names


def pool_can_run(pool_spec: dict, pod_spec: dict) -> bool:
    tolerations = pod_spec.get("tolerations", [])
    if not all(tolerates(tolerations, taint) for taint in pool_spec["template"]["spec"].get("taints", [])):
        return False
    if not all(_label_possible(pool_spec, k, v) for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    return requested_extended_resources(pod_spec) <= offered_resources(pool_spec)


def matching_pools(pod_spec: dict, node_pools: Iterable[dict[str, Any]]) -> list[str]:
    """Names of the NodePool manifests that could launch a node for this pod spec."""
    return sorted(p["metadata"]["name"] for p in node_pools if pool_can_run(p["spec"], pod_spec))
