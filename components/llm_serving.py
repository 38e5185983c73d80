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
from infra.config.llm import LlmModel, LlmWorkload, NEURON_CORES_PER_DEVICE
from infra.lib import headroom, helm, llm_monitoring, model_store, timing
from infra.lib.accelerators import GPU_DEVICE_CLASS, KINDS, POOL_LABEL, family_of
from infra.lib.conventions import DASHBOARD_LABEL, MODEL_STORE_CLAIM, MODEL_STORE_PATH, MONITORING_NAMESPACE, SERVING_PRIORITY, TEAM_LABEL
from infra.lib.gang import submission
from infra.lib.interfaces import GatewayInfo, TeamInfo
from infra.lib.metrics import VLLM_KV_CACHE, VLLM_QUEUE, VLLM_SERIES
from infra.lib.routes import weighted_route
from policies.rules.workloads import ENDPOINT_PICKER, LLM_D_ROLE_LABEL

meta, core = k8s.meta.v1, k8s.core.v1
RUN_AS = 10001
ENGINE_PORT = 8000
# The sidecar agent serves Envoy's, its own and the engine's metrics here (Istio's metrics merging), outside mTLS.
MERGED_METRICS_PORT = 15020
EPP_GRPC_PORT, EPP_HEALTH_PORT, EPP_METRICS_PORT = 9002, 9003, 9090
POOL_GROUP = "inference.networking.k8s.io"
LWS_API = "leaderworkerset.x-k8s.io/v1"
LWS_NAMESPACE = "lws-system"
LWS_REPOSITORY = "oci://registry.k8s.io/lws/charts"
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
NO_SIDECAR = {"sidecar.istio.io/inject": "false"}
PLATFORM_LABELS = {"app.kubernetes.io/part-of": "ml-platform"}
LLM_LABEL = "ml-platform.io/llm"
# The file the download Job writes last: an engine starts only on a complete copy of the weights.
COMPLETE_MARKER = ".complete"
# Where vLLM, PyTorch, Triton and the Hub client write caches: the root filesystem is read-only.
CACHE_ENV = {"HOME": "/tmp", "XDG_CACHE_HOME": "/tmp/.cache", "HF_HOME": "/tmp/hf", "VLLM_CACHE_ROOT": "/tmp/vllm", "TRITON_CACHE_DIR": "/tmp/triton"}
# On Neuron, vLLM compiles the model at start: by default into the model's own (read-only) folder, and the
# compiler's cache under /var/tmp.
NEURON_CACHE_ENV = {"NEURON_COMPILED_ARTIFACTS": "/tmp/neuron-compiled-artifacts", "NEURON_COMPILE_CACHE_URL": "/tmp/neuron-compile-cache"}
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


# Prefill/decode disaggregation (llm-d): pods carry their role for the picker's filters (its bylabel roles); a decode
# pod's routing sidecar answers on the pool's port with vLLM behind it on llm-d's model-server port, a prefill pod's
# vLLM on the pool's port itself.
ROLE_LABEL = LLM_D_ROLE_LABEL
PREFILL, DECODE = "prefill", "decode"
# A disaggregated version's pool: its decode pods (`ml-platform.io/llm: <version>`, as undivided engines, so turning
# disaggregation on changes no Deployment's selector) and its prefill pods (`<version>-prefill`).
LLM_POOL_LABEL = "ml-platform.io/llm-pool"
DECODE_ENGINE_PORT = 8200
# NIXL's side channel (vLLM's VLLM_NIXL_SIDE_CHANNEL_PORT default), then the ports UCX listens on for the KV cache
# over TCP (one per engine process at least: a tensor-parallel rank each).
NIXL_SIDE_CHANNEL_PORT = 5600
KV_TRANSFER = {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
API_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
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


def kv_transfer_ports(w: LlmWorkload) -> list[int]:
    """NIXL's side channel and the range UCX listens in: fixed, so the mesh can leave exactly these to the engines."""
    return [NIXL_SIDE_CHANNEL_PORT, *range(NIXL_SIDE_CHANNEL_PORT + 1, NIXL_SIDE_CHANNEL_PORT + 1 + max(8, 4 * w.parallelism.tensor))]


def kv_transfer_env(w: LlmWorkload) -> list[core.EnvVarArgs]:
    """NIXL over UCX's TCP transport (no RDMA needed), on the pod's own address and the fixed ports."""
    ports = kv_transfer_ports(w)
    return [
        core.EnvVarArgs(name="VLLM_NIXL_SIDE_CHANNEL_HOST", value_from=core.EnvVarSourceArgs(field_ref=core.ObjectFieldSelectorArgs(field_path="status.podIP"))),
        core.EnvVarArgs(name="VLLM_NIXL_SIDE_CHANNEL_PORT", value=str(ports[0])),
        core.EnvVarArgs(name="UCX_TLS", value="tcp,cuda_copy"),
        core.EnvVarArgs(name="UCX_NET_DEVICES", value="eth0"),
        core.EnvVarArgs(name="UCX_TCP_PORT_RANGE", value=f"{ports[1]}-{ports[-1]}"),
    ]


def model_dir(model: LlmModel) -> str:
    return f"{MODEL_STORE_PATH}/{model.name}/{model.version}"


def restricted() -> core.SecurityContextArgs:
    return core.SecurityContextArgs(
        allow_privilege_escalation=False, read_only_root_filesystem=True, run_as_non_root=True, capabilities=core.CapabilitiesArgs(drop=["ALL"])
    )


def pod_security() -> core.PodSecurityContextArgs:
    return core.PodSecurityContextArgs(
        run_as_non_root=True, run_as_user=RUN_AS, run_as_group=RUN_AS, seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault")
    )


def small(cpu: str, memory: str) -> core.ResourceRequirementsArgs:
    return core.ResourceRequirementsArgs(requests={"cpu": cpu, "memory": memory}, limits={"memory": memory})


def track_name(w: LlmWorkload, role: str) -> str:
    return w.name if role == "stable" else f"{w.name}-canary"


def engine_name(w: LlmWorkload, role: str, disaggregated: Optional[str] = None) -> str:
    """A version's engines: its Deployment (or LeaderWorkerSet) and their `ml-platform.io/llm` label."""
    return f"{track_name(w, role)}-prefill" if disaggregated == PREFILL else track_name(w, role)


# The pod's claim on its GPUs when they come through DRA (accelerators.gpuOperator.dra).
GPU_CLAIM = "gpu"


def engine_resources(w: LlmWorkload, accelerators: int, claimed: bool) -> core.ResourceRequirementsArgs:
    """`claimed`: the GPUs come through the pod's DRA claim instead of the device plugin's extended resource."""
    memory = f"{int(w.resources.memory_gib * 1024)}Mi"
    requests, limits = {"cpu": w.resources.cpu, "memory": memory}, {"memory": memory}
    if not claimed:
        # Extended resources are never overcommitted: request = limit.
        requests[KINDS[w.accelerator].resource] = limits[KINDS[w.accelerator].resource] = str(accelerators)
    return core.ResourceRequirementsArgs(requests=requests, limits=limits, claims=[core.ResourceClaimArgs(name=GPU_CLAIM)] if claimed else None)


def engine_args(w: LlmWorkload, model: LlmModel, disaggregated: Optional[str] = None) -> list[str]:
    """vLLM's OpenAI server flags: the store's copy of the weights, the parallelism, the context and memory budget;
    for a prefill or decode pod also the KV cache's transfer through NIXL (vLLM ignores the role: kv_both)."""
    args = [
        model_dir(model),
        "--served-model-name", w.model_name,
        "--port", str(DECODE_ENGINE_PORT if disaggregated == DECODE else ENGINE_PORT),
        "--tensor-parallel-size", str(w.parallelism.tensor),
        "--max-model-len", str(w.max_model_len),
        # Weights come from the read-only store: nothing is downloaded at start.
        "--load-format", "safetensors",
    ]
    if w.accelerator == "nvidia":
        args += ["--gpu-memory-utilization", f"{w.gpu_memory_utilization:g}"]
    else:
        # vLLM's Neuron plugin refuses prefix caching without a block size (as AWS's own examples, it is off).
        args += ["--no-enable-prefix-caching"]
    if w.parallelism.pipeline > 1:
        # Stages on the group's nodes, joined through Ray (the leader is the head, LWS_LEADER_ADDRESS its address).
        args += ["--pipeline-parallel-size", str(w.parallelism.pipeline), "--distributed-executor-backend", "ray"]
    if disaggregated:
        args += ["--kv-transfer-config", json.dumps(KV_TRANSFER, separators=(",", ":"))]
    return args


def pool_family(cfg: PlatformConfig, w: LlmWorkload) -> Optional[str]:
    """The Neuron family the engines run on (the pool's first vLLM-capable family); None on NVIDIA."""
    if w.accelerator != "neuron" or not cfg.node_pools.neuron:
        return None
    return next((family_of(t) for t in cfg.node_pools.neuron.instance_types if family_of(t) in NEURON_CORES_PER_DEVICE), None)


def placement(w: LlmWorkload, family: Optional[str]) -> dict[str, Any]:
    """The workload's pool (and Neuron family), tolerating exactly that pool's taint."""
    selector = {POOL_LABEL: w.accelerator}
    if family:
        selector["karpenter.k8s.aws/instance-family"] = family
    return {"node_selector": selector, "tolerations": [core.TolerationArgs(**KINDS[w.accelerator].toleration)]}


def wait_for_weights(model: LlmModel, image: str) -> core.ContainerArgs:
    """Holds the engine until the download Job has written the whole model (its marker file last)."""
    marker = f"{model_dir(model)}/{COMPLETE_MARKER}"
    return core.ContainerArgs(
        name="wait-for-weights",
        image=image,
        command=["sh", "-c", f'until [ -f "{marker}" ]; do echo "waiting for {model.key} in the model store"; sleep 15; done'],
        resources=small("100m", "128Mi"),
        security_context=restricted(),
        volume_mounts=[core.VolumeMountArgs(name="models", mount_path=MODEL_STORE_PATH, read_only=True)],
    )


def routing_sidecar(w: LlmWorkload, role: str, namespace: str) -> core.ContainerArgs:
    """llm-d's routing sidecar of a decode pod: on the pool's port, it has the prefill pod the picker chose (its
    header) compute the prompt's KV cache, then its own vLLM generate from it. It answers only prefill pods of its
    pool (SSRF protection: it watches the pool and its pods, with a token mounted into it alone)."""
    health = core.HTTPGetActionArgs(path="/health", port="http")
    return core.ContainerArgs(
        name="routing-sidecar",
        image=w.disaggregation.sidecar_image,
        args=[
            f"--port={ENGINE_PORT}",
            f"--model-server-port={DECODE_ENGINE_PORT}",
            "--kv-connector=nixlv2",
            # Plain HTTP: the mesh's sidecar carries it over mutual TLS.
            "--secure-proxy=false",
            "--enable-ssrf-protection=true",
            f"--pool-group={POOL_GROUP}",
            f"--inference-pool={namespace}/{track_name(w, role)}",
            "--zap-encoder=json",
        ],
        ports=[core.ContainerPortArgs(name="http", container_port=ENGINE_PORT, protocol="TCP")],
        resources=small(f"{headroom.PD_SIDECAR_CPU_MILLI}m", f"{headroom.PD_SIDECAR_MEMORY_MIB}Mi"),
        security_context=restricted(),
        # It answers /health once listening, which it does once it has read its pool.
        startup_probe=core.ProbeArgs(http_get=health, period_seconds=5, failure_threshold=24, timeout_seconds=5),
        readiness_probe=core.ProbeArgs(http_get=health, period_seconds=10, failure_threshold=3, timeout_seconds=5),
        liveness_probe=core.ProbeArgs(http_get=health, period_seconds=20, failure_threshold=3, timeout_seconds=5),
        volume_mounts=[core.VolumeMountArgs(name="api-token", mount_path=API_TOKEN_PATH, read_only=True)],
    )


def api_token_volume() -> core.VolumeArgs:
    """What automountServiceAccountToken would mount, for one container of the pod only."""
    return core.VolumeArgs(name="api-token", projected=core.ProjectedVolumeSourceArgs(sources=[
        core.VolumeProjectionArgs(service_account_token=core.ServiceAccountTokenProjectionArgs(path="token", expiration_seconds=3607)),
        core.VolumeProjectionArgs(config_map=core.ConfigMapProjectionArgs(name="kube-root-ca.crt", items=[core.KeyToPathArgs(key="ca.crt", path="ca.crt")])),
        core.VolumeProjectionArgs(downward_api=core.DownwardAPIProjectionArgs(items=[
            core.DownwardAPIVolumeFileArgs(path="namespace", field_ref=core.ObjectFieldSelectorArgs(field_path="metadata.namespace")),
        ])),
    ]))


def engine_pod_spec(cfg: PlatformConfig, w: LlmWorkload, model: LlmModel, image: str, role: str, leader: Optional[bool], namespace: str,
                    claim_template: Optional[str] = None, disaggregated: Optional[str] = None) -> core.PodSpecArgs:
    """One engine pod of `namespace`; `leader` None for a one-node replica, True/False for a LeaderWorkerSet group's
    pods; `claim_template` the ResourceClaimTemplate its GPUs come from under DRA; `disaggregated` its role (prefill
    or decode) in a disaggregated workload."""
    family = pool_family(cfg, w)
    health = core.HTTPGetActionArgs(path="/health", port="engine" if disaggregated == DECODE else "http")
    serves = leader is None or leader
    if serves:
        command = ["vllm", "serve"]
        args = engine_args(w, model, disaggregated)
        if leader:
            command = ["sh", "-c", 'ray start --head --port=6379 --block & exec vllm serve "$@"', "vllm"]
    else:
        command, args = ["sh", "-c", "exec ray start --address=$(LWS_LEADER_ADDRESS):6379 --block"], None
    container = core.ContainerArgs(
        name="engine",
        image=image,
        command=command,
        args=args,
        ports=[(core.ContainerPortArgs(name="engine", container_port=DECODE_ENGINE_PORT, protocol="TCP") if disaggregated == DECODE
                else core.ContainerPortArgs(name="http", container_port=ENGINE_PORT, protocol="TCP"))] if serves else None,
        env=([core.EnvVarArgs(name=k, value=v) for k, v in sorted({**CACHE_ENV, **(NEURON_CACHE_ENV if w.accelerator == "neuron" else {})}.items())]
             + (kv_transfer_env(w) if disaggregated else [])),
        # The image's working directory is on the read-only root filesystem.
        working_dir="/tmp",
        resources=engine_resources(w, w.accelerators_per_pod(family), claimed=bool(claim_template)),
        security_context=restricted(),
        volume_mounts=[
            core.VolumeMountArgs(name="models", mount_path=MODEL_STORE_PATH, read_only=True),
            core.VolumeMountArgs(name="tmp", mount_path="/tmp"),
            core.VolumeMountArgs(name="shm", mount_path="/dev/shm"),
        ],
        # Loading weights from EFS and capturing CUDA graphs takes minutes; liveness starts after startup passed.
        startup_probe=core.ProbeArgs(http_get=health, period_seconds=10, failure_threshold=max(1, w.startup_seconds // 10), timeout_seconds=5) if serves else None,
        readiness_probe=core.ProbeArgs(http_get=health, period_seconds=10, failure_threshold=3, timeout_seconds=5) if serves else None,
        liveness_probe=(
            core.ProbeArgs(http_get=health, period_seconds=20, failure_threshold=3, timeout_seconds=5)
            if serves
            # A worker only joins the leader's Ray cluster: it is alive while Ray answers there.
            else core.ProbeArgs(
                exec_=core.ExecActionArgs(command=["sh", "-c", "ray status --address=$(LWS_LEADER_ADDRESS):6379"]),
                period_seconds=30, failure_threshold=3, timeout_seconds=10, initial_delay_seconds=120,
            )
        ),
    )
    return core.PodSpecArgs(
        service_account_name=w.name,
        automount_service_account_token=False,
        priority_class_name=SERVING_PRIORITY,
        security_context=pod_security(),
        init_containers=[wait_for_weights(model, image)],
        containers=[container, *([routing_sidecar(w, role, namespace)] if disaggregated == DECODE else [])],
        volumes=[
            core.VolumeArgs(name="models", persistent_volume_claim=core.PersistentVolumeClaimVolumeSourceArgs(claim_name=MODEL_STORE_CLAIM, read_only=True)),
            core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="20Gi")),
            # Tensor-parallel workers exchange tensors through shared memory; the container runtime's 64 MiB is too small.
            core.VolumeArgs(name="shm", empty_dir=core.EmptyDirVolumeSourceArgs(medium="Memory", size_limit="8Gi")),
            *([api_token_volume()] if disaggregated == DECODE else []),
        ],
        topology_spread_constraints=[
            core.TopologySpreadConstraintArgs(
                max_skew=1, topology_key="topology.kubernetes.io/zone", when_unsatisfiable="ScheduleAnyway",
                label_selector=meta.LabelSelectorArgs(match_labels={LLM_LABEL: engine_name(w, role, disaggregated)}),
            )
        ],
        resource_claims=[core.PodResourceClaimArgs(name=GPU_CLAIM, resource_claim_template_name=claim_template)] if claim_template else None,
        **placement(w, family),
    )


def engine_pod_metadata(w: LlmWorkload, role: str, model: LlmModel, serves: bool = True, disaggregated: Optional[str] = None) -> meta.ObjectMetaArgs:
    labels = {LLM_LABEL: engine_name(w, role, disaggregated), TEAM_LABEL: w.team, "version": role, "ml-platform.io/model": model.key.replace("@", "-")}
    # The injector merges the engine's /metrics into the sidecar agent's endpoint, which the ServiceMonitor reads;
    # a multi-node group's workers serve nothing of their own.
    port = DECODE_ENGINE_PORT if disaggregated == DECODE else ENGINE_PORT
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"} if serves else None
    if disaggregated:
        labels.update({ROLE_LABEL: disaggregated, LLM_POOL_LABEL: track_name(w, role)})
        # The KV cache moves engine to engine as raw TCP to the pod's address, which Envoy can only pass on in clear
        # and a STRICT peer would refuse: these ports bypass the mesh (the team namespace's policies still apply).
        ports = ",".join(str(p) for p in kv_transfer_ports(w))
        annotations = {**(annotations or {}), "traffic.sidecar.istio.io/excludeInboundPorts": ports, "traffic.sidecar.istio.io/excludeOutboundPorts": ports}
    return meta.ObjectMetaArgs(labels=labels, annotations=annotations)


# The label LeaderWorkerSet puts on each pod of a group: 0 on the leader, the only one serving the API.
LWS_WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"


def serving_pods(w: LlmWorkload, role: str) -> dict[str, str]:
    """The labels of a version's pods that answer requests: all of them (prefill and decode alike), or each group's
    leader."""
    if w.disaggregation:
        return {LLM_POOL_LABEL: track_name(w, role)}
    return {LLM_LABEL: track_name(w, role), **({LWS_WORKER_INDEX: "0"} if w.parallelism.pipeline > 1 else {})}


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

