"""LLM serving: vLLM engines (one node, or several through a LeaderWorkerSet) behind Gateway API Inference Extension
InferencePools with their endpoint pickers, a weighted route per workload, engine metrics, alerts, a dashboard and
autoscaling on the engine's queue or KV cache."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra.config import PlatformConfig
from infra.config.llm import LlmModel, LlmWorkload
from infra.lib import headroom, helm, llm_monitoring, model_store, timing
from infra.lib.accelerators import GPU_DEVICE_CLASS, POOL_LABEL
from infra.lib.conventions import DASHBOARD_LABEL, MODEL_STORE_PATH, MONITORING_NAMESPACE, SERVING_PRIORITY, TEAM_LABEL
from infra.lib.gang import submission
from infra.lib.interfaces import GatewayInfo, TeamInfo
from infra.lib.llm_engines import (
    CACHE_ENV, COMPLETE_MARKER, DECODE, ENGINE_PORT, GPU_CLAIM, LLM_LABEL, POOL_GROUP, PREFILL, ROLE_LABEL, engine_name,
    engine_pod_metadata, engine_pod_spec, model_dir, pod_security, restricted, serving_pods, small, track_name,
)
from infra.lib.metrics import VLLM_KV_CACHE, VLLM_QUEUE, VLLM_SERIES
from infra.lib.routes import weighted_route
from policies.rules.workloads import ENDPOINT_PICKER

meta, core = k8s.meta.v1, k8s.core.v1
# The sidecar agent serves Envoy's, its own and the engine's metrics here (Istio's metrics merging), outside mTLS.
MERGED_METRICS_PORT = 15020
EPP_GRPC_PORT, EPP_HEALTH_PORT, EPP_METRICS_PORT = 9002, 9003, 9090
LWS_API = "leaderworkerset.x-k8s.io/v1"
LWS_NAMESPACE = "lws-system"
LWS_REPOSITORY = "oci://registry.k8s.io/lws/charts"
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
NO_SIDECAR = {"sidecar.istio.io/inject": "false"}
PLATFORM_LABELS = {"app.kubernetes.io/part-of": "ml-platform"}

# The endpoint picker's plugins as upstream's chart configures them at the pinned release (epplib/templates/_config.yaml).
EPP_CONFIG = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
    "kind": "EndpointPickerConfig",
    "plugins": [{"type": "queue-scorer"}, {"type": "kv-cache-utilization-scorer"}, {"type": "prefix-cache-scorer"}],
    "schedulingProfiles": [
        {
            "name": "default",
            "plugins": [
                {"pluginRef": "queue-scorer", "weight": 2},
                {"pluginRef": "kv-cache-utilization-scorer", "weight": 2},
                {"pluginRef": "prefix-cache-scorer", "weight": 3},
            ],
        }
    ],
}


# The picker's plugins for prefill/decode, as llm-d's sample configures them at the pinned release
# (deploy/config/pd-epp-config.yaml): a request goes through a prefill pod when a decode pod has not cached more than
# `nonCachedTokens` of its prompt.
PD_EPP_CONFIG = {
    "apiVersion": "llm-d.ai/v1alpha1",
    "kind": "EndpointPickerConfig",
    "plugins": [
        {"type": "approx-prefix-cache-producer", "parameters": {"maxPrefixTokensToMatch": 16384, "lruCapacityPerServer": 31250}},
        {"type": "prefix-cache-scorer"},
        {"type": "queue-scorer"},
        {"type": "prefill-filter"},
        {"type": "decode-filter"},
        {"type": "max-score-picker"},
        {"type": "disagg-profile-handler", "parameters": {"deciders": {"prefill": "prefix-based-pd-decider"}}},
        {"type": "prefix-based-pd-decider", "parameters": {"nonCachedTokens": 16}},
    ],
    "schedulingProfiles": [
        {"name": role, "plugins": [
            {"pluginRef": f"{role}-filter"},
            {"pluginRef": "max-score-picker"},
            {"pluginRef": "prefix-cache-scorer", "weight": 2},
            {"pluginRef": "queue-scorer", "weight": 1},
        ]}
        for role in (PREFILL, DECODE)
    ],
}


def pd_epp_config(w: LlmWorkload) -> dict[str, Any]:
    decider = {"type": "prefix-based-pd-decider", "parameters": {"nonCachedTokens": w.disaggregation.non_cached_tokens}}
    return {**PD_EPP_CONFIG, "plugins": [decider if p["type"] == decider["type"] else p for p in PD_EPP_CONFIG["plugins"]]}


def route_spec(w: LlmWorkload, parent_ref: dict[str, str], hosts: list[str]) -> dict[str, Any]:
    """The workload's path on the shared Gateway, split by weight between its versions' InferencePools."""
    backends = [{"group": POOL_GROUP, "kind": "InferencePool", "name": track_name(w, role), "weight": weight} for role, _, _, weight, _, _ in w.tracks()]
    # Long generations stream for minutes.
    return weighted_route(w.name, w.path, parent_ref, hosts, backends, timeout="600s")


def inference_pool_spec(w: LlmWorkload, role: str) -> dict[str, Any]:
    picker = w.inference_pool.endpoint_picker
    return {
        "selector": {"matchLabels": serving_pods(w, role)},
        "targetPorts": [{"number": ENGINE_PORT}],
        "endpointPickerRef": {"name": f"{track_name(w, role)}-epp", "port": {"number": EPP_GRPC_PORT}, "failureMode": picker.failure_mode},
    }


def epp_args(w: LlmWorkload, role: str, namespace: str) -> list[str]:
    """The picker's flags as upstream's chart renders them at the pinned release (epplib/templates/_deployment.yaml),
    with serving in plain gRPC: the sidecars carry it over mutual TLS. llm-d's picker refuses the metric flags (its
    vLLM defaults are the same series)."""
    args = [
        "--pool-name", track_name(w, role),
        "--pool-namespace", namespace,
        "--zap-encoder", "json",
        "--config-file", "/config/default-plugins.yaml",
        "--secure-serving=false",
        "--tracing=false",
        "--metrics-endpoint-auth=false",
    ]
    if not w.disaggregation:
        args += ["--total-queued-requests-metric", VLLM_QUEUE, "--kv-cache-usage-percentage-metric", VLLM_KV_CACHE]
    if w.inference_pool.endpoint_picker.replicas > 1:
        args.append("--ha-enable-leader-election")
    return args


def hpa_spec(w: LlmWorkload, role: str, min_replicas: int, max_replicas: int) -> k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs:
    hpa, a = k8s.autoscaling.v2, w.autoscaling
    multi = w.parallelism.pipeline > 1
    return hpa.HorizontalPodAutoscalerSpecArgs(
        scale_target_ref=hpa.CrossVersionObjectReferenceArgs(
            api_version=LWS_API if multi else "apps/v1", kind="LeaderWorkerSet" if multi else "Deployment", name=track_name(w, role)
        ),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        metrics=[
            hpa.MetricSpecArgs(
                type="Pods",
                pods=hpa.PodsMetricSourceArgs(
                    metric=hpa.MetricIdentifierArgs(name=a.metric), target=hpa.MetricTargetArgs(type="AverageValue", average_value=a.target)
                ),
            )
        ],
        # A new replica takes minutes (a GPU node, the weights): scale down slowly, never on a short lull.
        behavior=hpa.HorizontalPodAutoscalerBehaviorArgs(scale_down=hpa.HPAScalingRulesArgs(stabilization_window_seconds=600)),
    )


def lws_values(cfg: PlatformConfig) -> dict[str, Any]:
    return {
        # The chart at the tag points at `main`; the published chart at the release.
        "image": {"manager": {"tag": f"v{cfg.llm.lws_version}", "pullPolicy": "IfNotPresent"}},
        "resources": helm.resources("200m", "512Mi", chart_limits_cpu=False),
        "podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }


@dataclass(frozen=True)
class LlmServingArgs:
    config: PlatformConfig
    provider: k8s.Provider
    teams: dict[str, TeamInfo]
    gateway: GatewayInfo
    istiod: pulumi.Resource  # sidecar injector, and the inference extension's controller
    gateway_api_crds: pulumi.Resource
    inference_pool_crds: pulumi.Resource
    metrics_adapter: pulumi.Resource  # serves the vLLM metrics the autoscalers read
    monitoring_release: pulumi.Resource  # ServiceMonitor and PrometheusRule CRDs
    model_stores: dict[str, pulumi.Resource]  # by team: the store's claim
    node_pools: dict[str, pulumi.Resource]  # by pool name
    priority_classes: dict[str, pulumi.Resource]
    queues: dict[str, pulumi.Resource]  # by team: where the download Job is submitted
    gpu_claims: Optional[pulumi.Resource]  # the NVIDIA DRA driver and its DeviceClass, when GPUs are claimed through DRA


@dataclass(frozen=True)
class LlmEndpoint:
    team: str
    namespace: str
    model: str  # what clients put in the OpenAI API's "model" field
    url: pulumi.Output[str]  # the OpenAI-compatible base URL on the gateway
    versions: dict[str, Any]  # stable and canary model versions and the canary's weight


class LlmServing(pulumi.ComponentResource):
    endpoints: dict[str, LlmEndpoint]
    leader_worker_set: Optional[k8s.helm.v3.Release]

    def __init__(self, name: str, args: LlmServingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:llm:LlmServing", name, None, opts)
        self._args = args
        cfg = args.config
        self._downloads: dict[tuple[str, str], k8s.batch.v1.Job] = {}
        self.endpoints = {}
        self.leader_worker_set = self._lws(name) if cfg.llm.multi_node else None
        for w in cfg.llm.workloads:
            self.endpoints[f"{w.team}/{w.name}"] = self._workload(w, args.teams[w.team])
        if cfg.llm.workloads:
            mon = pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.monitoring_release])
            k8s.apiextensions.CustomResource(
                f"{name}-alerts",
                api_version="monitoring.coreos.com/v1",
                kind="PrometheusRule",
                metadata=meta.ObjectMetaArgs(name="ml-platform-llm-alerts", namespace=MONITORING_NAMESPACE, labels=PLATFORM_LABELS),
                spec=llm_monitoring.alert_rules(),
                opts=mon,
            )
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard",
                metadata=meta.ObjectMetaArgs(name="dashboard-ml-llm", namespace=MONITORING_NAMESPACE, labels={**DASHBOARD_LABEL, **PLATFORM_LABELS}),
                data={"ml-llm.json": json.dumps(llm_monitoring.llm_dashboard(), indent=2, sort_keys=True)},
                opts=mon,
            )
        self.register_outputs({"endpoints": sorted(self.endpoints)})

    def _lws(self, name: str) -> k8s.helm.v3.Release:
        """The LeaderWorkerSet controller on the general CPU pool, its webhook awaited before any LeaderWorkerSet."""
        a = self._args
        namespace = core.Namespace(
            f"{name}-lws-system",
            metadata=meta.ObjectMetaArgs(name=LWS_NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "restricted", **PLATFORM_LABELS}),
            opts=pulumi.ResourceOptions(parent=self, provider=a.provider),
        )
        return helm.release(
            f"{name}-lws",
            name="lws",
            chart="lws",
            repository=LWS_REPOSITORY,
            version=a.config.llm.lws_version,
            namespace=LWS_NAMESPACE,
            values=lws_values(a.config),
            opts=pulumi.ResourceOptions(parent=self, provider=a.provider, depends_on=[namespace, a.node_pools["cpu"]]),
            # Its pod may wait for Karpenter to launch a cpu node.
            timeout=timing.HELM_ON_NEW_NODES,
        )

    def _opts(self, team: TeamInfo, *deps: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self._args.provider, depends_on=[team.namespace_resource, *deps])

    def _meta(self, name: str, team: TeamInfo, labels: dict[str, str], annotations: Optional[dict[str, str]] = None) -> meta.ObjectMetaArgs:
        return meta.ObjectMetaArgs(name=name, namespace=team.namespace, labels={**PLATFORM_LABELS, TEAM_LABEL: team.name, **labels}, annotations=annotations)

    def _download(self, w: LlmWorkload, team: TeamInfo, model: LlmModel) -> k8s.batch.v1.Job:
        """Copies the model at its pinned commit from the Hugging Face Hub into the team's store, once per version;
        the marker file goes last. Not awaited: the engines wait for the marker themselves."""
        key = (team.name, model.key)
        if key in self._downloads:
            return self._downloads[key]
        a = self._args
        target = model_dir(model)
        script = (
            "import os, pathlib, sys\n"
            "from huggingface_hub import snapshot_download\n"
            "target = pathlib.Path(sys.argv[3])\n"
            "if (target / sys.argv[4]).exists():\n"
            "    sys.exit(0)\n"
            "snapshot_download(repo_id=sys.argv[1], revision=sys.argv[2], local_dir=target, allow_patterns=['*.json', '*.safetensors', '*.txt', '*.model', '*.tiktoken'])\n"
            "(target / sys.argv[4]).touch()\n"
        ) if model_store.backend(a.config, team.name) == "efs" else model_store.S3_HUB_DOWNLOAD
        via = submission(a.config.scheduling.gang, team.name, priority=SERVING_PRIORITY)
        labels = {"app.kubernetes.io/component": "model-lifecycle"}
        job = k8s.batch.v1.Job(
            f"{team.name}-download-{model.name}-{model.version}",
            metadata=self._meta(f"download-{model.name}-{model.version}", team, {**labels, **via.labels}, {**SKIP_AWAIT, **via.run_annotations}),
            spec=k8s.batch.v1.JobSpecArgs(
                suspend=via.suspend,
                backoff_limit=3,
                active_deadline_seconds=timing.job_done("cpu", timing.LLM_DOWNLOAD),
                ttl_seconds_after_finished=24 * 3600,
                template=core.PodTemplateSpecArgs(
                    metadata=meta.ObjectMetaArgs(labels={TEAM_LABEL: team.name, **labels}, annotations={"karpenter.sh/do-not-disrupt": "true", **NO_SIDECAR, **via.pod_annotations}),
                    spec=core.PodSpecArgs(
                        service_account_name=team.service_account,
                        automount_service_account_token=False,
                        scheduler_name=via.scheduler_name,
                        restart_policy="Never",
                        security_context=pod_security(),
                        containers=[
                            core.ContainerArgs(
                                name="download",
                                image=w.engine_image,
                                command=["python3", "-c", script, model.hub_id, model.revision, target, COMPLETE_MARKER],
                                env=[core.EnvVarArgs(name=k, value=v) for k, v in sorted(CACHE_ENV.items())],
                                resources=small("1", "4Gi"),
                                security_context=restricted(),
                                volume_mounts=[
                                    core.VolumeMountArgs(name="models", mount_path=MODEL_STORE_PATH),
                                    core.VolumeMountArgs(name="tmp", mount_path="/tmp"),
                                ],
                            )
                        ],
                        volumes=[
                            core.VolumeArgs(name="models", persistent_volume_claim=core.PersistentVolumeClaimVolumeSourceArgs(
                                claim_name=model_store.claim(a.config, team.name, publish=True))),
                            core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="20Gi")),
                        ],
                        node_selector={POOL_LABEL: "cpu"},
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(
                self._opts(team, a.istiod, a.node_pools["cpu"], a.model_stores[team.name], a.queues[team.name], *team.guardrails),
                via.options(),
            ),
        )
        self._downloads[key] = job
        return job

    def _workload(self, w: LlmWorkload, team: TeamInfo) -> LlmEndpoint:
        a = self._args
        rn = f"{w.team}-{w.name}"
        core.ServiceAccount(f"{rn}-llm-sa", metadata=self._meta(w.name, team, {LLM_LABEL: w.name}), automount_service_account_token=False, opts=self._opts(team))
        pod_deps = [a.istiod, a.priority_classes[SERVING_PRIORITY], a.node_pools[w.accelerator], a.model_stores[w.team], *team.guardrails]
        claim_template = None
        if a.gpu_claims is not None and w.accelerator == "nvidia":
            # Under DRA each engine pod claims its GPUs from a template of the workload's own.
            claim_template = f"{w.name}-gpu"
            pod_deps.append(k8s.resource.v1.ResourceClaimTemplate(
                f"{rn}-llm-gpu-claim",
                metadata=self._meta(claim_template, team, {LLM_LABEL: w.name}),
                spec={"spec": {"devices": {"requests": [{"name": GPU_CLAIM, "exactly": {"deviceClassName": GPU_DEVICE_CLASS, "count": w.parallelism.tensor}}]}}},
                opts=self._opts(team, a.gpu_claims),
            ))
        if w.disaggregation:
            self._routing_access(w, team)
        for role, model, image, weight, min_replicas, max_replicas in w.tracks():
            name = track_name(w, role)
            labels = {LLM_LABEL: name, "version": role}
            download = self._download(w, team, model)
            engines = self._engines(w, team, role, model, image, min_replicas, pod_deps, download, claim_template, DECODE if w.disaggregation else None)
            prefill_service: list[pulumi.Resource] = []
            if w.disaggregation:
                self._engines(w, team, role, model, image, w.prefill_replicas(weight), pod_deps, download, claim_template, PREFILL)
                # Decode pods reach prefill pods at their addresses, keeping the client's Host header: a headless
                # Service of them, its port declared TCP, has the mesh listen on each address and port (no route by
                # host to miss), so that traffic is mutual TLS like the rest.
                prefill_service.append(core.Service(
                    f"{rn}-{role}-prefill",
                    # Not awaited: its endpoints are GPU pods that come after the `up`.
                    metadata=self._meta(f"{name}-prefill", team, {**labels, ROLE_LABEL: PREFILL}, SKIP_AWAIT),
                    spec=core.ServiceSpecArgs(
                        cluster_ip="None",
                        selector={LLM_LABEL: engine_name(w, role, PREFILL)},
                        ports=[core.ServicePortArgs(name="tcp-engine", port=ENGINE_PORT, target_port=ENGINE_PORT, protocol="TCP", app_protocol="tcp")],
                    ),
                    opts=self._opts(team),
                ))
            pool = k8s.apiextensions.CustomResource(
                f"{rn}-{role}-pool",
                api_version=f"{POOL_GROUP}/v1",
                kind="InferencePool",
                metadata=self._meta(name, team, labels),
                spec=inference_pool_spec(w, role),
                # Istio gives a port of a pod the protocol of the oldest Service on it: the prefill pods' TCP port is
                # older than the HTTP one of the pool's shadow Service istiod makes.
                opts=self._opts(team, a.inference_pool_crds, *prefill_service),
            )
            self._endpoint_picker(w, team, role, pool)
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{rn}-{role}-hpa",
                metadata=self._meta(name, team, labels),
                spec=hpa_spec(w, role, min_replicas, max_replicas),
                # The metric is read through the adapter's APIService: without it the autoscaler never scales.
                opts=self._opts(team, engines, a.metrics_adapter),
            )
            for engines_of, suffix in [(name, "pdb"), *([(engine_name(w, role, PREFILL), "prefill-pdb")] if w.disaggregation else [])]:
                k8s.policy.v1.PodDisruptionBudget(
                    f"{rn}-{role}-{suffix}",
                    metadata=self._meta(engines_of, team, {**labels, LLM_LABEL: engines_of}),
                    spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(max_unavailable=1, selector=meta.LabelSelectorArgs(match_labels={LLM_LABEL: engines_of})),
                    opts=self._opts(team),
                )
            # The engines' merged metrics, for the ServiceMonitor (clients go through the gateway and the pool).
            core.Service(
                f"{rn}-{role}-metrics",
                metadata=self._meta(f"{name}-metrics", team, {**labels, "ml-platform.io/llm-metrics": "true"}, SKIP_AWAIT),
                spec=core.ServiceSpecArgs(
                    type="ClusterIP",
                    selector=serving_pods(w, role),
                    ports=[core.ServicePortArgs(name="http-monitoring", port=MERGED_METRICS_PORT, target_port=MERGED_METRICS_PORT, protocol="TCP")],
                ),
                opts=self._opts(team),
            )
        k8s.apiextensions.CustomResource(
            f"{rn}-llm-metrics",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=self._meta(f"{w.name}-llm", team, {LLM_LABEL: w.name}),
            spec={
                "selector": {"matchLabels": {"ml-platform.io/llm-metrics": "true", TEAM_LABEL: team.name}},
                "endpoints": [
                    {
                        "port": "http-monitoring",
                        "path": "/stats/prometheus",
                        "interval": "15s",
                        # Only the engine's series: Envoy's and the agent's come through the mesh's PodMonitor.
                        "metricRelabelings": [{"action": "keep", "sourceLabels": ["__name__"], "regex": VLLM_SERIES}],
                    }
                ],
            },
            opts=self._opts(team, a.monitoring_release),
        )
        k8s.apiextensions.CustomResource(
            f"{rn}-llm-route",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata=self._meta(w.name, team, {LLM_LABEL: w.name}),
            spec=route_spec(w, a.gateway.parent_ref, a.gateway.hosts),
            opts=self._opts(team, a.gateway_api_crds, a.inference_pool_crds, a.istiod),
        )
        tracks = {t[0]: t for t in w.tracks()}
        canary = tracks.get("canary")
        versions = {"stable": tracks["stable"][1].key, "canary": canary[1].key if canary else None, "canaryWeight": canary[3] if canary else 0}
        url = a.gateway.url.apply(lambda base: f"{base}{w.path}/v1")
        return LlmEndpoint(w.team, team.namespace, w.model_name, url, versions)

    def _engines(self, w: LlmWorkload, team: TeamInfo, role: str, model: LlmModel, image: str, replicas: int,
                 pod_deps: list[pulumi.Resource], download: pulumi.Resource, claim_template: Optional[str],
                 disaggregated: Optional[str] = None) -> pulumi.Resource:
        """A Deployment of one-node replicas, or a LeaderWorkerSet whose replicas span `pipeline` nodes; in a
        disaggregated workload, the version's decode or prefill Deployment. Not awaited: the pods wait for a GPU node
        and the weights."""
        cfg, name = self._args.config, engine_name(w, role, disaggregated)
        labels = {LLM_LABEL: name, "version": role, **({ROLE_LABEL: disaggregated} if disaggregated else {})}
        opts = self._opts(team, *pod_deps, download)
        if disaggregated != PREFILL:
            # Replicas belong to the autoscaler once created (the decode pods': prefill pods are as many as configured).
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["spec.replicas"]))
        if w.parallelism.pipeline == 1:
            pod = engine_pod_spec(cfg, w, model, image, role, None, team.namespace, claim_template, disaggregated)
            return k8s.apps.v1.Deployment(
                f"{w.team}-{w.name}-{role}-{'prefill' if disaggregated == PREFILL else 'engine'}",
                metadata=self._meta(name, team, labels, SKIP_AWAIT),
                spec=k8s.apps.v1.DeploymentSpecArgs(
                    replicas=replicas,
                    selector=meta.LabelSelectorArgs(match_labels={LLM_LABEL: name}),
                    # A GPU per surge pod: roll one replica at a time.
                    strategy=k8s.apps.v1.DeploymentStrategyArgs(type="RollingUpdate", rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1)),
                    template=core.PodTemplateSpecArgs(metadata=engine_pod_metadata(w, role, model, disaggregated=disaggregated), spec=pod),
                ),
                opts=opts,
            )
        template = lambda leader: {"metadata": engine_pod_metadata(w, role, model, serves=leader), "spec": engine_pod_spec(cfg, w, model, image, role, leader, team.namespace, claim_template)}  # noqa: E731
        return k8s.apiextensions.CustomResource(
            f"{w.team}-{w.name}-{role}-engine",
            api_version=LWS_API,
            kind="LeaderWorkerSet",
            metadata=self._meta(name, team, labels, SKIP_AWAIT),
            spec={
                "replicas": replicas,
                # The leader's engine is ready only once the workers joined its Ray cluster: start them together.
                "startupPolicy": "LeaderCreated",
                "leaderWorkerTemplate": {
                    "size": w.parallelism.pipeline,
                    # A failed pod restarts its whole group: a pipeline missing a stage serves nothing.
                    "restartPolicy": "RecreateGroupOnPodRestart",
                    "leaderTemplate": template(True),
                    "workerTemplate": template(False),
                },
                "rolloutStrategy": {"type": "RollingUpdate", "rollingUpdateConfiguration": {"maxUnavailable": 0, "maxSurge": 1}},
            },
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[self.leader_worker_set])),
        )

    def _api_reader(self, rn: str, name: str, team: TeamInfo, labels: dict[str, str], service_account: str,
                    pods: meta.LabelSelectorArgs, *extra_rules: k8s.rbac.v1.PolicyRuleArgs) -> pulumi.Resource:
        """What pods that watch their InferencePool and its pods need: a Role to read them (and `extra_rules`), bound to
        their service account, and a way to the API server. The team namespace denies egress but to itself, DNS, the
        mesh and HTTPS outside the VPC; the API server's private endpoint answers on addresses inside the VPC."""
        read = ["get", "watch", "list"]
        role = k8s.rbac.v1.Role(
            f"{rn}-role",
            metadata=self._meta(name, team, labels),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods"], verbs=read),
                k8s.rbac.v1.PolicyRuleArgs(api_groups=[POOL_GROUP], resources=["inferencepools"], verbs=read),
                *extra_rules,
            ],
            opts=self._opts(team),
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{rn}-binding",
            metadata=self._meta(name, team, labels),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=name),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=service_account, namespace=team.namespace)],
            opts=self._opts(team, role),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{rn}-api",
            metadata=self._meta(f"{name}-api-server", team, labels),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=pods,
                policy_types=["Egress"],
                egress=[k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    to=[k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=self._args.config.network.cidr))],
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=443)],
                )],
            ),
            opts=self._opts(team),
        )
        return binding

    def _routing_access(self, w: LlmWorkload, team: TeamInfo) -> None:
        """What the decode pods' routing sidecars read to know the prefill pods of their pool (SSRF protection)."""
        decode_pods = meta.LabelSelectorArgs(
            match_labels={ROLE_LABEL: DECODE},
            match_expressions=[meta.LabelSelectorRequirementArgs(key=LLM_LABEL, operator="In", values=[track_name(w, t[0]) for t in w.tracks()])],
        )
        self._api_reader(f"{w.team}-{w.name}-routing", f"{w.name}-routing", team, {LLM_LABEL: w.name}, w.name, decode_pods)

    def _endpoint_picker(self, w: LlmWorkload, team: TeamInfo, role: str, pool: pulumi.Resource) -> None:
        """The pool's endpoint picker, as upstream's chart builds it at the pinned release (its RBAC, config, Deployment
        and Service), on the general CPU pool with the platform's resources and security context."""
        a = self._args
        picker = w.inference_pool.endpoint_picker
        name = f"{track_name(w, role)}-epp"
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": ENDPOINT_PICKER}
        selector = {"app.kubernetes.io/name": name}
        rn = f"{w.team}-{name}"
        opts = self._opts(team)
        core.ServiceAccount(f"{rn}-sa", metadata=self._meta(name, team, labels), automount_service_account_token=True, opts=opts)
        binding = self._api_reader(
            rn, name, team, labels, name, meta.LabelSelectorArgs(match_labels=selector),
            k8s.rbac.v1.PolicyRuleArgs(api_groups=["inference.networking.x-k8s.io"], resources=["inferenceobjectives", "inferencemodelrewrites"], verbs=["get", "watch", "list"]),
            # Leader election between replicas.
            k8s.rbac.v1.PolicyRuleArgs(api_groups=["coordination.k8s.io"], resources=["leases"], verbs=["get", "list", "watch", "create", "update", "patch", "delete"]),
        )
        config = core.ConfigMap(
            f"{rn}-config",
            metadata=self._meta(name, team, labels),
            data={"default-plugins.yaml": yaml.safe_dump(pd_epp_config(w) if w.disaggregation else EPP_CONFIG, sort_keys=False)},
            opts=opts,
        )

        def grpc_probe(period: int, check: str) -> core.ProbeArgs:
            # llm-d's picker answers its own health services (cmd/epp/runner/health.go); the Inference Extension's its name.
            service = check if w.disaggregation else "inference-extension"
            return core.ProbeArgs(grpc=core.GRPCActionArgs(port=EPP_HEALTH_PORT, service=service), period_seconds=period, timeout_seconds=5, failure_threshold=3)

        # Not awaited, like every object of a team namespace (its pod may wait for a new cpu node); a picker that does
        # not come up shows as the pool's 503s and the Deployment's status.
        k8s.apps.v1.Deployment(
            f"{rn}-deployment",
            metadata=self._meta(name, team, labels, SKIP_AWAIT),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=picker.replicas,
                selector=meta.LabelSelectorArgs(match_labels=selector),
                # Upstream's choice: one active picker at a time (its prefix-cache state), replaced at once.
                strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate"),
                template=core.PodTemplateSpecArgs(
                    metadata=meta.ObjectMetaArgs(labels={**labels, TEAM_LABEL: team.name}),
                    spec=core.PodSpecArgs(
                        service_account_name=name,
                        security_context=pod_security(),
                        termination_grace_period_seconds=130,
                        node_selector={POOL_LABEL: "cpu"},
                        containers=[
                            core.ContainerArgs(
                                name="epp",
                                image=w.picker_image,
                                args=epp_args(w, role, team.namespace),
                                ports=[
                                    core.ContainerPortArgs(name="grpc", container_port=EPP_GRPC_PORT),
                                    core.ContainerPortArgs(name="grpc-health", container_port=EPP_HEALTH_PORT),
                                    core.ContainerPortArgs(name="metrics", container_port=EPP_METRICS_PORT),
                                ],
                                env=[
                                    core.EnvVarArgs(name="NAMESPACE", value_from=core.EnvVarSourceArgs(field_ref=core.ObjectFieldSelectorArgs(field_path="metadata.namespace"))),
                                    core.EnvVarArgs(name="POD_NAME", value_from=core.EnvVarSourceArgs(field_ref=core.ObjectFieldSelectorArgs(field_path="metadata.name"))),
                                ],
                                resources=small(f"{headroom.EPP_CPU_MILLI}m", f"{headroom.EPP_MEMORY_MIB}Mi"),
                                security_context=restricted(),
                                readiness_probe=grpc_probe(5, "readiness"),
                                liveness_probe=grpc_probe(10, "liveness"),
                                volume_mounts=[
                                    core.VolumeMountArgs(name="config", mount_path="/config", read_only=True),
                                    core.VolumeMountArgs(name="tmp", mount_path="/tmp"),
                                ],
                            )
                        ],
                        volumes=[
                            core.VolumeArgs(name="config", config_map=core.ConfigMapVolumeSourceArgs(name=name)),
                            # Scratch for a read-only root filesystem.
                            core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="1Gi")),
                        ],
                    ),
                ),
            ),
            opts=self._opts(team, a.istiod, a.node_pools["cpu"], binding, config, pool, *team.guardrails),
        )
        core.Service(
            f"{rn}-service",
            metadata=self._meta(name, team, labels, SKIP_AWAIT),
            spec=core.ServiceSpecArgs(
                type="ClusterIP",
                selector=selector,
                ports=[
                    # grpc-: Istio carries it as HTTP/2 over mutual TLS.
                    core.ServicePortArgs(name="grpc-ext-proc", port=EPP_GRPC_PORT, target_port=EPP_GRPC_PORT, protocol="TCP"),
                    core.ServicePortArgs(name="http-metrics", port=EPP_METRICS_PORT, target_port=EPP_METRICS_PORT, protocol="TCP"),
                ],
            ),
            opts=opts,
        )

