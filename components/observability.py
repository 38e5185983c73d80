"""Observability: kube-prometheus-stack, scrape targets for GPUs, Neuron, Karpenter and Istio, dashboards, ML alerts."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.config import ObservabilityConfig, PlatformConfig
from infra.lib import alertmanager, helm, timing
from infra.lib.conventions import DASHBOARD_LABEL, MONITORING_NAMESPACE
from infra.lib.monitoring import GPU_NODE_LABEL, GPU_WORKLOAD_NAMESPACE_LABEL, GPU_WORKLOAD_POD_LABEL, ScrapeTarget, alert_rule, dashboard

RELEASE = "kube-prometheus-stack"
REPOSITORY = "https://prometheus-community.github.io/helm-charts"
GRAFANA_ADMIN_SECRET = "grafana-admin"
PLATFORM_LABELS = {"app.kubernetes.io/part-of": "ml-platform"}
# kube-state-metrics dropped its VerticalPodAutoscaler metrics (2.9); its custom resource state exports the target
# recommendation again, under the name the built-in metric had.
VPA_TARGET_METRIC = "kube_verticalpodautoscaler_status_recommendation_containerrecommendations_target"


def vpa_state_metrics() -> dict[str, Any]:
    """kube-state-metrics' CustomResourceStateMetrics: one VPA_TARGET_METRIC series per VPA, container and resource."""
    prefix, name = VPA_TARGET_METRIC.split("_", 1)  # kube-state-metrics names it <metricNamePrefix>_<name>
    return {
        "kind": "CustomResourceStateMetrics",
        "spec": {
            "resources": [
                {
                    "groupVersionKind": {"group": "autoscaling.k8s.io", "version": "v1", "kind": "VerticalPodAutoscaler"},
                    "metricNamePrefix": prefix,
                    "labelsFromPath": {
                        "namespace": ["metadata", "namespace"],
                        "verticalpodautoscaler": ["metadata", "name"],
                        "target_kind": ["spec", "targetRef", "kind"],
                        "target_name": ["spec", "targetRef", "name"],
                    },
                    "metrics": [
                        {
                            "name": name,
                            "help": f"Target {resource} the VerticalPodAutoscaler recommends for the container.",
                            "commonLabels": {"resource": resource, "unit": unit},
                            "each": {
                                "type": "Gauge",
                                "gauge": {
                                    "path": ["status", "recommendation", "containerRecommendations"],
                                    "labelsFromPath": {"container": ["containerName"]},
                                    "valueFrom": ["target", resource],
                                },
                            },
                        }
                        for resource, unit in (("cpu", "core"), ("memory", "byte"))
                    ],
                }
            ]
        },
    }


def dashboards() -> dict[str, dict[str, Any]]:
    node, ns, pod = GPU_NODE_LABEL, GPU_WORKLOAD_NAMESPACE_LABEL, GPU_WORKLOAD_POD_LABEL
    # The exporter repeats a shared GPU's series once per pod using it (time slicing): one series per GPU (or MIG
    # instance) first, then the node's figure.
    per_gpu = lambda metric: f"max by ({node}, gpu, GPU_I_ID) ({metric})"  # noqa: E731
    return {
        "gpu": dashboard(
            "ml-gpu",
            "ML platform / GPUs",
            [
                ("GPU utilisation by node", f"avg by ({node}) ({per_gpu('DCGM_FI_DEV_GPU_UTIL')})", "percent", f"{{{{{node}}}}}"),
                ("GPU utilisation by pod", f'avg by ({ns}, {pod}) (DCGM_FI_DEV_GPU_UTIL{{{pod}!=""}})', "percent", f"{{{{{ns}}}}}/{{{{{pod}}}}}"),
                ("GPU memory used by node", f"sum by ({node}) ({per_gpu('DCGM_FI_DEV_FB_USED')}) * 1024 * 1024", "bytes", f"{{{{{node}}}}}"),
                ("GPU memory used by pod", f'sum by ({ns}, {pod}) (DCGM_FI_DEV_FB_USED{{{pod}!=""}}) * 1024 * 1024', "bytes", f"{{{{{ns}}}}}/{{{{{pod}}}}}"),
            ],
        ),
        "neuron": dashboard(
            "ml-neuron",
            "ML platform / Neuron",
            [
                ("NeuronCore utilisation by node", "avg by (instance_id) (neuroncore_utilization_ratio) * 100", "percent", "{{instance_id}}"),
                ("NeuronCore utilisation by core", "avg by (instance_id, neuroncore) (neuroncore_utilization_ratio) * 100", "percent", "{{instance_id}} core {{neuroncore}}"),
                ("Neuron device memory used", "sum by (instance_id) (neuron_runtime_memory_used_bytes)", "bytes", "{{instance_id}}"),
                ("Neuron execution errors", "sum by (instance_id) (rate(execution_errors_total[5m]))", "ops", "{{instance_id}}"),
            ],
        ),
        "serving": dashboard(
            "ml-serving",
            "ML platform / Model serving",
            [
                (
                    "p95 latency by model",
                    "histogram_quantile(0.95, sum by (destination_workload_namespace, destination_service_name, le) "
                    "(rate(istio_request_duration_milliseconds_bucket{reporter=\"destination\"}[5m])))",
                    "ms",
                    "{{destination_workload_namespace}}/{{destination_service_name}}",
                ),
                (
                    "Requests per second by model",
                    "sum by (destination_workload_namespace, destination_service_name) (rate(istio_requests_total{reporter=\"destination\"}[5m]))",
                    "reqps",
                    "{{destination_workload_namespace}}/{{destination_service_name}}",
                ),
                (
                    "Error rate by model",
                    "sum by (destination_workload_namespace, destination_service_name) (rate(istio_requests_total{reporter=\"destination\", response_code=~\"5..\"}[5m])) "
                    "/ sum by (destination_workload_namespace, destination_service_name) (rate(istio_requests_total{reporter=\"destination\"}[5m]))",
                    "percentunit",
                    "{{destination_workload_namespace}}/{{destination_service_name}}",
                ),
                (
                    "Replicas by model (current / max)",
                    "kube_horizontalpodautoscaler_status_current_replicas / kube_horizontalpodautoscaler_spec_max_replicas",
                    "percentunit",
                    "{{namespace}}/{{horizontalpodautoscaler}}",
                ),
                # Pods are named <deployment>-<replicaset hash>-<suffix>: a workload's request is its pods'.
                (
                    "VPA recommendation / request by workload",
                    f"max by (namespace, target_name, container, resource) ({VPA_TARGET_METRIC}{{target_kind=\"Deployment\"}}) "
                    "/ on (namespace, target_name, container, resource) max by (namespace, target_name, container, resource) "
                    "(label_replace(kube_pod_container_resource_requests{resource=~\"cpu|memory\"}, \"target_name\", \"$1\", \"pod\", \"(.+)-[a-z0-9]+-[a-z0-9]+\"))",
                    "percentunit",
                    "{{namespace}}/{{target_name}} {{container}} {{resource}}",
                ),
            ],
        ),
        "karpenter": dashboard(
            "ml-karpenter",
            "ML platform / Karpenter nodes",
            [
                ("Nodes by pool and capacity type", "count by (nodepool, capacity_type) (karpenter_nodes_allocatable{resource_type=\"cpu\"})", "short", "{{nodepool}} {{capacity_type}}"),
                ("Pool usage of its limits", "max by (nodepool, resource_type) (karpenter_nodepools_usage / karpenter_nodepools_limit)", "percentunit", "{{nodepool}} {{resource_type}}"),
                ("Node launches by pool", "sum by (nodepool) (increase(karpenter_nodeclaims_created_total[1h]))", "short", "{{nodepool}}"),
                ("Pending pods", "sum(kube_pod_status_phase{phase=\"Pending\"})", "short", "pending"),
            ],
        ),
    }


def per_workload(expr: str, namespace_label: str, workload_label: str) -> str:
    """Gives a per-workload series the `namespace` and `workload` labels that alert routing and inhibition use."""
    return (
        f'label_replace(label_replace({expr}, "namespace", "$1", "{namespace_label}", "(.+)"), '
        f'"workload", "$1", "{workload_label}", "(.+)")'
    )


def alert_rules(obs: ObservabilityConfig) -> dict[str, Any]:
    """PrometheusRule spec of the alerts that matter for an ML platform."""
    node, ns, pod = GPU_NODE_LABEL, GPU_WORKLOAD_NAMESPACE_LABEL, GPU_WORKLOAD_POD_LABEL
    dest = "destination_workload_namespace, destination_workload"
    by_destination = lambda expr: per_workload(expr, "destination_workload_namespace", "destination_workload")  # noqa: E731
    return {
        "groups": [
            {
                "name": "ml-platform.accelerators",
                "rules": [
                    alert_rule(
                        "GpuIdleOnPaidNode",
                        f"avg by ({node}, gpu) (avg_over_time(DCGM_FI_DEV_GPU_UTIL[{obs.gpu_idle_minutes}m])) < 5",
                        f"{obs.gpu_idle_minutes}m",
                        "warning",
                        f"GPU {{{{ $labels.gpu }}}} on {{{{ $labels.{node} }}}} under 5% busy for {obs.gpu_idle_minutes} minutes while billed",
                    ),
                    alert_rule(
                        "GpuMemoryNearFull",
                        # The workload's namespace and pod become the alert's, so a team's route receives it.
                        'label_replace(label_replace(max by ({node}, gpu, {ns}, {pod}) '
                        '(DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)), '
                        '"namespace", "$1", "{ns}", "(.+)"), "pod", "$1", "{pod}", "(.+)") > 0.95'.format(node=node, ns=ns, pod=pod),
                        "10m",
                        "warning",
                        f"GPU memory over 95% on {{{{ $labels.{node} }}}} ({{{{ $labels.namespace }}}}/{{{{ $labels.pod }}}})",
                    ),
                    alert_rule(
                        "NeuronCoreIdleOnPaidNode",
                        f"avg by (instance_id) (avg_over_time(neuroncore_utilization_ratio[{obs.gpu_idle_minutes}m])) < 0.05",
                        f"{obs.gpu_idle_minutes}m",
                        "warning",
                        f"NeuronCores of {{{{ $labels.instance_id }}}} under 5% busy for {obs.gpu_idle_minutes} minutes while billed",
                    ),
                ],
            },
            {
                "name": "ml-platform.serving",
                "rules": [
                    alert_rule(
                        "ModelLatencyP95High",
                        by_destination(
                            f"histogram_quantile(0.95, sum by ({dest}, le) (rate(istio_request_duration_milliseconds_bucket{{reporter=\"destination\"}}[5m])))"
                        )
                        + f" > {obs.latency_objective_ms}",
                        "10m",
                        "critical",
                        f"p95 latency of {{{{ $labels.namespace }}}}/{{{{ $labels.workload }}}} above {obs.latency_objective_ms} ms",
                    ),
                    alert_rule(
                        "ModelErrorRateHigh",
                        by_destination(
                            f"sum by ({dest}) (rate(istio_requests_total{{reporter=\"destination\", response_code=~\"5..\"}}[5m])) "
                            f"/ sum by ({dest}) (rate(istio_requests_total{{reporter=\"destination\"}}[5m]))"
                        )
                        + f" > {obs.error_rate_objective}",
                        "5m",
                        "critical",
                        f"more than {obs.error_rate_objective:.0%} of requests to {{{{ $labels.namespace }}}}/{{{{ $labels.workload }}}} fail",
                    ),
                    alert_rule(
                        "HpaPinnedAtMaximum",
                        per_workload(
                            "kube_horizontalpodautoscaler_status_current_replicas >= kube_horizontalpodautoscaler_spec_max_replicas",
                            "namespace",
                            "horizontalpodautoscaler",
                        ),
                        "15m",
                        "warning",
                        "{{ $labels.namespace }}/{{ $labels.horizontalpodautoscaler }} has run at its maximum replicas for 15 minutes",
                    ),
                ],
            },
            {
                "name": "ml-platform.capacity",
                "rules": [
                    alert_rule(
                        "PodUnschedulable",
                        "max by (namespace, pod) (kube_pod_status_unschedulable) > 0",
                        "10m",
                        "warning",
                        "{{ $labels.namespace }}/{{ $labels.pod }} has been unschedulable for more than ten minutes",
                    ),
                    alert_rule(
                        "KarpenterNodeLaunchFailing",
                        "sum by (controller) (increase(karpenter_cloudprovider_errors_total{method=\"Create\"}[15m])) > 0",
                        "15m",
                        "critical",
                        "Karpenter cannot launch nodes: check limits, quotas, capacity and the controller log",
                    ),
                ],
            },
        ]
    }


def stack_values(cfg: PlatformConfig, storage_class: str, selector: dict[str, str], toleration: dict[str, str]) -> dict[str, Any]:
    obs = cfg.observability
    system = {"nodeSelector": selector, "tolerations": [toleration]}
    return {
        "crds": {"enabled": True},
        "prometheusOperator": {
            **system,
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
            # The pre-install hook Jobs that make and patch the webhook's certificate: a consolidated node mid-run
            # fails the hook and so the atomic release.
            "admissionWebhooks": {"patch": {
                "resources": helm.resources("50m", "64Mi", chart_limits_cpu=False),
                "podAnnotations": {"karpenter.sh/do-not-disrupt": "true"},
            }},
        },
        "prometheus": {
            "prometheusSpec": {
                "replicas": obs.prometheus_replicas,
                "retention": obs.prometheus_retention,
                "retentionSize": f"{int(obs.prometheus_volume_gib * 0.9)}GiB",
                # Every ServiceMonitor, PodMonitor and PrometheusRule in the cluster, not only the chart's own.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "resources": {"requests": {"cpu": "500m", "memory": "4Gi"}, "limits": {"memory": "4Gi"}},
                "storageSpec": {
                    "volumeClaimTemplate": {
                        "spec": {
                            "storageClassName": storage_class,
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": f"{obs.prometheus_volume_gib}Gi"}},
                        }
                    }
                },
            }
        },
        "alertmanager": {
            "config": alertmanager.alertmanager_config(cfg.alerting),
            "alertmanagerSpec": {
                "replicas": obs.alertmanager_replicas,
                # Receivers' credentials, as files the configuration names (the Alerting component owns the Secret).
                "secrets": [alertmanager.CREDENTIALS_SECRET],
                # Teams route their own namespace's alerts with an AlertmanagerConfig in that namespace.
                "alertmanagerConfigSelector": {"matchLabels": alertmanager.TEAM_CONFIG_LABEL},
                "alertmanagerConfigNamespaceSelector": {},
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
                "storage": {
                    "volumeClaimTemplate": {
                        "spec": {"storageClassName": storage_class, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}
                    }
                },
            }
        },
        "grafana": {
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
            "persistence": {"enabled": True, "storageClassName": storage_class, "size": f"{obs.grafana_volume_gib}Gi"},
            "sidecar": {
                "dashboards": {"enabled": True, "label": "grafana_dashboard", "labelValue": "1", "searchNamespace": "ALL"},
                # The dashboards and datasources watchers (the chart has no default).
                "resources": helm.resources("50m", "128Mi", chart_limits_cpu=False),
            },
            # The chart's root init container chowns the volume; the pod's fsGroup (472) already has the kubelet set
            # the volume's group ownership.
            "initChownData": {"enabled": False},
            # `helm test` hooks: a Pulumi release never runs them.
            "testFramework": {"enabled": False},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
        },
        "kube-state-metrics": {
            "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
            **(
                {
                    "customResourceState": {"enabled": True, "config": vpa_state_metrics()},
                    "rbac": {"extraRules": [{"apiGroups": ["autoscaling.k8s.io"], "resources": ["verticalpodautoscalers"], "verbs": ["list", "watch"]}]},
                }
                if cfg.autoscaling.vertical_pod_autoscaler.enabled
                else {}
            ),
        },
        # Node metrics from every node, accelerator and system nodes included.
        "prometheus-node-exporter": {
            "tolerations": [{"operator": "Exists"}],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
        },
    }


@dataclass(frozen=True)
class ObservabilityArgs:
    config: PlatformConfig
    provider: k8s.Provider
    storage_class: str
    # Helm waits for Grafana's claim on it: the release comes after the class.
    storage_class_resource: pulumi.Resource
    system_node_selector: dict[str, str]
    system_toleration: dict[str, str]
    scrape_targets: list[ScrapeTarget]
    depends_on: list[pulumi.Resource]
    # Prometheus, Alertmanager and Grafana run on Karpenter's general-purpose pool.
    general_capacity: pulumi.Resource


class Observability(pulumi.ComponentResource):
    namespace: k8s.core.v1.Namespace
    release: k8s.helm.v3.Release
    grafana_url: str = f"http://{RELEASE}-grafana.{MONITORING_NAMESPACE}.svc.cluster.local:80"
    prometheus_url: str = f"http://{RELEASE}-prometheus.{MONITORING_NAMESPACE}.svc.cluster.local:9090"
    alertmanager_url: str = f"http://{RELEASE}-alertmanager.{MONITORING_NAMESPACE}.svc.cluster.local:9093"
    admin_secret: str = f"{MONITORING_NAMESPACE}/{GRAFANA_ADMIN_SECRET}"

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:observability:Observability", name, None, opts)
        cfg, obs = args.config, args.config.observability
        k8s_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on, *deps])  # noqa: E731

        # node-exporter reads the host's /proc and /sys with host networking.
        self.namespace = namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=MONITORING_NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "privileged", **PLATFORM_LABELS}),
            opts=k8s_opts(),
        )
        password = random.RandomPassword(
            f"{name}-grafana-admin", random.RandomPasswordArgs(length=32, special=False), opts=pulumi.ResourceOptions(parent=self)
        )
        admin_secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GRAFANA_ADMIN_SECRET, namespace=MONITORING_NAMESPACE, labels=PLATFORM_LABELS),
            type="Opaque",
            string_data={"admin-user": "admin", "admin-password": pulumi.Output.secret(password.result)},
            opts=k8s_opts(namespace),
        )
        self.release = helm.release(
            name,
            name=RELEASE,
            chart=RELEASE,
            repository=REPOSITORY,
            version=obs.kube_prometheus_stack_version,
            namespace=MONITORING_NAMESPACE,
            values=stack_values(cfg, args.storage_class, args.system_node_selector, args.system_toleration),
            # Karpenter launches the nodes and EBS attaches the volumes first.
            timeout=timing.HELM_ON_NEW_NODES,
            opts=k8s_opts(namespace, admin_secret, args.general_capacity, args.storage_class_resource),
        )

        for target in args.scrape_targets:
            endpoints_key = "endpoints" if target.kind == "ServiceMonitor" else "podMetricsEndpoints"
            spec: dict[str, Any] = {"selector": target.selector, endpoints_key: [target.endpoint]}
            spec["namespaceSelector"] = {"any": True} if target.any_namespace else {"matchNames": [target.namespace]}
            k8s.apiextensions.CustomResource(
                f"{name}-{target.name}",
                api_version="monitoring.coreos.com/v1",
                kind=target.kind,
                metadata=k8s.meta.v1.ObjectMetaArgs(name=target.name, namespace=MONITORING_NAMESPACE, labels=PLATFORM_LABELS),
                spec=spec,
                opts=k8s_opts(self.release, target.created_by),
            )
        for key, board in sorted(dashboards().items()):
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{key}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"dashboard-ml-{key}", namespace=MONITORING_NAMESPACE, labels={**DASHBOARD_LABEL, **PLATFORM_LABELS}
                ),
                data={f"ml-{key}.json": json.dumps(board, indent=2, sort_keys=True)},
                opts=k8s_opts(namespace),
            )
        k8s.apiextensions.CustomResource(
            f"{name}-alerts",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="ml-platform-alerts", namespace=MONITORING_NAMESPACE, labels=PLATFORM_LABELS),
            spec=alert_rules(obs),
            opts=k8s_opts(self.release),
        )
        self.register_outputs({"grafanaUrl": self.grafana_url, "prometheusUrl": self.prometheus_url})
