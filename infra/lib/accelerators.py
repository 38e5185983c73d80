"""What each kind of node pool offers and how pods target it: one definition for every component."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

POOL_LABEL = "ml-platform.io/pool"
ACCELERATOR_LABEL = "ml-platform.io/accelerator"


@dataclass(frozen=True)
class AcceleratorKind:
    name: str
    resource: Optional[str]  # the extended resource its device plugin advertises
    taint_key: Optional[str]
    families: frozenset[str]  # EC2 instance families that carry it

    @property
    def taint(self) -> Optional[dict]:
        return {"key": self.taint_key, "value": "true", "effect": "NoSchedule"} if self.taint_key else None

    @property
    def toleration(self) -> Optional[dict]:
        return {"key": self.taint_key, "operator": "Equal", "value": "true", "effect": "NoSchedule"} if self.taint_key else None


NVIDIA = AcceleratorKind(
    "nvidia",
    "nvidia.com/gpu",
    "nvidia.com/gpu",
    frozenset({"g4dn", "g5", "g5g", "g6", "g6e", "gr6", "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200"}),
)
NEURON = AcceleratorKind(
    "neuron",
    "aws.amazon.com/neuron",
    "aws.amazon.com/neuron",
    frozenset({"inf1", "inf2", "trn1", "trn1n", "trn2"}),
)
CPU = AcceleratorKind("cpu", None, None, frozenset())
KINDS = {k.name: k for k in (CPU, NVIDIA, NEURON)}


def family_of(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]

# The DeviceClass of whole NVIDIA GPUs, which the NVIDIA DRA driver's chart creates.
GPU_DEVICE_CLASS = "gpu.nvidia.com"


def pool_labels(name: str, kind: AcceleratorKind) -> dict[str, str]:
    labels = {POOL_LABEL: name}
    if kind.resource:
        labels[ACCELERATOR_LABEL] = kind.name
    return labels
