"""LLM serving settings: vLLM engines behind a Gateway API Inference Extension InferencePool, one or more nodes per
replica (LeaderWorkerSet), autoscaled on the engine's queue or KV cache."""
from __future__ import annotations

import math
from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from infra.config.base import CpuQuantity, DnsLabel, ImageRef, Model
from infra.config.pins import PINS
from infra.lib.metrics import CUSTOM_METRICS

# The official vLLM OpenAI-compatible server image (https://hub.docker.com/r/vllm/vllm-openai/tags, tag v0.12.0).
VLLM_IMAGE = "vllm/vllm-openai:v0.12.0"
# On Neuron the engine is AWS's vLLM build (the Neuron Deep Learning Container): its tags follow the Neuron SDK and
# differ by instance generation. The newest for the generations the platform serves on (inf2, trn1), as the DLC
# README lists it (schemas/upstream/neuron-dlc): the later builds are for trn2 and trn3 only.
NEURON_VLLM_IMAGE = "public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:0.16.0-neuronx-py312-sdk2.31.1-ubuntu24.04"
# The endpoint picker of the Gateway API Inference Extension release Istio 1.30 is built against (its go.mod).
EPP_IMAGE = f"registry.k8s.io/gateway-api-inference-extension/epp:{PINS['gateway-api-inference-extension']}"
# Disaggregated workloads: llm-d's picker (the Inference Extension's, with prefill/decode plugins) and the routing
# sidecar of its decode pods, from one llm-d-router release (its Makefile and release workflow name the images).
LLMD_EPP_IMAGE = f"ghcr.io/llm-d/llm-d-router-endpoint-picker:v{PINS['llm-d-router']}"
PD_SIDECAR_IMAGE = f"ghcr.io/llm-d/llm-d-router-disagg-sidecar:v{PINS['llm-d-router']}"

# NeuronCores per Neuron device, by instance family (AWS Neuron documentation, "Inf2 architecture" and "Trn1
# architecture": two NeuronCore-v2 per Inferentia2 and per Trainium device). vLLM's tensor parallel size on Neuron
# counts NeuronCores; the device plugin hands out whole devices (aws.amazon.com/neuron). inf1 has no vLLM backend.
NEURON_CORES_PER_DEVICE = {"inf2": 2, "trn1": 2, "trn1n": 2}


class LlmModel(Model):
    """A model in the team's store at /models/<name>/<version>, downloaded there from the Hugging Face Hub at an exact
    commit by the platform's download Job (a version names one content forever)."""

    name: DnsLabel
    version: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$")]
    hub_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[-A-Za-z0-9_.]+$")]
    revision: Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


class Parallelism(Model):
    # Accelerators one engine shards each layer over (GPUs, or NeuronCores on Neuron): all on one node.
    tensor: Annotated[int, Field(ge=1, le=64)] = 1
    # Nodes one replica spans (pipeline stages): above 1, a LeaderWorkerSet group of that many pods.
    pipeline: Annotated[int, Field(ge=1, le=16)] = 1


class EndpointPicker(Model):
    """The Inference Extension's endpoint picker (EPP): Istio's gateway asks it, per request, which engine pod
    serves it (by queue depth, KV-cache use and prefix-cache affinity)."""

    # Defaults to the Inference Extension's picker, or llm-d's for a disaggregated workload.
    image: Optional[ImageRef] = None
    # One active picker (upstream's recommendation: its prefix-cache state lives in memory); 2+ use leader election.
    replicas: Annotated[int, Field(ge=1, le=3)] = 1
    # FailOpen: with the picker down the gateway still routes (round robin) instead of refusing requests.
    failure_mode: Literal["FailOpen", "FailClose"] = "FailOpen"


class Disaggregation(Model):
    """Prefill on engine pods of its own (llm-d's prefill/decode disaggregation): the picker sends a request whose
    prompt a decode pod has not cached to a prefill pod first, and the decode pod's routing sidecar pulls the KV cache
    the prefill computed over NIXL (UCX over TCP), then generates."""

    # Prefill pods per version (the canary's scaled by its weight); not autoscaled: decode pods are.
    prefill_replicas: Annotated[int, Field(ge=1, le=32)] = 1
    # Prompt tokens a decode pod has not cached above which prefill runs apart (upstream's pd-epp-config sample: 16).
    non_cached_tokens: Annotated[int, Field(ge=0, le=1_000_000)] = 16
    sidecar_image: ImageRef = PD_SIDECAR_IMAGE


class InferencePoolConfig(Model):
    endpoint_picker: Optional[EndpointPicker] = EndpointPicker()


class LlmCanary(Model):
    """A new model version taking `weight` percent of the route; the workload's `model` keeps the rest."""

    model: LlmModel
    weight: Annotated[int, Field(ge=0, le=100)]
    image: Optional[ImageRef] = None


LlmMetric = Literal["vllm_queue_depth", "vllm_kv_cache_usage"]


class LlmAutoscaling(Model):
    min_replicas: Annotated[int, Field(ge=1, le=100)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=100)] = 2
    # Waiting requests per engine, or KV-cache use per engine (0-1): what saturates an LLM engine, not its CPU.
    metric: LlmMetric = "vllm_queue_depth"
    target: CpuQuantity = "5"

    @model_validator(mode="after")
    def _bounds(self) -> "LlmAutoscaling":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}")
        if self.metric not in CUSTOM_METRICS:
            raise ValueError(f"metric {self.metric!r} is not served by the platform's Prometheus adapter")
        return self


class LlmResources(Model):
    cpu: CpuQuantity
    memory_gib: Annotated[float, Field(gt=0, le=2048)]


class LlmWorkload(Model):
    name: Annotated[str, Field(pattern=r"^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$")]
    team: DnsLabel
    accelerator: Literal["nvidia", "neuron"] = "nvidia"
    # Defaults to vLLM's official image on NVIDIA, AWS's Neuron build on Neuron.
    image: Optional[ImageRef] = None
    model: LlmModel
    # The name clients put in the OpenAI API's "model" field; defaults to the workload's name.
    served_model_name: Optional[Annotated[str, Field(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_./]{0,127}$")]] = None
    path: Annotated[str, Field(pattern=r"^/[a-z0-9][-a-z0-9/]*$")]
    parallelism: Parallelism = Parallelism()
    # Context length the engine reserves KV cache for; the model's own maximum if larger costs memory for nothing.
    max_model_len: Annotated[int, Field(ge=256, le=1048576)] = 8192
    # vLLM's default: weights, activations and KV cache may take 90% of each GPU's memory.
    gpu_memory_utilization: Annotated[float, Field(gt=0.1, le=0.95)] = 0.9
    resources: LlmResources
    # Model load (read from EFS, CUDA graphs) before /health answers.
    startup_seconds: Annotated[int, Field(ge=60, le=3600)] = 1200
    autoscaling: LlmAutoscaling = LlmAutoscaling()
    inference_pool: InferencePoolConfig = InferencePoolConfig()
    canary: Optional[LlmCanary] = None
    disaggregation: Optional[Disaggregation] = None

    @model_validator(mode="after")
    def _checks(self) -> "LlmWorkload":
        if self.inference_pool.endpoint_picker is None:
            raise ValueError(
                "inferencePool.endpointPicker is null: an InferencePool routes only through its endpoint picker "
                "(Istio sends every request to it first); remove the null to use the default picker"
            )
        if self.accelerator == "neuron" and self.parallelism.pipeline > 1:
            raise ValueError("parallelism.pipeline > 1 on neuron: multi-node serving here is for NVIDIA pools only; use one Neuron node per replica")
        if self.disaggregation and self.accelerator != "nvidia":
            raise ValueError("disaggregation on neuron: the KV cache moves between pods through NIXL, which the platform runs on NVIDIA GPUs only")
        if self.disaggregation and self.parallelism.pipeline > 1:
            raise ValueError("disaggregation with parallelism.pipeline > 1: prefill and decode pods here are one node each; use tensor parallelism")
        if self.canary and self.canary.model.key == self.model.key and not self.canary.image:
            raise ValueError("canary.model is the workload's own model and canary.image is unset: a canary needs a new model or image")
        return self

    @property
    def engine_image(self) -> str:
        return self.image or (VLLM_IMAGE if self.accelerator == "nvidia" else NEURON_VLLM_IMAGE)

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.name

    def accelerators_per_pod(self, family: Optional[str] = None) -> int:
        """What each engine pod requests of its pool's extended resource: GPUs, or whole Neuron devices."""
        if self.accelerator == "nvidia":
            return self.parallelism.tensor
        return math.ceil(self.parallelism.tensor / NEURON_CORES_PER_DEVICE.get(family or "inf2", 2))

    def tracks(self) -> list[tuple[str, LlmModel, str, int, int, int]]:
        """(role, model, image, weight, min replicas, max replicas) per version; a canary at 0 or 100 is one version."""
        a = self.autoscaling
        if not self.canary or self.canary.weight == 100:
            model, image = (self.canary.model, self.canary.image or self.engine_image) if self.canary else (self.model, self.engine_image)
            return [("stable", model, image, 100, a.min_replicas, a.max_replicas)]
        if self.canary.weight == 0:
            return [("stable", self.model, self.engine_image, 100, a.min_replicas, a.max_replicas)]
        w = self.canary.weight
        return [
            ("stable", self.model, self.engine_image, 100 - w, a.min_replicas, a.max_replicas),
            ("canary", self.canary.model, self.canary.image or self.engine_image, w, 1, max(1, math.ceil(a.max_replicas * w / 100))),
        ]

    @property
    def picker_image(self) -> str:
        return self.inference_pool.endpoint_picker.image or (LLMD_EPP_IMAGE if self.disaggregation else EPP_IMAGE)

    def prefill_replicas(self, weight: int) -> int:
        """A version's prefill pods: the configured count by the version's share of the route, at least one."""
        if not self.disaggregation:
            return 0
        return max(1, math.ceil(self.disaggregation.prefill_replicas * weight / 100))

    @property
    def max_pods(self) -> int:
        """Engine pods at the most replicas of every version (a replica is `pipeline` pods), prefill pods included."""
        return sum(t[5] * self.parallelism.pipeline + self.prefill_replicas(t[3]) for t in self.tracks())


class LlmConfig(Model):
    # The LeaderWorkerSet controller (multi-node replicas) is installed when a workload spans nodes.
    lws_version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")] = PINS["lws"]
    workloads: list[LlmWorkload] = []

    @model_validator(mode="after")
    def _unique(self) -> "LlmConfig":
        seen = set()
        for i, w in enumerate(self.workloads):
            if (w.team, w.name) in seen:
                raise ValueError(f"workloads[{i}].name {w.name!r} is used twice in team {w.team!r}")
            seen.add((w.team, w.name))
        return self

    @property
    def multi_node(self) -> bool:
        return any(w.parallelism.pipeline > 1 for w in self.workloads)
