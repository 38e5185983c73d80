"""ML workload releases: model serving (autoscaled, canary through Istio) and training jobs on accelerators."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.tenancy import SERVING_PRIORITY, TRAINING_PRIORITY, TeamInfo
from infra.accelerators import KINDS, POOL_LABEL
from infra.config import PlatformConfig, Resources, ServingWorkload, TrainingWorkload, VolumeConfig

RUN_AS = 10001
# The sidecar merges the app's metrics with its own here, outside mutual TLS: every workload port stays STRICT.
MERGED_METRICS_PORT = 15020
meta = k8s.meta.v1
core = k8s.core.v1


def tmp_volume() -> core.VolumeArgs:
    # The only emptyDir: scratch space for a read-only root filesystem, never model or training data.
    return core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="1Gi"))


def claim_volume(name: str, claim: str, read_only: bool = False) -> core.VolumeArgs:
    return core.VolumeArgs(name=name, persistent_volume_claim=core.PersistentVolumeClaimVolumeSourceArgs(claim_name=claim, read_only=read_only))


def container_resources(resources: Resources, accelerator: str, count: int) -> core.ResourceRequirementsArgs:
    memory = f"{int(resources.memory_gib * 1024)}Mi"
    requests = {"cpu": resources.cpu, "memory": memory}
    limits = {"memory": memory}
    kind = KINDS[accelerator]
    if kind.resource:
        # Extended resources cannot be overcommitted: request and limit are the same.
        requests[kind.resource] = limits[kind.resource] = str(count)
    return core.ResourceRequirementsArgs(requests=requests, limits=limits)


def placement(accelerator: str) -> dict[str, Any]:
    """Select the workload's node pool and tolerate exactly that pool's taint."""
    kind = KINDS[accelerator]
    return {
        "node_selector": {POOL_LABEL: accelerator},
        "tolerations": [core.TolerationArgs(**kind.toleration)] if kind.toleration else None,
    }


def restricted_container_security() -> core.SecurityContextArgs:
    return core.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=core.CapabilitiesArgs(drop=["ALL"]),
    )


def pod_security() -> core.PodSecurityContextArgs:
    return core.PodSecurityContextArgs(
        run_as_non_root=True, run_as_user=RUN_AS, run_as_group=RUN_AS, seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault")
    )


def env_vars(env: dict[str, str]) -> list[core.EnvVarArgs]:
    return [core.EnvVarArgs(name=k, value=v) for k, v in sorted(env.items())]


def _probe(w: ServingWorkload, period: int, failures: int) -> core.ProbeArgs:
    action = (
        {"http_get": core.HTTPGetActionArgs(path=w.probe.path, port="http")}
        if w.probe.path
        else {"tcp_socket": core.TCPSocketActionArgs(port="http")}
    )
    return core.ProbeArgs(**action, period_seconds=period, failure_threshold=failures, timeout_seconds=5)


def serving_pod_spec(w: ServingWorkload, image: str, service_account: str, claim: Optional[str]) -> core.PodSpecArgs:
    volumes = [tmp_volume()]
    mounts = [core.VolumeMountArgs(name="tmp", mount_path="/tmp")]
    if claim and w.model_volume:
        volumes.append(claim_volume("model", claim, read_only=True))
        mounts.append(core.VolumeMountArgs(name="model", mount_path=w.model_volume.mount_path, read_only=True))
    return core.PodSpecArgs(
        service_account_name=service_account,
        automount_service_account_token=False,
        priority_class_name=SERVING_PRIORITY,
        security_context=pod_security(),
        containers=[
            core.ContainerArgs(
                name="model",
                image=image,
                ports=[
                    core.ContainerPortArgs(name="http", container_port=w.port, protocol="TCP"),
                    core.ContainerPortArgs(name="metrics", container_port=w.metrics_port, protocol="TCP"),
                ],
                env=env_vars(w.env),
                resources=container_resources(w.resources, w.accelerator, w.accelerator_count),
                security_context=restricted_container_security(),
                volume_mounts=mounts,
                # Loading a model can take minutes; liveness only starts once the startup probe passed.
                startup_probe=_probe(w, 10, max(1, w.probe.startup_seconds // 10)),
                readiness_probe=_probe(w, 10, 3),
                liveness_probe=_probe(w, 20, 3),
            )
        ],
        volumes=volumes,
        topology_spread_constraints=[
            core.TopologySpreadConstraintArgs(
                max_skew=1,
                topology_key="topology.kubernetes.io/zone",
                when_unsatisfiable="ScheduleAnyway",
                label_selector=meta.LabelSelectorArgs(match_labels={"app": w.name}),
            )
        ],
        **placement(w.accelerator),
    )


def training_pod_spec(w: TrainingWorkload, service_account: str, claims: dict[str, str]) -> core.PodSpecArgs:
    env = {**w.env, "DATA_DIR": w.data.mount_path, "CHECKPOINT_DIR": w.checkpoints.mount_path}
    return core.PodSpecArgs(
        service_account_name=service_account,
        automount_service_account_token=False,
        priority_class_name=TRAINING_PRIORITY,
        restart_policy="Never",
        security_context=pod_security(),
        containers=[
            core.ContainerArgs(
                name="train",
                image=w.image,
                command=list(w.command),
                env=env_vars(env),
                resources=container_resources(w.resources, w.accelerator, w.accelerator_count),
                security_context=restricted_container_security(),
                volume_mounts=[core.VolumeMountArgs(name="tmp", mount_path="/tmp")]
                + [core.VolumeMountArgs(name=n, mount_path=getattr(w, n).mount_path) for n in sorted(claims)],
            )
        ],
        volumes=[tmp_volume()] + [claim_volume(n, c) for n, c in sorted(claims.items())],
        **placement(w.accelerator),
    )


def canary_split(w: ServingWorkload) -> list[tuple[str, int]]:
    """(subset, weight) pairs of the route; weights add up to 100."""
    return [("stable", 100 - w.canary.weight), ("canary", w.canary.weight)] if w.canary else [("stable", 100)]


def route_spec(w: ServingWorkload, host: str, hosts: list[str], gateway: str) -> dict[str, Any]:
    return {
        "hosts": hosts,
        "gateways": [gateway],
        "http": [
            {
                "name": w.name,
                "match": [{"uri": {"prefix": f"{w.path}/"}}, {"uri": {"exact": w.path}}],
                "rewrite": {"uri": "/"},
                "route": [
                    {"destination": {"host": host, "subset": subset, "port": {"number": 80}}, "weight": weight}
                    for subset, weight in canary_split(w)
                ],
                "timeout": "60s",
                "retries": {"attempts": 2, "perTryTimeout": "30s", "retryOn": "connect-failure,refused-stream,unavailable"},
            }
        ],
    }


def hpa_metrics(w: ServingWorkload) -> list[k8s.autoscaling.v2.MetricSpecArgs]:
    a, hpa = w.autoscaling, k8s.autoscaling.v2
    if a.custom_metric:
        return [
            hpa.MetricSpecArgs(
                type="Pods",
                pods=hpa.PodsMetricSourceArgs(
                    metric=hpa.MetricIdentifierArgs(name=a.custom_metric),
                    target=hpa.MetricTargetArgs(type="AverageValue", average_value=a.custom_metric_target),
                ),
            )
        ]
    return [
        hpa.MetricSpecArgs(
            type="Resource",
            resource=hpa.ResourceMetricSourceArgs(
                name="cpu", target=hpa.MetricTargetArgs(type="Utilization", average_utilization=a.target_cpu_utilization)
            ),
        )
    ]


@dataclass(frozen=True)
class WorkloadsArgs:
    config: PlatformConfig
    provider: k8s.Provider
    teams: dict[str, TeamInfo]
    gateway: str
    gateway_hosts: list[str]
    gateway_url: pulumi.Output[str]
    # What each kind of object needs first (and outlives it on destroy).
    istiod: pulumi.Resource  # sidecar injector, and the Istio CRDs through istio-base
    monitoring_crds: pulumi.Resource
    storage_classes: list[pulumi.Resource]
    node_pools: dict[str, pulumi.Resource]  # by pool name: cpu, nvidia, neuron
    priority_classes: dict[str, pulumi.Resource]


@dataclass(frozen=True)
class WorkloadInfo:
    name: str
    kind: str
    team: str
    namespace: str
    service: Optional[str]
    service_account: str
    url: Optional[pulumi.Output[str]]


class Workloads(pulumi.ComponentResource):
    workloads: dict[str, WorkloadInfo]

    def __init__(self, name: str, args: WorkloadsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:workloads:Workloads", name, None, opts)
        self._args = args
        self.workloads = {}
        for w in args.config.workloads:
            team = args.teams[w.team]
            info = self._serving(w, team) if isinstance(w, ServingWorkload) else self._training(w, team)
            self.workloads[f"{w.team}/{w.name}"] = info
        self.register_outputs({"workloads": sorted(self.workloads)})

    def _opts(self, team: TeamInfo, *deps: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self._args.provider, depends_on=[team.namespace_resource, *deps])

    def _pod_opts(self, team: TeamInfo, accelerator: str, priority: str) -> pulumi.ResourceOptions:
        """Pods start only once injection, their priority class and pool, quota and network policy are in place."""
        a = self._args
        return self._opts(team, a.istiod, a.priority_classes[priority], a.node_pools[accelerator], *team.guardrails)

    def _meta(self, name: str, team: TeamInfo, labels: dict[str, str], annotations: Optional[dict[str, str]] = None):
        return meta.ObjectMetaArgs(name=name, namespace=team.namespace, labels=labels, annotations=annotations)

    def _claim(self, resource_name: str, claim: str, team: TeamInfo, labels: dict, volume: VolumeConfig, opts) -> core.PersistentVolumeClaim:
        return core.PersistentVolumeClaim(
            resource_name,
            metadata=self._meta(claim, team, labels),
            spec=core.PersistentVolumeClaimSpecArgs(
                storage_class_name=volume.storage_class,
                access_modes=["ReadWriteMany"],
                resources=core.VolumeResourceRequirementsArgs(requests={"storage": f"{volume.size_gib}Gi"}),
            ),
            opts=opts,
        )

    def _serving(self, w: ServingWorkload, team: TeamInfo) -> WorkloadInfo:
        args = self._args
        opts, istio_opts = self._opts(team), self._opts(team, args.istiod)
        rn = f"{w.team}-{w.name}"
        labels = {"app": w.name, "app.kubernetes.io/name": w.name, "app.kubernetes.io/part-of": "ml-platform", "ml-platform.io/team": w.team}
        core.ServiceAccount(f"{rn}-sa", metadata=self._meta(w.name, team, labels), automount_service_account_token=False, opts=opts)
        claim = None
        if w.model_volume:
            claim = f"{w.name}-model"
            self._claim(f"{rn}-model", claim, team, labels, w.model_volume, self._opts(team, *args.storage_classes))

        versions = [("stable", w.image, w.autoscaling.min_replicas, w.autoscaling.max_replicas)]
        if w.canary:
            versions.append(("canary", w.canary.image, 1, w.canary_max_replicas))
        for version, image, min_replicas, max_replicas in versions:
            name = w.name if version == "stable" else f"{w.name}-canary"
            selector = {"app": w.name, "version": version}
            deployment = k8s.apps.v1.Deployment(
                f"{rn}-{version}",
                metadata=self._meta(name, team, {**labels, "version": version}),
                spec=k8s.apps.v1.DeploymentSpecArgs(
                    replicas=min_replicas,
                    selector=meta.LabelSelectorArgs(match_labels=selector),
                    strategy=k8s.apps.v1.DeploymentStrategyArgs(
                        type="RollingUpdate", rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1)
                    ),
                    template=core.PodTemplateSpecArgs(
                        metadata=meta.ObjectMetaArgs(
                            labels={**labels, "version": version},
                            annotations={"prometheus.io/scrape": "true", "prometheus.io/port": str(w.metrics_port), "prometheus.io/path": "/metrics"},
                        ),
                        spec=serving_pod_spec(w, image, w.name, claim),
                    ),
                ),
                # Replicas belong to the HPA once created.
                opts=pulumi.ResourceOptions.merge(
                    self._pod_opts(team, w.accelerator, SERVING_PRIORITY), pulumi.ResourceOptions(ignore_changes=["spec.replicas"])
                ),
            )
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{rn}-{version}",
                metadata=self._meta(name, team, labels),
                spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                    scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(api_version="apps/v1", kind="Deployment", name=name),
                    min_replicas=min_replicas,
                    max_replicas=max_replicas,
                    metrics=hpa_metrics(w),
                    behavior=k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs(
                        scale_down=k8s.autoscaling.v2.HPAScalingRulesArgs(stabilization_window_seconds=300)
                    ),
                ),
                opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[deployment])),
            )
            k8s.policy.v1.PodDisruptionBudget(
                f"{rn}-{version}",
                metadata=self._meta(name, team, labels),
                spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(max_unavailable=1, selector=meta.LabelSelectorArgs(match_labels=selector)),
                opts=opts,
            )

        core.Service(
            f"{rn}-svc",
            metadata=self._meta(w.name, team, labels),
            spec=core.ServiceSpecArgs(
                type="ClusterIP",
                selector={"app": w.name},
                ports=[
                    core.ServicePortArgs(name="http", port=80, target_port="http", protocol="TCP"),
                    core.ServicePortArgs(name="http-monitoring", port=MERGED_METRICS_PORT, target_port=MERGED_METRICS_PORT, protocol="TCP"),
                ],
            ),
            opts=opts,
        )
        host = f"{w.name}.{team.namespace}.svc.cluster.local"
        k8s.apiextensions.CustomResource(
            f"{rn}-route",
            api_version="networking.istio.io/v1",
            kind="VirtualService",
            metadata=self._meta(w.name, team, labels),
            spec=route_spec(w, host, args.gateway_hosts, args.gateway),
            opts=istio_opts,
        )
        k8s.apiextensions.CustomResource(
            f"{rn}-destination",
            api_version="networking.istio.io/v1",
            kind="DestinationRule",
            metadata=self._meta(w.name, team, labels),
            spec={
                "host": host,
                "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                "subsets": [{"name": subset, "labels": {"version": subset}} for subset, _ in canary_split(w)],
            },
            opts=istio_opts,
        )
        k8s.apiextensions.CustomResource(
            f"{rn}-metrics",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=self._meta(w.name, team, labels),
            spec={
                "selector": {"matchLabels": {"app.kubernetes.io/name": w.name}},
                "namespaceSelector": {"matchNames": [team.namespace]},
                "endpoints": [{"port": "http-monitoring", "path": "/stats/prometheus", "interval": "30s"}],
            },
            opts=self._opts(team, args.monitoring_crds),
        )
        url = args.gateway_url.apply(lambda base: f"{base}{w.path}")
        return WorkloadInfo(w.name, "serving", w.team, team.namespace, w.name, w.name, url)

    def _training(self, w: TrainingWorkload, team: TeamInfo) -> WorkloadInfo:
        rn = f"{w.team}-{w.name}"
        opts, claim_opts = self._opts(team), self._opts(team, *self._args.storage_classes)
        labels = {"app": w.name, "app.kubernetes.io/name": w.name, "app.kubernetes.io/part-of": "ml-platform", "ml-platform.io/team": w.team}
        core.ServiceAccount(f"{rn}-sa", metadata=self._meta(w.name, team, labels), automount_service_account_token=False, opts=opts)
        claims = {"data": f"{w.name}-data", "checkpoints": f"{w.name}-checkpoints"}
        for volume_name, claim in claims.items():
            self._claim(f"{rn}-{volume_name}", claim, team, labels, getattr(w, volume_name), claim_opts)
        job_spec = k8s.batch.v1.JobSpecArgs(
            backoff_limit=w.backoff_limit,
            active_deadline_seconds=w.active_deadline_hours * 3600,
            ttl_seconds_after_finished=w.ttl_after_finished_hours * 3600,
            template=core.PodTemplateSpecArgs(
                # A running job's node is never consolidated away under it.
                metadata=meta.ObjectMetaArgs(labels=labels, annotations={"karpenter.sh/do-not-disrupt": "true"}),
                spec=training_pod_spec(w, w.name, claims),
            ),
        )
        if w.schedule:
            k8s.batch.v1.CronJob(
                f"{rn}-cron",
                metadata=self._meta(w.name, team, labels),
                spec=k8s.batch.v1.CronJobSpecArgs(
                    schedule=w.schedule,
                    concurrency_policy="Forbid",
                    successful_jobs_history_limit=3,
                    failed_jobs_history_limit=3,
                    job_template=k8s.batch.v1.JobTemplateSpecArgs(metadata=meta.ObjectMetaArgs(labels=labels), spec=job_spec),
                ),
                opts=self._pod_opts(team, w.accelerator, TRAINING_PRIORITY),
            )
        else:
            k8s.batch.v1.Job(
                f"{rn}-job",
                # Pulumi would otherwise wait for the whole training run before finishing `up`.
                metadata=self._meta(f"{w.name}-{w.run_id}", team, labels, {"pulumi.com/skipAwait": "true"}),
                spec=job_spec,
                opts=self._pod_opts(team, w.accelerator, TRAINING_PRIORITY),
            )
        return WorkloadInfo(w.name, "training", w.team, team.namespace, None, w.name, None)
