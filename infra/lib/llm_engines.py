"""The vLLM engine pods of an LLM workload: one node per replica, a LeaderWorkerSet group's leader and workers, or a
disaggregated version's prefill and decode pods (llm-d's routing sidecar in the latter), with the weights from the
team's model store. components/llm_serving.py puts them behind their InferencePools."""
from __future__ import annotations

import json
from typing import Any, Optional

import pulumi_kubernetes as k8s

from infra.config import PlatformConfig
from infra.config.llm import LlmModel, LlmWorkload, NEURON_CORES_PER_DEVICE
from infra.lib import headroom
from infra.lib.accelerators import KINDS, POOL_LABEL, family_of
from infra.lib.conventions import MODEL_STORE_CLAIM, MODEL_STORE_PATH, SERVING_PRIORITY, TEAM_LABEL
from policies.rules.workloads import LLM_D_ROLE_LABEL

meta, core = k8s.meta.v1, k8s.core.v1
RUN_AS = 10001
ENGINE_PORT = 8000
POOL_GROUP = "inference.networking.k8s.io"
LLM_LABEL = "ml-platform.io/llm"
# The file the download Job writes last: an engine starts only on a complete copy of the weights.
COMPLETE_MARKER = ".complete"
# Where vLLM, PyTorch, Triton and the Hub client write caches: the root filesystem is read-only.
CACHE_ENV = {"HOME": "/tmp", "XDG_CACHE_HOME": "/tmp/.cache", "HF_HOME": "/tmp/hf", "VLLM_CACHE_ROOT": "/tmp/vllm", "TRITON_CACHE_DIR": "/tmp/triton"}
# On Neuron, vLLM compiles the model at start: by default into the model's own (read-only) folder, and the
# compiler's cache under /var/tmp.
NEURON_CACHE_ENV = {"NEURON_COMPILED_ARTIFACTS": "/tmp/neuron-compiled-artifacts", "NEURON_COMPILE_CACHE_URL": "/tmp/neuron-compile-cache"}


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
