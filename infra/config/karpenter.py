"""Karpenter settings and its node pools (cpu, nvidia, neuron): limits, capacity types, disruption."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from infra.lib.accelerators import AcceleratorKind, NEURON, NVIDIA, family_of
from infra.config.base import Duration, Model
from infra.config.pins import PINS

CapacityType = Literal["spot", "on-demand"]

# Karpenter AMI aliases pinned to a release; `@latest` would roll every node on each new AMI.
AmiAlias = Annotated[str, Field(pattern=r"^(al2023@v\d{8}|bottlerocket@v\d+\.\d+\.\d+)$")]

InstanceType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[0-9a-z]+$")]


class KarpenterConfig(Model):
    version: Annotated[str, Field(pattern=r"^1\.\d+\.\d+$")] = PINS["karpenter"]
    replicas: Annotated[int, Field(ge=1, le=5)] = 2
    # Accounts that ever used spot already have this role; creating it twice fails.
    create_spot_service_linked_role: bool = False
    log_level: Literal["debug", "info", "error"] = "info"


class DisruptionBudget(Model):
    nodes: Annotated[str, Field(pattern=r"^((100|[0-9]{1,2})%|[0-9]+)$")]
    reasons: Optional[list[Literal["Underutilized", "Empty", "Drifted"]]] = None
    schedule: Optional[str] = None
    duration: Optional[Annotated[str, Field(pattern=r"^([0-9]+h)?([0-9]+m)?$")]] = None

    @model_validator(mode="after")
    def _schedule_with_duration(self) -> "DisruptionBudget":
        if (self.schedule is None) != (self.duration is None):
            raise ValueError("schedule and duration must be set together")
        return self


class Disruption(Model):
    consolidation_policy: Literal["WhenEmpty", "WhenEmptyOrUnderutilized"]
    consolidate_after: Duration
    expire_after: Duration = "720h"
    termination_grace_period: Duration = "24h"
    budgets: Annotated[list[DisruptionBudget], Field(min_length=1)]


class PoolLimits(Model):
    cpu: Annotated[int, Field(ge=1)]
    memory_gib: Annotated[int, Field(ge=1)]
    accelerators: Optional[Annotated[int, Field(ge=1)]] = None


class NodePoolBase(Model):
    enabled: bool = True
    capacity_types: Annotated[list[CapacityType], Field(min_length=1)] = ["on-demand"]
    architectures: Annotated[list[Literal["amd64", "arm64"]], Field(min_length=1)] = ["amd64"]
    # An AL2023 release that builds the standard, NVIDIA and Neuron AMIs for Kubernetes 1.33 to 1.36.
    ami_alias: AmiAlias = "al2023@v20260714"
    root_volume_gib: Annotated[int, Field(ge=20, le=16000)] = 100
    weight: Annotated[int, Field(ge=1, le=100)] = 10
    # No default: a pool's limits are the most it may ever buy, a choice each stack makes explicitly.
    limits: PoolLimits
    disruption: Disruption


class CpuPool(NodePoolBase):
    instance_categories: Annotated[list[Literal["c", "m", "r"]], Field(min_length=1)] = ["c", "m", "r"]
    min_generation: Annotated[int, Field(ge=1, le=9)] = 6
    weight: Annotated[int, Field(ge=1, le=100)] = 50
    root_volume_gib: Annotated[int, Field(ge=20, le=16000)] = 50
    disruption: Disruption = Disruption(
        consolidation_policy="WhenEmptyOrUnderutilized", consolidate_after="1m", budgets=[DisruptionBudget(nodes="10%")]
    )


# Accelerator nodes are slow to start and expensive to churn: consolidate only when empty.
ACCELERATOR_DISRUPTION = Disruption(
    consolidation_policy="WhenEmpty",
    consolidate_after="15m",
    termination_grace_period="48h",
    budgets=[DisruptionBudget(nodes="1"), DisruptionBudget(nodes="0", reasons=["Drifted"], schedule="0 8 * * mon-fri", duration="10h")],
)


class AcceleratorPool(NodePoolBase):
    instance_types: Annotated[list[InstanceType], Field(min_length=1)]
    disruption: Disruption = ACCELERATOR_DISRUPTION

    @model_validator(mode="after")
    def _limits_cover_accelerators(self) -> "AcceleratorPool":
        if self.limits.accelerators is None:
            raise ValueError("limits.accelerators is required, so a runaway job cannot buy unbounded accelerators")
        return self


class NvidiaPool(AcceleratorPool):
    instance_types: Annotated[list[InstanceType], Field(min_length=1)] = ["g5.xlarge", "g5.2xlarge", "g6.xlarge", "g6.2xlarge", "g6e.xlarge"]
    root_volume_gib: Annotated[int, Field(ge=20, le=16000)] = 200

    @model_validator(mode="after")
    def _gpu_families(self) -> "NvidiaPool":
        return _families_of(self, NVIDIA)


class NeuronPool(AcceleratorPool):
    instance_types: Annotated[list[InstanceType], Field(min_length=1)] = ["inf1.xlarge", "inf1.2xlarge", "inf2.xlarge", "inf2.8xlarge"]
    root_volume_gib: Annotated[int, Field(ge=20, le=16000)] = 150

    @model_validator(mode="after")
    def _neuron_families(self) -> "NeuronPool":
        return _families_of(self, NEURON)


def _families_of(pool: AcceleratorPool, kind: AcceleratorKind):
    wrong = [t for t in pool.instance_types if family_of(t) not in kind.families]
    if wrong:
        raise ValueError(
            f"instanceTypes {wrong} carry no {kind.resource}; allowed families: {', '.join(sorted(kind.families))}"
        )
    return pool


class NodePools(Model):
    """The cpu pool always runs (the gateway and monitoring live there); accelerator pools exist once declared."""

    cpu: CpuPool
    nvidia: Optional[NvidiaPool] = None
    neuron: Optional[NeuronPool] = None

    @model_validator(mode="after")
    def _cpu_pool_enabled(self) -> "NodePools":
        if not self.cpu.enabled:
            raise ValueError("cpu.enabled must stay true: the ingress gateway, Prometheus and Grafana run on the cpu pool")
        return self

    def enabled(self) -> dict[str, NodePoolBase]:
        return {name: pool for name, pool in (("cpu", self.cpu), ("nvidia", self.nvidia), ("neuron", self.neuron)) if pool and pool.enabled}
