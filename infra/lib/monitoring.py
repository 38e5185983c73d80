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


def _panel(i: int, title: str, expr: str, unit: str, legend: str) -> dict[str, Any]:
    return {
        "id": i + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": "A", "expr": expr, "legendFormat": legend}],
    }


def dashboard(uid: str, title: str, panels: list[tuple[str, str, str, str]], since: str = "now-6h") -> dict[str, Any]:
    """A platform Grafana dashboard: one time series per (title, expression, unit, legend), two to a row."""
    return {
        "uid": uid,
        "title": title,
        "tags": ["ml-platform"],
        "schemaVersion": 39,
        "time": {"from": since, "to": "now"},
        "refresh": "1m",
        "panels": [_panel(i, *p) for i, p in enumerate(panels)],
    }
