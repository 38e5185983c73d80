"""Workload settings: serving and training workloads, their models, rollouts and autoscaling."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from infra.config.base import CpuQuantity, DnsLabel, ImageRef, Model
from infra.config.registry import RegistryRef
from infra.config.serving import RUNTIMES, ModelFormat, model_format_for
from infra.lib.metrics import CUSTOM_METRICS

Accelerator = Literal["cpu", "nvidia", "neuron"]


class Resources(Model):
    cpu: CpuQuantity
    memory_gib: Annotated[float, Field(gt=0, le=2048)]


class VolumeConfig(Model):
    storage_class: DnsLabel
    size_gib: Annotated[int, Field(ge=1, le=100000)]
    mount_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9._/-]+$")]


class Probe(Model):
    path: Optional[Annotated[str, Field(pattern=r"^/[A-Za-z0-9._/-]*$")]] = None  # HTTP GET; None probes the TCP port
    startup_seconds: Annotated[int, Field(ge=10, le=3600)] = 300  # model load time allowed


def custom_metrics() -> dict:
    """The per-pod metrics the platform's Prometheus adapter serves, by name."""
    return CUSTOM_METRICS


def _served_metric(value: str) -> str:
    if value not in custom_metrics():
        raise ValueError(f"expected one of {', '.join(sorted(custom_metrics()))}: the metrics the platform's Prometheus adapter serves")
    return value


def _vpa_update_mode(value: Any) -> Any:
    if value is False:
        return "Off"  # a YAML 1.1 reader (PyYAML) reads an unquoted Off as false
    if value == "Auto":
        raise ValueError("'Auto' is deprecated at the pinned VPA, where it means Recreate; use Recreate or InPlaceOrRecreate")
    return value


# The CRD's update modes at the pinned VPA, less InPlace (behind a VPA feature gate) and the deprecated Auto.
VpaUpdateMode = Literal["Off", "Initial", "Recreate", "InPlaceOrRecreate"]


class Autoscaling(Model):
    min_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 3
    target_cpu_utilization: Annotated[int, Field(ge=10, le=100)] = 70
    # A per-pod metric the platform's Prometheus adapter serves, instead of CPU; customMetricTarget is its average per pod.
    custom_metric: Optional[Annotated[str, AfterValidator(_served_metric)]] = None
    custom_metric_target: Optional[CpuQuantity] = None
    # What the workload's VerticalPodAutoscaler does with its recommendations; Off only records them.
    vpa_update_mode: Annotated[VpaUpdateMode, BeforeValidator(_vpa_update_mode)] = "Off"

    @model_validator(mode="after")
    def _bounds(self) -> "Autoscaling":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} is above maxReplicas {self.max_replicas}")
        if (self.custom_metric is None) != (self.custom_metric_target is None):
            raise ValueError("customMetric and customMetricTarget go together")
        return self


# A model version is a label that names content forever (published versions are immutable).
ModelVersion = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$")]

# Services and Deployments are named after workloads: a DNS-1035 label with room for "-canary".
WorkloadName = Annotated[str, Field(pattern=r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$")]

NeuronTarget = Literal["inf1", "inf2", "trn1", "trn2"]


class ExternalModel(Model):
    """A public model, downloaded into the team's store by the bootstrap job at an exact commit."""

    hub_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[-A-Za-z0-9_.]+$")]
    # A commit, not a branch: the version's content must never move.
    revision: Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]


class ModelRef(Model):
    name: DnsLabel
    version: ModelVersion
    external: Optional[ExternalModel] = None

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


class ModelOutput(Model):
    name: DnsLabel
    version: ModelVersion

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


class StableTrack(Model):
    """What keeps serving the rest of the traffic while a canary runs; each defaults to the workload's own."""

    model: Optional[ModelRef] = None
    image: Optional[ImageRef] = None
    registry: Optional[RegistryRef] = None


class Canary(Model):
    """A rollout in progress: the workload's `model` and `image` are the canary's, `stable` what they replace.
    `promote` (or weight 100) makes the canary the only version."""

    weight: Annotated[int, Field(ge=1, le=100)]
    promote: bool = False
    stable: StableTrack = StableTrack()

    @property
    def promoted(self) -> bool:
        return self.promote or self.weight == 100


@dataclass(frozen=True)
class Track:
    """One version of a serving workload: its Deployment, Service and share of the route."""

    role: str  # stable or canary
    image: str
    model: Optional[ModelRef]
    weight: int
    min_replicas: int
    max_replicas: int
    registry: Optional[RegistryRef] = None  # a registered version instead of a store path


class WorkloadBase(Model):
    name: WorkloadName
    team: DnsLabel
    image: ImageRef
    accelerator: Accelerator = "cpu"
    accelerator_count: Annotated[int, Field(ge=0, le=16)] = 0
    resources: Resources
    env: dict[Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")], str] = {}

    @model_validator(mode="after")
    def _accelerator_count(self):
        if (self.accelerator == "cpu") != (self.accelerator_count == 0):
            raise ValueError("acceleratorCount must be 0 for cpu and at least 1 for nvidia or neuron")
        return self


class ServingWorkload(WorkloadBase):
    kind: Literal["serving"]
    port: Annotated[int, Field(ge=1024, le=65535)] = 8080
    metrics_port: Annotated[int, Field(ge=1024, le=65535)] = 9100
    path: Annotated[str, Field(pattern=r"^/[a-z0-9][-a-z0-9/]*$")]
    probe: Probe = Probe()
    autoscaling: Autoscaling = Autoscaling()
    # What it serves, from the team's model store (read-only); with a canary, the canary's model.
    model: Optional[ModelRef] = None
    # The Neuron instance family it runs on, which decides the compiler (inf1: torch-neuron, others: torch-neuronx).
    neuron_target: Optional[NeuronTarget] = None
    canary: Optional[Canary] = None
    # What it serves, as a registered version in the team's registry instead of a store path (not both).
    registry: Optional[RegistryRef] = None
    # What the model is, which picks its KServe runtime (infra/config/serving.py); by default what the accelerator runs.
    model_format: Optional[ModelFormat] = None

    @property
    def format(self) -> str:
        return self.model_format or model_format_for(self.accelerator)

    def tracks(self) -> list[Track]:
        a = self.autoscaling
        if not self.canary or self.canary.promoted:
            return [Track("stable", self.image, self.model, 100, a.min_replicas, a.max_replicas, self.registry)]
        stable = self.canary.stable
        weight = self.canary.weight
        # The stable track names its own source, or keeps the workload's.
        model, registry = (stable.model, stable.registry) if (stable.model or stable.registry) else (self.model, self.registry)
        return [
            Track("stable", stable.image or self.image, model, 100 - weight, a.min_replicas, a.max_replicas, registry),
            # The canary scales with its share of the traffic, never below one pod.
            Track("canary", self.image, self.model, weight, 1, max(1, math.ceil(a.max_replicas * weight / 100)), self.registry),
        ]

    def models(self) -> list[ModelRef]:
        return [t.model for t in self.tracks() if t.model]

    @property
    def max_pods(self) -> int:
        return sum(t.max_replicas for t in self.tracks())

    @model_validator(mode="after")
    def _serving(self) -> "ServingWorkload":
        if self.port == self.metrics_port:
            raise ValueError(f"metricsPort must differ from port {self.port}")
        if (self.accelerator == "neuron") != (self.neuron_target is not None):
            raise ValueError("neuronTarget (inf1, inf2, trn1 or trn2) is required for accelerator neuron, and only for it")
        metric = self.autoscaling.custom_metric
        if metric and custom_metrics()[metric].engine:
            raise ValueError(
                f"autoscaling.customMetric {metric!r} is exposed by {custom_metrics()[metric].engine} engines only: "
                "declare the model under llm.workloads, or pick another metric"
            )
        if metric and self.accelerator not in custom_metrics()[metric].accelerators:
            raise ValueError(
                f"autoscaling.customMetric {metric!r} is not measured on {self.accelerator} pods (only on "
                f"{', '.join(custom_metrics()[metric].accelerators)}): the autoscaler would never scale; pick another metric"
            )
        if self.accelerator not in RUNTIMES[self.format].accelerators:
            raise ValueError(f"modelFormat {self.format!r} is not served on {self.accelerator} (only on {', '.join(RUNTIMES[self.format].accelerators)})")
        if self.model and self.registry:
            raise ValueError("model (a store path) and registry (a registered version) both name what to serve; set one")
        if self.canary and self.canary.stable.model and self.canary.stable.registry:
            raise ValueError("canary.stable: model and registry both name what the stable version serves; set one")
        if self.canary and (self.canary.stable.model or self.canary.stable.registry) and not (self.model or self.registry):
            raise ValueError("canary.stable names a model but the workload serves none")
        if self.canary and not self.canary.promoted:
            stable = self.tracks()[0]
            if (stable.image, stable.model, stable.registry) == (self.image, self.model, self.registry):
                raise ValueError("canary runs the same image and model as the stable version; set model or image to the new one, and canary.stable to what it replaces")
        return self


class TrainingWorkload(WorkloadBase):
    kind: Literal["training"]
    command: Annotated[list[str], Field(min_length=1)]
    # A new runId starts a new Job; Jobs are immutable once created.
    run_id: DnsLabel = "1"
    schedule: Optional[Annotated[str, Field(pattern=r"^(@(hourly|daily|weekly|monthly))|(\S+ \S+ \S+ \S+ \S+)$")]] = None
    backoff_limit: Annotated[int, Field(ge=0, le=20)] = 2
    active_deadline_hours: Annotated[int, Field(ge=1, le=720)] = 24
    ttl_after_finished_hours: Annotated[int, Field(ge=1, le=720)] = 24
    data: VolumeConfig
    checkpoints: VolumeConfig
    # The model version the run publishes to its team's store (immutable: a new run needs a new version).
    output: Optional[ModelOutput] = None
    # More than one: a distributed run (torchrun, one process group per pod), admitted and started all together.
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    # How often a distributed run restarts all its workers (from the last checkpoint) after one fails or is preempted.
    max_restarts: Annotated[int, Field(ge=0, le=20)] = 3

    @property
    def max_pods(self) -> int:
        return self.workers

    @model_validator(mode="after")
    def _distributed(self) -> "TrainingWorkload":
        if self.workers > 1 and self.schedule:
            raise ValueError("workers > 1 with a schedule: distributed runs are one-off (runId), a schedule runs single-worker jobs")
        return self

    @model_validator(mode="after")
    def _output_once(self) -> "TrainingWorkload":
        if self.output and self.schedule:
            raise ValueError("output is set on a scheduled training: every run would publish the same immutable version; publish from one-off runs (runId) instead")
        return self


Workload = Annotated[ServingWorkload | TrainingWorkload, Field(discriminator="kind")]

WORKLOAD_KINDS = ("serving", "training")
