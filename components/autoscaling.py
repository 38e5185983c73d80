"""Autoscaling on the signals that matter: prometheus-adapter serves per-pod custom metrics to HPAs, and the Vertical
Pod Autoscaler recommends (and, opted in, applies) requests."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s

from infra.lib import helm
from infra.lib.conventions import MONITORING_NAMESPACE, TEAM_LABEL
from infra.lib.metrics import ADAPTER_METRICS

from infra.config import PlatformConfig, PrometheusAdapterConfig, VerticalPodAutoscalerConfig

ADAPTER_REPOSITORY = "https://prometheus-community.github.io/helm-charts"
VPA_REPOSITORY = "https://kubernetes.github.io/autoscaler"
# The adapter sits next to the Prometheus it queries; the VPA with the other cluster controllers.
ADAPTER_NAMESPACE = MONITORING_NAMESPACE
VPA_NAMESPACE = "kube-system"


def adapter_values(adapter: PrometheusAdapterConfig, prometheus_url: str, selector: dict[str, str], toleration: dict[str, str]) -> dict[str, Any]:
    prometheus = urlsplit(prometheus_url)
    return {
        # The chart joins url and port itself.
        "prometheus": {"url": f"{prometheus.scheme}://{prometheus.hostname}", "port": prometheus.port},
        "replicas": adapter.replicas,
        "podDisruptionBudget": {"enabled": adapter.replicas > 1, "maxUnavailable": 1},
        "nodeSelector": selector,
        "tolerations": [toleration],
        "resources": helm.resources("100m", "256Mi", chart_limits_cpu=False),
        # 4 logs every request the HPAs make; Fluent Bit ships every line.
        "logLevel": 2,
        "rules": {
            # The defaults turn every namespaced series into a metric: thousands of names and a slow relist.
            "default": False,
            "custom": [m.rule for _, m in sorted(ADAPTER_METRICS.items())],
            # No `resource` rules: metrics-server already serves metrics.k8s.io, and a second APIService for the same
            # group would replace it. No `external` rules: nothing scales on metrics outside the cluster.
        },
    }


def vpa_values(vpa: VerticalPodAutoscalerConfig, selector: dict[str, str], toleration: dict[str, str]) -> dict[str, Any]:
    system = {"nodeSelector": selector, "tolerations": [toleration]}

    def component(enabled: bool, memory: str) -> dict[str, Any]:
        if not enabled:
            return {"enabled": False}
        # A PDB that keeps one pod of one would block every node drain.
        return {"enabled": True, "replicas": vpa.replicas, "podDisruptionBudget": {"enabled": vpa.replicas > 1},
                "resources": helm.resources("50m", memory, chart_limits_cpu=False), **system}

    admission = component(vpa.admission_controller, "200Mi")
    if vpa.admission_controller:
        admission["certGen"] = {"resources": helm.resources("50m", "64Mi", chart_limits_cpu=False), **system}
        # Only team pods (their namespaces carry TEAM_LABEL) are ever resized; nothing else waits on the webhook.
        admission["mutatingWebhookConfiguration"] = {"namespaceSelector": {"matchExpressions": [{"key": TEAM_LABEL, "operator": "Exists"}]}}
    return {
        "containerSecurityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Upstream's deploy manifests size these (memory at its request: no overcommit on system nodes).
        "recommender": component(True, "500Mi"),
        "updater": component(vpa.updater, "500Mi"),
        "admissionController": admission,
    }


@dataclass(frozen=True)
class AutoscalingArgs:
    config: PlatformConfig
    provider: k8s.Provider
    system_node_selector: dict[str, str]
    system_toleration: dict[str, str]
    prometheus_url: str
    # The adapter is a client of this Prometheus: installed after it, removed before it.
    prometheus: pulumi.Resource
    depends_on: list[pulumi.Resource]


class Autoscaling(pulumi.ComponentResource):
    # What serves custom.metrics.k8s.io: an HPA on a custom metric depends on it.
    metrics_adapter: k8s.helm.v3.Release
    # Installs the VerticalPodAutoscaler CRD (the chart's crds/); None when the VPA is off.
    vertical_pod_autoscaler: Optional[k8s.helm.v3.Release]

    def __init__(self, name: str, args: AutoscalingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:autoscaling:Autoscaling", name, None, opts)
        cfg = args.config.autoscaling
        selector, toleration = args.system_node_selector, args.system_toleration
        k8s_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on, *deps])  # noqa: E731

        self.metrics_adapter = helm.release(
            f"{name}-prometheus-adapter",
            name="prometheus-adapter",
            chart="prometheus-adapter",
            repository=ADAPTER_REPOSITORY,
            version=cfg.prometheus_adapter.version,
            namespace=ADAPTER_NAMESPACE,
            values=adapter_values(cfg.prometheus_adapter, args.prometheus_url, selector, toleration),
            opts=k8s_opts(args.prometheus),
        )
        vpa = cfg.vertical_pod_autoscaler
        self.vertical_pod_autoscaler = (
            helm.release(
                f"{name}-vpa",
                name="vertical-pod-autoscaler",
                chart="vertical-pod-autoscaler",
                repository=VPA_REPOSITORY,
                version=vpa.version,
                namespace=VPA_NAMESPACE,
                values=vpa_values(vpa, selector, toleration),
                opts=k8s_opts(),
            )
            if vpa.enabled
            else None
        )
        self.register_outputs({})
