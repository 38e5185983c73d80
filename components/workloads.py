"""ML workloads: the model lifecycle (bootstrap, compile for Neuron), serving versions behind a weighted
Gateway API route, and training jobs that publish to the team's model store."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from infra.config import ModelRef, PlatformConfig, Resources, ServingWorkload, Track, TrainingWorkload, VolumeConfig
from infra.lib import headroom, model_store, timing
from infra.lib.accelerators import GPU_DEVICE_CLASS, KINDS, POOL_LABEL
from infra.lib.conventions import MODEL_STORE_CLAIM, MODEL_STORE_PATH, SERVING_PRIORITY, TRAINING_PRIORITY
from infra.lib.gang import submission
from infra.lib.interfaces import GatewayInfo, TeamInfo
from infra.lib.model_source import registry_model_source
from infra.lib.routes import weighted_route

RUN_AS = 10001
INSTANCE_FAMILY = "karpenter.k8s.aws/instance-family"
# Batch pods serve no traffic; a sidecar would keep a finished Job running and sit in the path of its downloads
# and of gloo/NCCL traffic between workers.
NO_SIDECAR = {"sidecar.istio.io/inject": "false"}
meta = k8s.meta.v1
core = k8s.core.v1


def tmp_volume() -> core.VolumeArgs:
    # The only emptyDir: scratch space for a read-only root filesystem, never model or training data.
    return core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="1Gi"))


def claim_volume(name: str, claim: str, read_only: bool = False) -> core.VolumeArgs:
    return core.VolumeArgs(name=name, persistent_volume_claim=core.PersistentVolumeClaimVolumeSourceArgs(claim_name=claim, read_only=read_only))


def model_store_volume(read_only: bool) -> tuple[core.VolumeArgs, core.VolumeMountArgs]:
    return (
        claim_volume("models", MODEL_STORE_CLAIM, read_only=read_only),
        core.VolumeMountArgs(name="models", mount_path=MODEL_STORE_PATH, read_only=read_only),
    )


def model_dir(model: ModelRef) -> str:
    return f"{MODEL_STORE_PATH}/{model.name}/{model.version}"


# The pod's claim on its GPUs when they come through DRA (accelerators.gpuOperator.dra).
GPU_CLAIM = "gpu"


def container_resources(resources: Resources, accelerator: str, count: int, claimed: bool = False) -> core.ResourceRequirementsArgs:
    """`claimed`: the accelerators come through the pod's DRA claim instead of the device plugin's extended resource."""
    memory = f"{int(resources.memory_gib * 1024)}Mi"
    requests = {"cpu": resources.cpu, "memory": memory}
    limits = {"memory": memory}
    kind = KINDS[accelerator]
    if kind.resource and not claimed:
        # Extended resources cannot be overcommitted: request and limit are the same.
        requests[kind.resource] = limits[kind.resource] = str(count)
    return core.ResourceRequirementsArgs(requests=requests, limits=limits, claims=[core.ResourceClaimArgs(name=GPU_CLAIM)] if claimed else None)


def gpu_claim_template_spec(count: int) -> dict[str, Any]:
    return {"spec": {"devices": {"requests": [{"name": GPU_CLAIM, "exactly": {"deviceClassName": GPU_DEVICE_CLASS, "count": count}}]}}}


def pod_claims(template: Optional[str]) -> dict[str, Any]:
    return {"resource_claims": [core.PodResourceClaimArgs(name=GPU_CLAIM, resource_claim_template_name=template)]} if template else {}


SMALL = core.ResourceRequirementsArgs(requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "256Mi"})


def placement(accelerator: str, neuron_target: Optional[str] = None) -> dict[str, Any]:
    """Select the workload's node pool (and Neuron instance family) and tolerate exactly that pool's taint."""
    kind = KINDS[accelerator]
    selector = {POOL_LABEL: accelerator}
    if neuron_target:
        selector[INSTANCE_FAMILY] = neuron_target
    return {
        "node_selector": selector,
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


# Pulumi creates the object and moves on; the cluster (and its alerts) take it from there. Everything of the model
# lifecycle and serving carries it: a download, a compile or a first rollout on a new GPU node takes longer than a
# deploy should, and its readiness depends on work outside the graph's order (docs/operators/first-deploy.md).
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}


def _probe(w: ServingWorkload, period: int, failures: int) -> core.ProbeArgs:
    action = (
        {"http_get": core.HTTPGetActionArgs(path=w.probe.path, port="http")}
        if w.probe.path
        else {"tcp_socket": core.TCPSocketActionArgs(port="http")}
    )
    return core.ProbeArgs(**action, period_seconds=period, failure_threshold=failures, timeout_seconds=5)


def modelstore_command(action: str, model: ModelRef, *extra: str) -> list[str]:
    """The model-store protocol every serving image provides (examples/sentiment-service/modelstore.py)."""
    return ["python", "-m", "modelstore", action, "--store", MODEL_STORE_PATH, "--model", model.name, "--version", model.version, *extra]


def wait_for_model(w: ServingWorkload, track: Track) -> core.ContainerArgs:
    """Holds the pod until its model (and its Neuron artifact) is in the store, saying so once, clearly."""
    target = ["--target", w.neuron_target] if w.neuron_target else []
    volume_mount = model_store_volume(read_only=True)[1]
    return core.ContainerArgs(
        name="wait-for-model",
        image=track.image,
        command=modelstore_command("wait", track.model, *target, "--timeout-seconds", str(timing.NEURON_COMPILE + timing.MODEL_DOWNLOAD)),
        resources=SMALL,
        security_context=restricted_container_security(),
        volume_mounts=[volume_mount, core.VolumeMountArgs(name="tmp", mount_path="/tmp")],
    )


def serving_pod_spec(
    w: ServingWorkload, track: Track, service_account: str, claim_template: Optional[str] = None, registry_image: Optional[str] = None
) -> core.PodSpecArgs:
    volumes = [tmp_volume()]
    mounts = [core.VolumeMountArgs(name="tmp", mount_path="/tmp")]
    env = dict(w.env)
    init_containers = []
    if track.model:
        volume, mount = model_store_volume(read_only=True)
        volumes.append(volume)
        mounts.append(mount)
        env["MODEL_DIR"] = model_dir(track.model)
        init_containers.append(wait_for_model(w, track))
    if track.registry:
        source = registry_model_source(track.registry, w.team, registry_image)
        volumes.append(source.volume)
        mounts.append(source.mount)
        env["MODEL_DIR"] = source.model_dir
        init_containers.append(source.init_container)
    if w.neuron_target:
        env["NEURON_TARGET"] = w.neuron_target
    return core.PodSpecArgs(
        service_account_name=service_account,
        automount_service_account_token=False,
        priority_class_name=SERVING_PRIORITY,
        security_context=pod_security(),
        init_containers=init_containers or None,
        containers=[
            core.ContainerArgs(
                name="model",
                image=track.image,
                ports=[
                    core.ContainerPortArgs(name="http", container_port=w.port, protocol="TCP"),
                    core.ContainerPortArgs(name="metrics", container_port=w.metrics_port, protocol="TCP"),
                ],
                env=env_vars(env),
                resources=container_resources(w.resources, w.accelerator, w.accelerator_count, claimed=bool(claim_template)),
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
                label_selector=meta.LabelSelectorArgs(match_labels={"app": w.name, "version": track.role}),
            )
        ],
        **pod_claims(claim_template),
        **placement(w.accelerator, w.neuron_target),
    )


def training_pod_spec(
    cfg: PlatformConfig,
    w: TrainingWorkload,
    service_account: str,
    claims: dict[str, str],
    job_name: str,
    scheduler_name: Optional[str] = None,
    claim_template: Optional[str] = None,
) -> core.PodSpecArgs:
    env = {**w.env, "DATA_DIR": w.data.mount_path, "CHECKPOINT_DIR": w.checkpoints.mount_path}
    mounts = [core.VolumeMountArgs(name="tmp", mount_path="/tmp")] + [
        core.VolumeMountArgs(name=n, mount_path=getattr(w, n).mount_path) for n in sorted(claims)
    ]
    volumes = [tmp_volume()] + [claim_volume(n, c) for n, c in sorted(claims.items())]
    if w.output:
        volume, mount = model_store.volume(cfg, w.team, publish=True)
        volumes.append(volume)
        mounts.append(mount)
        env.update(MODEL_STORE=MODEL_STORE_PATH, OUTPUT_MODEL=w.output.name, OUTPUT_VERSION=w.output.version, JOB_NAME=job_name,
                   **model_store.publisher_env(cfg, w.team))
    return core.PodSpecArgs(
        service_account_name=service_account,
        automount_service_account_token=False,
        priority_class_name=TRAINING_PRIORITY,
        scheduler_name=scheduler_name,
        restart_policy="Never",
        security_context=pod_security(),
        containers=[
            core.ContainerArgs(
                name="train",
                image=w.image,
                command=list(w.command),
                env=env_vars(env),
                resources=container_resources(w.resources, w.accelerator, w.accelerator_count, claimed=bool(claim_template)),
                security_context=restricted_container_security(),
                volume_mounts=mounts,
            )
        ],
        volumes=volumes,
        **pod_claims(claim_template),
        **placement(w.accelerator),
    )


def deployment_name(w: ServingWorkload, track: Track) -> str:
    return w.name if track.role == "stable" else f"{w.name}-canary"


def route_spec(w: ServingWorkload, parent_ref: dict[str, str], hosts: list[str]) -> dict[str, Any]:
    """The workload's path on the shared Gateway, split between its versions by weight."""
    backends = [{"name": deployment_name(w, t), "port": 80, "weight": t.weight} for t in w.tracks()]
    return weighted_route(w.name, w.path, parent_ref, hosts, backends, timeout="60s")


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
    gateway: GatewayInfo
    # What each kind of object needs first (and outlives it on destroy).
    istiod: pulumi.Resource  # sidecar injector
    gateway_api_crds: pulumi.Resource
    metrics_adapter: pulumi.Resource  # serves custom.metrics.k8s.io
    vertical_pod_autoscaler: Optional[pulumi.Resource]  # its CRD and controllers; None when the VPA is off
    storage_classes: list[pulumi.Resource]
    model_stores: dict[str, pulumi.Resource]  # by team: the store's claim
    node_pools: dict[str, pulumi.Resource]  # by pool name: cpu, nvidia, neuron
    priority_classes: dict[str, pulumi.Resource]
    gpu_claims: Optional[pulumi.Resource]  # the NVIDIA DRA driver and its DeviceClass, when GPUs are claimed through DRA
    queues: dict[str, pulumi.Resource]  # by team: where its training runs are submitted


@dataclass(frozen=True)
class WorkloadInfo:
    name: str
    kind: str
    team: str
    namespace: str
    service: Optional[str]
    service_account: str
    url: Optional[pulumi.Output[str]]
    models: Optional[dict[str, Any]] = None  # serving: the stable and canary model versions and the canary's weight


class Workloads(pulumi.ComponentResource):
    workloads: dict[str, WorkloadInfo]
    # By "team/workload": a distributed run's service account and claims; the training component submits it as a TrainJob.
    distributed: dict[str, list[pulumi.Resource]]

    def __init__(self, name: str, args: WorkloadsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:workloads:Workloads", name, None, opts)
        self._args = args
        # Lifecycle jobs are shared by every workload of a team that uses the same model version.
        self._bootstraps: dict[tuple[str, str], k8s.batch.v1.Job] = {}
        self._compiles: dict[tuple[str, str, str], k8s.batch.v1.Job] = {}
        self.workloads = {}
        # With serving.mode kserve, the serving workloads' InferenceServices are components/serving.py's; their
        # models' lifecycle jobs stay here, by workload and track (what each InferenceService starts after).
        self.model_jobs: dict[str, dict[str, list[pulumi.Resource]]] = {}
        self.distributed = {}
        for w in args.config.workloads:
            team = args.teams[w.team]
            if isinstance(w, ServingWorkload) and args.config.serving.kserve:
                self.model_jobs[f"{w.team}/{w.name}"] = {t.role: self._model_ready(w, team, t) for t in w.tracks()}
                continue
            info = self._serving(w, team) if isinstance(w, ServingWorkload) else self._training(w, team)
            self.workloads[f"{w.team}/{w.name}"] = info
        self.register_outputs({"workloads": sorted(self.workloads)})

    def _opts(self, team: TeamInfo, *deps: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self._args.provider, depends_on=[team.namespace_resource, *deps])

    def _pod_opts(self, team: TeamInfo, accelerator: str, priority: Optional[str], *deps: pulumi.Resource) -> pulumi.ResourceOptions:
        """Pods start only once injection, their priority class and pool, quota and network policy are in place."""
        a = self._args
        priority_class = [a.priority_classes[priority]] if priority else []
        return self._opts(team, a.istiod, *priority_class, a.node_pools[accelerator], *team.guardrails, *deps)

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

    def _gpu_claim(self, rn: str, w: ServingWorkload | TrainingWorkload, team: TeamInfo, labels: dict[str, str]) -> tuple[Optional[str], list[pulumi.Resource]]:
        """With DRA, each pod of an NVIDIA workload claims its GPUs from a template of the workload's own."""
        if self._args.gpu_claims is None or w.accelerator != "nvidia":
            return None, []
        name = f"{w.name}-gpu"
        template = k8s.resource.v1.ResourceClaimTemplate(
            f"{rn}-gpu-claim",
            metadata=self._meta(name, team, labels),
            spec=gpu_claim_template_spec(w.accelerator_count),
            opts=self._opts(team, self._args.gpu_claims),
        )
        return name, [template]

    # -- the model lifecycle ------------------------------------------------------------------
    def _lifecycle_job(self, resource_name: str, job_name: str, team: TeamInfo, image: str, command: list[str], accelerator: str,
                       resources: core.ResourceRequirementsArgs, neuron_target: Optional[str], seconds: int,
                       *deps: pulumi.Resource) -> k8s.batch.v1.Job:
        labels = {"app.kubernetes.io/part-of": "ml-platform", "app.kubernetes.io/component": "model-lifecycle", "ml-platform.io/team": team.name}
        cfg = self._args.config
        volume, mount = model_store.volume(cfg, team.name, publish=True)
        # Hugging Face caches under /tmp: the root filesystem is read-only.
        env = {"HF_HOME": "/tmp/hf", **model_store.publisher_env(cfg, team.name)}
        # Through the team's queue like any Job of its namespace, ahead of training: serving waits for it.
        via = submission(self._args.config.scheduling.gang, team.name, priority=SERVING_PRIORITY)
        return k8s.batch.v1.Job(
            resource_name,
            # Not awaited: the serving pods wait for the model themselves (`wait-for-model`), KubeJobFailed reports a failure.
            metadata=self._meta(job_name, team, {**labels, **via.labels}, {**SKIP_AWAIT, **via.run_annotations}),
            spec=k8s.batch.v1.JobSpecArgs(
                suspend=via.suspend,
                backoff_limit=3,
                active_deadline_seconds=seconds,
                ttl_seconds_after_finished=24 * 3600,
                template=core.PodTemplateSpecArgs(
                    # Consolidation would throw away a download or a half-done compile.
                    metadata=meta.ObjectMetaArgs(labels=labels, annotations={"karpenter.sh/do-not-disrupt": "true", **NO_SIDECAR, **via.pod_annotations}),
                    spec=core.PodSpecArgs(
                        service_account_name=team.service_account,
                        automount_service_account_token=False,
                        scheduler_name=via.scheduler_name,
                        restart_policy="Never",
                        security_context=pod_security(),
                        containers=[
                            core.ContainerArgs(
                                name="lifecycle",
                                image=image,
                                command=command,
                                env=env_vars(env),
                                resources=resources,
                                security_context=restricted_container_security(),
                                volume_mounts=[mount, core.VolumeMountArgs(name="tmp", mount_path="/tmp")],
                            )
                        ],
                        volumes=[volume, core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="20Gi"))],
                        **placement(accelerator, neuron_target),
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(
                self._pod_opts(team, accelerator, None, self._args.model_stores[team.name], self._args.queues[team.name], *deps),
                via.options(),
            ),
        )

    def _bootstrap(self, team: TeamInfo, model: ModelRef, image: str) -> k8s.batch.v1.Job:
        """Downloads a public model at its pinned revision into the store (through the NAT), once per version."""
        key = (team.name, model.key)
        if key not in self._bootstraps:
            ext = model.external
            self._bootstraps[key] = self._lifecycle_job(
                f"{team.name}-bootstrap-{model.name}-{model.version}",
                f"bootstrap-{model.name}-{model.version}",
                team,
                image,
                modelstore_command("bootstrap", model, "--hub-id", ext.hub_id, "--revision", ext.revision),
                "cpu",
                core.ResourceRequirementsArgs(requests={"cpu": "1", "memory": "4Gi"}, limits={"memory": "4Gi"}),
                None,
                timing.job_done("cpu", timing.MODEL_DOWNLOAD),
            )
        return self._bootstraps[key]

    def _compile(self, team: TeamInfo, model: ModelRef, target: str, image: str, *deps: pulumi.Resource) -> k8s.batch.v1.Job:
        """Compiles a model version for a Neuron target on that target's instances; a no-op when already compiled."""
        key = (team.name, model.key, target)
        if key not in self._compiles:
            self._compiles[key] = self._lifecycle_job(
                f"{team.name}-compile-{model.name}-{model.version}-{target}",
                f"compile-{model.name}-{model.version}-{target}",
                team,
                image,
                modelstore_command("compile", model, "--target", target),
                "neuron",
                container_resources(Resources(cpu=headroom.COMPILE_CPU, memory_gib=headroom.COMPILE_MEMORY_GIB), "neuron", headroom.COMPILE_NEURON_CORES),
                target,
                timing.job_done("neuron", timing.NEURON_COMPILE),
                *deps,
            )
        return self._compiles[key]

    def _model_ready(self, w: ServingWorkload, team: TeamInfo, track: Track) -> list[pulumi.Resource]:
        """The jobs that put the track's model (and its compiled artifact) into the store, if the stack runs any."""
        if not track.model:
            return []
        jobs: list[pulumi.Resource] = [self._bootstrap(team, track.model, track.image)] if track.model.external else []
        if w.neuron_target:
            jobs = [self._compile(team, track.model, w.neuron_target, track.image, *jobs)]
        return jobs

    # -- serving ------------------------------------------------------------------------------
    def _serving(self, w: ServingWorkload, team: TeamInfo) -> WorkloadInfo:
        args = self._args
        opts = self._opts(team)
        rn = f"{w.team}-{w.name}"
        labels = {"app": w.name, "app.kubernetes.io/name": w.name, "app.kubernetes.io/part-of": "ml-platform", "ml-platform.io/team": w.team}
        core.ServiceAccount(f"{rn}-sa", metadata=self._meta(w.name, team, labels), automount_service_account_token=False, opts=opts)
        model_stores = [args.model_stores[w.team]] if w.models() else []
        claim_template, claim = self._gpu_claim(rn, w, team, labels)
        for track in w.tracks():
            name = deployment_name(w, track)
            selector = {"app": w.name, "version": track.role}
            source = track.model.key.replace("@", "-") if track.model else f"{track.registry.model}-{track.registry.selector}" if track.registry else None
            track_labels = {**labels, "version": track.role, **({"ml-platform.io/model": source} if source else {})}
            deployment = k8s.apps.v1.Deployment(
                f"{rn}-{track.role}",
                metadata=self._meta(name, team, track_labels, SKIP_AWAIT),
                spec=k8s.apps.v1.DeploymentSpecArgs(
                    replicas=track.min_replicas,
                    selector=meta.LabelSelectorArgs(match_labels=selector),
                    strategy=k8s.apps.v1.DeploymentStrategyArgs(
                        type="RollingUpdate", rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1)
                    ),
                    template=core.PodTemplateSpecArgs(
                        metadata=meta.ObjectMetaArgs(
                            labels=track_labels,
                            # Where the app's metrics are: the injector hands this to the sidecar agent, which merges
                            # them into its endpoint (outside mutual TLS, so every workload port stays STRICT).
                            annotations={"prometheus.io/scrape": "true", "prometheus.io/port": str(w.metrics_port), "prometheus.io/path": "/metrics"},
                        ),
                        spec=serving_pod_spec(w, track, w.name, claim_template, args.config.registry.image),
                    ),
                ),
                # Replicas belong to the HPA once created.
                opts=pulumi.ResourceOptions.merge(
                    self._pod_opts(team, w.accelerator, SERVING_PRIORITY, *model_stores, *claim, *self._model_ready(w, team, track)),
                    pulumi.ResourceOptions(ignore_changes=["spec.replicas"]),
                ),
            )
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{rn}-{track.role}",
                metadata=self._meta(name, team, labels),
                spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                    scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(api_version="apps/v1", kind="Deployment", name=name),
                    min_replicas=track.min_replicas,
                    max_replicas=track.max_replicas,
                    metrics=hpa_metrics(w),
                    behavior=k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs(
                        scale_down=k8s.autoscaling.v2.HPAScalingRulesArgs(stabilization_window_seconds=300)
                    ),
                ),
                # A custom metric is read through the adapter's APIService: without it the autoscaler never scales.
                opts=pulumi.ResourceOptions.merge(
                    opts, pulumi.ResourceOptions(depends_on=[deployment, *([args.metrics_adapter] if w.autoscaling.custom_metric else [])])
                ),
            )
            if args.vertical_pod_autoscaler:
                k8s.apiextensions.CustomResource(
                    f"{rn}-{track.role}",
                    api_version="autoscaling.k8s.io/v1",
                    kind="VerticalPodAutoscaler",
                    metadata=self._meta(name, team, labels),
                    spec=vpa_spec(name, w.autoscaling.vpa_update_mode),
                    opts=self._opts(team, args.vertical_pod_autoscaler),
                )
            k8s.policy.v1.PodDisruptionBudget(
                f"{rn}-{track.role}",
                metadata=self._meta(name, team, labels),
                spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(max_unavailable=1, selector=meta.LabelSelectorArgs(match_labels=selector)),
                opts=opts,
            )
            # One Service per version: the route's weights split traffic between them. Its pods start late (a new
            # node, the model): awaited, a replacement of the Service would wait for them and could time out.
            core.Service(
                f"{rn}-{track.role}-svc",
                metadata=self._meta(name, team, {**labels, "version": track.role}, SKIP_AWAIT),
                spec=core.ServiceSpecArgs(
                    type="ClusterIP",
                    selector=selector,
                    ports=[core.ServicePortArgs(name="http", port=80, target_port="http", protocol="TCP")],
                ),
                opts=opts,
            )
        k8s.apiextensions.CustomResource(
            f"{rn}-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata=self._meta(w.name, team, labels),
            spec=route_spec(w, args.gateway.parent_ref, args.gateway.hosts),
            opts=self._opts(team, args.gateway_api_crds),
        )
        url = args.gateway.url.apply(lambda base: f"{base}{w.path}")
        tracks = {t.role: t for t in w.tracks()}
        models = None
        if any(t.model or t.registry for t in tracks.values()):
            canary = tracks.get("canary")
            key = lambda t: t.model.key if t and t.model else None  # noqa: E731
            registered = lambda t: {"model": t.registry.model, "version": t.registry.version, "alias": t.registry.alias} if t and t.registry else None  # noqa: E731
            models = {
                "stable": key(tracks["stable"]),
                "canary": key(canary),
                "canaryWeight": canary.weight if canary else 0,
                "stableRegistry": registered(tracks["stable"]),
                "canaryRegistry": registered(canary),
            }
        return WorkloadInfo(w.name, "serving", w.team, team.namespace, w.name, w.name, url, models)

    # -- training -----------------------------------------------------------------------------
    def _training(self, w: TrainingWorkload, team: TeamInfo) -> WorkloadInfo:
        args = self._args
        rn = f"{w.team}-{w.name}"
        opts, claim_opts = self._opts(team), self._opts(team, *args.storage_classes)
        labels = {"app": w.name, "app.kubernetes.io/name": w.name, "app.kubernetes.io/part-of": "ml-platform", "ml-platform.io/team": w.team}
        account = core.ServiceAccount(f"{rn}-sa", metadata=self._meta(w.name, team, labels), automount_service_account_token=False, opts=opts)
        claims = {"data": f"{w.name}-data", "checkpoints": f"{w.name}-checkpoints"}
        volumes = [self._claim(f"{rn}-{volume_name}", claim, team, labels, getattr(w, volume_name), claim_opts) for volume_name, claim in claims.items()]
        if w.workers > 1:
            self.distributed[f"{w.team}/{w.name}"] = [account, *volumes]
            return WorkloadInfo(w.name, "training", w.team, team.namespace, None, w.name, None)
        store = [args.model_stores[w.team]] if w.output else []
        job_name = w.name if w.schedule else f"{w.name}-{w.run_id}"
        # Submitted through the team's queue, and started by the gang scheduler when all of it fits.
        claim_template, claim = self._gpu_claim(rn, w, team, labels)
        # What a run's submission waits for: its queue, its claim template.
        submitted_after = [args.queues[w.team], *claim]
        via = submission(args.config.scheduling.gang, w.team)
        run_labels = {**labels, **via.labels}
        admitted = via.options()
        # A running job's node is never consolidated away under it.
        pod_metadata = meta.ObjectMetaArgs(labels=labels, annotations={"karpenter.sh/do-not-disrupt": "true", **NO_SIDECAR, **via.pod_annotations})

        def job_spec() -> k8s.batch.v1.JobSpecArgs:
            return k8s.batch.v1.JobSpecArgs(
                suspend=via.suspend,
                backoff_limit=w.backoff_limit,
                active_deadline_seconds=w.active_deadline_hours * 3600,
                ttl_seconds_after_finished=w.ttl_after_finished_hours * 3600,
                template=core.PodTemplateSpecArgs(
                    metadata=pod_metadata,
                    spec=training_pod_spec(args.config, w, w.name, claims, f"{team.namespace}/{job_name}", via.scheduler_name, claim_template),
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
                    job_template=k8s.batch.v1.JobTemplateSpecArgs(metadata=meta.ObjectMetaArgs(labels=run_labels), spec=job_spec()),
                ),
                opts=self._pod_opts(team, w.accelerator, TRAINING_PRIORITY, *store, *submitted_after),
            )
        else:
            k8s.batch.v1.Job(
                f"{rn}-job",
                # A training run takes hours: Pulumi submits it and returns; its progress shows in Grafana and kubectl.
                metadata=self._meta(job_name, team, run_labels, {**SKIP_AWAIT, **via.run_annotations}),
                spec=job_spec(),
                opts=pulumi.ResourceOptions.merge(self._pod_opts(team, w.accelerator, TRAINING_PRIORITY, *store, *submitted_after), admitted),
            )
        return WorkloadInfo(w.name, "training", w.team, team.namespace, None, w.name, None)


def vpa_spec(deployment: str, update_mode: str) -> dict[str, Any]:
    """A VerticalPodAutoscaler for a serving Deployment's model container."""
    return {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "updatePolicy": {"updateMode": update_mode},
        # The sidecar's resources are Istio's to set. Limits follow requests in proportion (controlledValues'
        # default), so memory limit = request holds after an update.
        "resourcePolicy": {
            "containerPolicies": [
                {"containerName": "model", "controlledResources": ["cpu", "memory"]},
                {"containerName": "*", "mode": "Off"},
            ]
        },
    }
