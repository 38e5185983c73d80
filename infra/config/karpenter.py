"""Karpenter settings and its node pools (cpu, nvidia, neuron): limits, capacity types, disruption."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, model_validator

from infra.lib.accelerators import AcceleratorKind, NEURON, NVIDIA, family_of
from infra.config.base import Duration, Model
from infra.config.pins import PINS
from policies.rules.efa import EFA_INSTANCE_TYPES, without_efa

# In a pool's capacityTypes, "reserved" means its capacity reservations (Karpenter's ReservedCapacity gate).
CapacityType = Literal["reserved", "on-demand", "spot"]

# Karpenter AMI aliases pinned to a release; `@latest` would roll every node on each new AMI.
AmiAlias = Annotated[str, Field(pattern=r"^(al2023@v\d{8}|bottlerocket@v\d+\.\d+\.\d+)$")]

InstanceType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[0-9a-z]+$")]
# EC2 capacity reservation ids: "cr-" and 17 hexadecimal digits (Karpenter's CRD accepts any ^cr-[0-9a-z]+$).
ReservationId = Annotated[str, Field(pattern=r"^cr-[0-9a-f]{17}$")]


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


class CapacityReservation(Model):
    """An On-Demand Capacity Reservation or a Capacity Block a pool launches into, selected by id or by tags.

    The instance type, zone and count are what was bought: the preflight holds the account's reservation to them,
    and the cost ceiling counts them as prepaid."""

    id: Optional[ReservationId] = None
    tags: Optional[Annotated[dict[str, Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=20)]] = None
    # The account that shares the reservation (AWS RAM), with tag selection only.
    owner_id: Optional[Annotated[str, Field(pattern=r"^[0-9]{12}$")]] = None
    type: Literal["default", "capacity-block"] = "default"
    instance_type: InstanceType
    availability_zone: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9][a-z]$")]
    instance_count: Annotated[int, Field(ge=1, le=1000)]

    @model_validator(mode="after")
    def _id_or_tags(self) -> "CapacityReservation":
        if (self.id is None) == (self.tags is None):
            raise ValueError("id and tags: set exactly one of them (an id names one reservation, tags select any that carry them)")
        if self.id and self.owner_id:
            raise ValueError("ownerId selects with tags only: an id already names one reservation")
        return self

    def selector_term(self) -> dict[str, Any]:
        """The EC2NodeClass capacityReservationSelectorTerms entry."""
        if self.id:
            return {"id": self.id}
        return {"tags": dict(self.tags or {}), **({"ownerID": self.owner_id} if self.owner_id else {})}


# The fallback orders one Karpenter NodePool follows: reserved offerings always first; between on-demand and spot,
# Karpenter picks spot whenever the pool allows it, so a pool cannot mean "on-demand before spot".
FALLBACK_ORDERS = (["reserved"], ["reserved", "on-demand"], ["reserved", "spot"])


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

    @model_validator(mode="after")
    def _reserved_first(self) -> "NodePoolBase":
        types = list(self.capacity_types)
        if len(set(types)) != len(types):
            raise ValueError(f"capacityTypes {types} repeats a type")
        if "reserved" in types and types not in FALLBACK_ORDERS:
            raise ValueError(
                f"capacityTypes {types} is the fallback order and must be one of {list(FALLBACK_ORDERS)}: Karpenter launches into "
                "reservations first, and prefers spot over on-demand whenever a pool allows both"
            )
        return self


class CpuPool(NodePoolBase):
    capacity_types: Annotated[list[Literal["on-demand", "spot"]], Field(min_length=1)] = ["on-demand"]
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


class StaticCapacity(Model):
    """Nodes kept running whether or not pods need them (Karpenter's static NodePool, `spec.replicas`): a second
    NodePool `<pool>-static` with the pool's node class, labels and taint, so the pool's pods land on warm nodes first.
    They count against the pool's limits: the dynamic NodePool gets what the limits leave after them."""

    replicas: Annotated[int, Field(ge=1, le=100)]
    instance_type: InstanceType


class AcceleratorPool(NodePoolBase):
    instance_types: Annotated[list[InstanceType], Field(min_length=1)]
    disruption: Disruption = ACCELERATOR_DISRUPTION
    capacity_reservations: Annotated[list[CapacityReservation], Field(max_length=30)] = []
    # Elastic Fabric Adapter for collective traffic between nodes (multi-node training): every type must carry it.
    efa: bool = False
    static: Optional[StaticCapacity] = None
    # SOCI parallel pull and unpack (nodeadm's FastImagePull gate on AL2023): multi-GB images download and unpack in
    # parallel. nodeadm applies it only on nodes with at least 4 vCPUs and 7 GiB.
    fast_image_pull: bool = True

    @model_validator(mode="after")
    def _limits_cover_accelerators(self) -> "AcceleratorPool":
        if self.limits.accelerators is None:
            raise ValueError("limits.accelerators is required, so a runaway job cannot buy unbounded accelerators")
        return self

    @model_validator(mode="after")
    def _reservations_match(self) -> "AcceleratorPool":
        reserved = "reserved" in self.capacity_types
        if reserved and not self.capacity_reservations:
            raise ValueError("capacityTypes lists reserved but capacityReservations is empty: name the reservations by id or tags")
        if self.capacity_reservations and not reserved:
            raise ValueError("capacityReservations are set but capacityTypes does not list reserved: put reserved first in capacityTypes")
        for i, r in enumerate(self.capacity_reservations):
            if r.instance_type not in self.instance_types:
                raise ValueError(
                    f"capacityReservations[{i}].instanceType {r.instance_type} is not one of the pool's instanceTypes "
                    f"{list(self.instance_types)}: Karpenter would never launch into it"
                )
        if self.efa and (lacking := without_efa(self.instance_types)):
            raise ValueError(
                f"efa is on but instanceTypes {lacking} have no EFA; types with EFA in this family: "
                f"{sorted(t for t in EFA_INSTANCE_TYPES if family_of(t) in {family_of(x) for x in lacking}) or 'none'}"
            )
        if self.static and self.static.instance_type not in self.instance_types:
            raise ValueError(
                f"static.instanceType {self.static.instance_type} is not one of the pool's instanceTypes {list(self.instance_types)}: "
                "the warm nodes carry the pool's labels and taint, so they must be nodes the pool could launch"
            )
        if self.fast_image_pull and not self.ami_alias.startswith("al2023@"):
            raise ValueError(
                f"fastImagePull needs an al2023@ amiAlias (nodeadm's FastImagePull gate), not {self.ami_alias}; set fastImagePull: false"
            )
        ids = [r.id for r in self.capacity_reservations if r.id]
        if len(set(ids)) != len(ids):
            raise ValueError(f"capacityReservations name a reservation twice: {sorted({i for i in ids if ids.count(i) > 1})}")
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
