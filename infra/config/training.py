"""Training settings: Kubeflow Trainer (TrainJob on JobSet, its ClusterTrainingRuntimes) and Katib (hyperparameter
studies). One switch, `training.enabled`, turns both off."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from infra.config.base import DnsLabel, ImageRef, Model
from infra.config.pins import PINS
from infra.config.workloads import Accelerator, Resources

Version = Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]

# The images the derived runtimes start from when a TrainJob names none: upstream's torch runtime image at the
# Trainer pin (charts/kubeflow-trainer/files/runtimes/torch-distributed.yaml), and the Neuron training DLC.
TORCH_IMAGE = "pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime"
# How often a distributed run restarts all its nodes (from the last checkpoint) after one fails or is preempted: the
# runtime's JobSet failurePolicy, which a TrainJob cannot override.
MAX_RESTARTS = 3
NEURON_TORCH_IMAGE = "public.ecr.aws/neuron/pytorch-training-neuronx:2.9.0-neuronx-py312-sdk2.27.1-ubuntu24.04"


class TrainingRuntime(Model):
    """A ClusterTrainingRuntime: torchrun on one node pool. A TrainJob names it and brings its image and command."""

    name: DnsLabel
    # A node pool of nodePools (cpu, nvidia, neuron) that is enabled in the stack.
    pool: Accelerator
    image: ImageRef
    # EFA devices each node requests when the pool has efa on (trn1.32xlarge carries 8); 0 on other pools.
    efa_devices_per_node: Annotated[int, Field(ge=0, le=32)] = 0


class TrainerConfig(Model):
    """The Trainer's controller (its chart) and the ClusterTrainingRuntimes TrainJobs name."""

    version: Version = PINS["kubeflow-trainer"]
    replicas: Annotated[int, Field(ge=1, le=3)] = 1
    # None: one runtime per enabled pool (torch-cpu, torch-nvidia, torch-neuron), derived in runtimes_for().
    runtimes: Optional[list[TrainingRuntime]] = None

    @model_validator(mode="after")
    def _unique(self) -> "TrainerConfig":
        names = [r.name for r in self.runtimes or []]
        if len(set(names)) != len(names):
            raise ValueError(f"runtimes name a runtime twice: {sorted({n for n in names if names.count(n) > 1})}")
        pools = [r.pool for r in self.runtimes or []]
        if len(set(pools)) != len(pools):
            raise ValueError(f"runtimes: one runtime per pool (a distributed workload runs on its pool's runtime); repeated: {sorted({p for p in pools if pools.count(p) > 1})}")
        return self


# The suggestion services katib-config ships at the Katib pin (manifests/v1beta1/installs/katib-external-db/katib-config.yaml),
# less those for neural architecture search and population-based training (enas, darts, pbt), which need more than a Job.
Algorithm = Literal["random", "tpe", "grid", "bayesianoptimization", "cmaes", "sobol", "multivariate-tpe", "hyperband"]
# What a trial prints on stdout as `name=value`, which Katib's StdOut collector reads.
MetricName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")]
ParameterName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")]


class Objective(Model):
    type: Literal["maximize", "minimize"]
    metric: MetricName
    goal: Optional[float] = None
    additional_metrics: list[MetricName] = []

    @model_validator(mode="after")
    def _distinct(self) -> "Objective":
        if self.metric in self.additional_metrics:
            raise ValueError(f"additionalMetrics repeats the objective metric {self.metric!r}")
        return self


class Parameter(Model):
    """One dimension of the search space: a numeric range (double, int) or a list of values (categorical, discrete)."""

    name: ParameterName
    type: Literal["double", "int", "categorical", "discrete"]
    min: Optional[float] = None
    max: Optional[float] = None
    step: Optional[float] = None
    values: list[Annotated[str, Field(min_length=1)]] = []

    @model_validator(mode="after")
    def _space(self) -> "Parameter":
        if self.type in ("double", "int"):
            if self.min is None or self.max is None or self.values:
                raise ValueError(f"parameter {self.name!r} of type {self.type} needs min and max, and no values")
            if self.min >= self.max:
                raise ValueError(f"parameter {self.name!r}: min {self.min:g} is not below max {self.max:g}")
            if self.type == "int" and not all(v.is_integer() for v in (self.min, self.max, self.step) if v is not None):
                raise ValueError(f"parameter {self.name!r} of type int has a fractional min, max or step")
            if self.step is not None and not 0 < self.step <= self.max - self.min:
                raise ValueError(f"parameter {self.name!r}: step {self.step:g} must be above 0 and at most max - min")
            return self
        if not self.values or self.min is not None or self.max is not None or self.step is not None:
            raise ValueError(f"parameter {self.name!r} of type {self.type} needs values, and no min, max or step")
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"parameter {self.name!r} repeats a value")
        if self.type == "discrete":
            try:
                [float(v) for v in self.values]
            except ValueError:
                raise ValueError(f"parameter {self.name!r} of type discrete has a value that is not a number") from None
        return self

    def feasible_space(self) -> dict:
        """The Experiment's feasibleSpace: numbers as Katib's CRD takes them, strings."""
        if self.values:
            return {"list": list(self.values)}
        space = {"min": f"{self.min:g}", "max": f"{self.max:g}"}
        if self.step is not None:
            space["step"] = f"{self.step:g}"
        return space


class Study(Model):
    """A Katib Experiment: each trial is a Job of the team, through its Kueue queue, printing its metrics."""

    name: Annotated[str, Field(pattern=r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")]
    team: DnsLabel
    image: ImageRef
    # `${trialParameters.<name>}` in the command receives each parameter's value for the trial.
    command: Annotated[list[str], Field(min_length=1)]
    env: dict[Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")], str] = {}
    objective: Objective
    algorithm: Algorithm = "random"
    parameters: Annotated[list[Parameter], Field(min_length=1)]
    max_trial_count: Annotated[int, Field(ge=1, le=1000)] = 12
    parallel_trial_count: Annotated[int, Field(ge=1, le=100)] = 3
    max_failed_trial_count: Annotated[int, Field(ge=0, le=1000)] = 3
    accelerator: Accelerator = "cpu"
    accelerator_count: Annotated[int, Field(ge=0, le=16)] = 0
    resources: Resources

    @model_validator(mode="after")
    def _study(self) -> "Study":
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"parameters name a parameter twice: {sorted({n for n in names if names.count(n) > 1})}")
        if self.parallel_trial_count > self.max_trial_count:
            raise ValueError(f"parallelTrialCount {self.parallel_trial_count} is above maxTrialCount {self.max_trial_count}")
        if (self.accelerator == "cpu") != (self.accelerator_count == 0):
            raise ValueError("acceleratorCount must be 0 for cpu and at least 1 for nvidia or neuron")
        unused = [n for n in names if not any(f"${{trialParameters.{n}}}" in arg for arg in self.command)]
        if unused:
            raise ValueError(f"parameters {unused} never reach a trial: put ${{trialParameters.<name>}} in command")
        if self.algorithm == "grid" and any(p.type == "double" and p.step is None for p in self.parameters):
            raise ValueError("algorithm grid needs a step on every double parameter")
        return self


class KatibConfig(Model):
    """Katib (its rendered kustomize overlay) on the Aurora database `katib`, and the studies it runs."""

    version: Version = PINS["katib"]
    studies: list[Study] = []


class TrainingConfig(Model):
    """Kubeflow Trainer and Katib (docs/app-teams/training.md): distributed runs as TrainJobs, studies as Experiments."""

    enabled: bool = True
    trainer: TrainerConfig = TrainerConfig()
    katib: KatibConfig = KatibConfig()


def runtimes_for(training: TrainingConfig, enabled_pools: dict[str, object]) -> list[TrainingRuntime]:
    """The stack's runtimes: as configured, or one torch runtime per enabled pool that trains (a Neuron pool only with
    Trainium types; EFA pools with one device per node)."""
    if training.trainer.runtimes is not None:
        return list(training.trainer.runtimes)
    return [
        TrainingRuntime(
            name=f"torch-{pool}",
            pool=pool,
            image=NEURON_TORCH_IMAGE if pool == "neuron" else TORCH_IMAGE,
            efa_devices_per_node=1 if getattr(spec, "efa", False) else 0,
        )
        for pool, spec in enabled_pools.items()
        if pool != "neuron" or trains(spec)
    ]


# Neuron instance families that train (Trainium); Inferentia (inf1, inf2) serves only.
TRAINIUM_FAMILIES = frozenset({"trn1", "trn1n", "trn2"})


def trains(pool: object) -> bool:
    """A Neuron pool trains when it may launch Trainium instances."""
    return any(t.split(".", 1)[0] in TRAINIUM_FAMILIES for t in getattr(pool, "instance_types", []))
