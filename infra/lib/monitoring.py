"""How a component tells Observability what to scrape, and the shape of the platform's alert rules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi


# dcgm-exporter's series as Prometheus stores them (its ServiceMonitor does not honour the exporter's labels): the
# node comes from the target (relabelled from the pod's node), and the workload using the GPU from the exporter's own
# namespace/pod labels, which collide with the target's and are kept under the exported_ prefix.
GPU_NODE_LABEL = "node"
GPU_WORKLOAD_NAMESPACE_LABEL = "exported_namespace"
GPU_WORKLOAD_POD_LABEL = "exported_pod"


@dataclass(frozen=True)
class ScrapeTarget:
    """A workload a component installs and Prometheus scrapes, with the resource that creates it."""

    name: str
    kind: str  # ServiceMonitor or PodMonitor
    namespace: str
    selector: dict[str, Any]
    endpoint: dict[str, Any]
    created_by: pulumi.Resource
    any_namespace: bool = False


def alert_rule(alert: str, expr: str, for_: str, severity: str, summary: str) -> dict[str, Any]:
    """A PrometheusRule rule the platform's Alertmanager routes by severity, with its runbook anchor."""
    return {
        "alert": alert,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, "team": "ml-platform"},
        "annotations": {"summary": summary, "runbook": f"docs/runbooks.md#{alert.lower()}"},
    }
