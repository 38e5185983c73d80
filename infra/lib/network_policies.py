"""The NetworkPolicy pieces every deny-by-default namespace of the platform uses."""
from __future__ import annotations

from typing import Any

from infra.lib.conventions import ISTIO_NAMESPACE

# EKS Pod Identity's agent on every node (link-local), where the SDKs fetch the role's credentials.
POD_IDENTITY_AGENT = "169.254.170.23/32"
POD_IDENTITY_AGENT_EGRESS: dict[str, Any] = {"to": [{"ipBlock": {"cidr": POD_IDENTITY_AGENT}}], "ports": [{"protocol": "TCP", "port": 80}]}


def in_namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def baseline() -> dict[str, dict[str, Any]]:
    """Deny everything; let every pod resolve names (cluster DNS) and reach the mesh control plane (istiod)."""
    return {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "allow-dns": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{**in_namespace("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        },
        "allow-mesh-control-plane": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [in_namespace(ISTIO_NAMESPACE)], "ports": [{"protocol": "TCP", "port": 15012}, {"protocol": "TCP", "port": 15017}]}],
        },
    }
