"""A GPU model service deployed by an app team into its namespace, from the platform's outputs."""
from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

SUPPORTED_MAJOR = 3
# gateway.attach.apiVersion of contract 3.x: a resource's type must be known before the outputs resolve.
ROUTE_API_VERSION = "gateway.networking.k8s.io/v1"


def check_contract(version: str) -> str:
    if int(version.split(".")[0]) != SUPPORTED_MAJOR:
        raise pulumi.RunError(f"this program reads platform outputs schemaVersion {SUPPORTED_MAJOR}.x, the platform publishes {version}")
    return version


class ModelService(pulumi.ComponentResource):
    """Deployment on the platform's GPU pool, Service, autoscaler, disruption budget and an HTTPRoute on the shared gateway."""

    def __init__(self, name: str, platform: pulumi.StackReference, team: str, image: str, path: str, opts=None):
        super().__init__("ml-app-team:index:ModelService", name, None, opts)
        version = platform.require_output("schemaVersion").apply(check_contract)
        provider = k8s.Provider(f"{name}-platform", kubeconfig=platform.require_output("kubeconfig"), opts=pulumi.ResourceOptions(parent=self))
        # Every read goes through the contract check.
        outputs = pulumi.Output.all(
            version,
            platform.require_output("teams"),
            platform.require_output("nodePools"),
            platform.require_output("gateway"),
            platform.require_output("scheduling"),
        )
        namespace = outputs.apply(lambda o: o[1][team]["namespace"])
        gpu = outputs.apply(lambda o: o[2]["nvidia"])
        gateway = outputs.apply(lambda o: o[3])
        priority = outputs.apply(lambda o: o[4]["servingPriorityClass"])
        labels = {"app": name, "app.kubernetes.io/name": name}
        opts_k8s = pulumi.ResourceOptions(parent=self, provider=provider)
        meta = lambda: k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=labels)  # noqa: E731

        resources = gpu.apply(
            lambda pool: {
                "requests": {"cpu": "2", "memory": "8Gi", pool["extendedResource"]: "1"},
                "limits": {"memory": "8Gi", pool["extendedResource"]: "1"},
            }
        )
        k8s.apps.v1.Deployment(
            name,
            metadata=meta(),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=2,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        priority_class_name=priority,
                        automount_service_account_token=False,
                        node_selector=gpu.apply(lambda pool: pool["nodeSelector"]),
                        tolerations=gpu.apply(lambda pool: [pool["toleration"]] if "toleration" in pool else []),
                        security_context=k8s.core.v1.PodSecurityContextArgs(
                            run_as_non_root=True, run_as_user=10001, seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")
                        ),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="model",
                                image=image,
                                ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=8080)],
                                resources=resources,
                                # Up to ten minutes to load the model before liveness counts.
                                startup_probe=k8s.core.v1.ProbeArgs(
                                    http_get=k8s.core.v1.HTTPGetActionArgs(path="/healthz", port="http"), period_seconds=10, failure_threshold=60
                                ),
                                readiness_probe=k8s.core.v1.ProbeArgs(http_get=k8s.core.v1.HTTPGetActionArgs(path="/healthz", port="http")),
                                liveness_probe=k8s.core.v1.ProbeArgs(http_get=k8s.core.v1.HTTPGetActionArgs(path="/healthz", port="http")),
                                security_context=k8s.core.v1.SecurityContextArgs(
                                    allow_privilege_escalation=False,
                                    read_only_root_filesystem=True,
                                    run_as_non_root=True,
                                    capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
                                ),
                            )
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(opts_k8s, pulumi.ResourceOptions(ignore_changes=["spec.replicas"])),
        )
        k8s.core.v1.Service(
            name,
            metadata=meta(),
            spec=k8s.core.v1.ServiceSpecArgs(selector=labels, ports=[k8s.core.v1.ServicePortArgs(name="http", port=80, target_port="http")]),
            opts=opts_k8s,
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            name,
            metadata=meta(),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(api_version="apps/v1", kind="Deployment", name=name),
                min_replicas=2,
                max_replicas=6,
                metrics=[
                    k8s.autoscaling.v2.MetricSpecArgs(
                        type="Resource",
                        resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                            name="cpu", target=k8s.autoscaling.v2.MetricTargetArgs(type="Utilization", average_utilization=70)
                        ),
                    )
                ],
            ),
            opts=opts_k8s,
        )
        k8s.policy.v1.PodDisruptionBudget(
            name,
            metadata=meta(),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(max_unavailable=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels)),
            opts=opts_k8s,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-route",
            api_version=ROUTE_API_VERSION,
            kind="HTTPRoute",
            metadata=meta(),
            spec=gateway.apply(lambda g: route(name, g, path)),
            opts=opts_k8s,
        )
        self.url = gateway.apply(lambda g: f"{g['url']}{path}")
        self.register_outputs({"url": self.url})


def route(name: str, gateway: dict[str, Any], path: str) -> dict[str, Any]:
    """The service's path on the platform's gateway, attached the way the contract says."""
    spec: dict[str, Any] = {
        "parentRefs": gateway["attach"]["parentRefs"],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
                "backendRefs": [{"name": name, "port": 80}],
            }
        ],
    }
    if gateway["hosts"] != ["*"]:
        spec["hostnames"] = gateway["hosts"]
    return spec


def model_endpoints(workloads: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The platform's model endpoints: URL, and the stable and canary model versions behind each."""
    return {key: {"url": w["url"], **w["models"]} for key, w in sorted(workloads.items()) if w["kind"] == "serving" and w.get("models")}


def describe(endpoints: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for key, e in endpoints.items():
        # Optional keys of the contract are absent, never null: read them with .get(). Numbers arrive as floats.
        canary = f", canary {e['canary']} at {e['canaryWeight']:g}%" if e.get("canary") else ""
        lines.append(f"{key}: {e['url']} serves {e['stable']}{canary}")
    return lines
