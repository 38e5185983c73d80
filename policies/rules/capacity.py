"""What a node of an EKS managed node group can hold: allocatable CPU, memory and pods per instance type.

Sources (read at awslabs/amazon-eks-ami, the AL2023 `nodeadm` that EKS-optimized AMIs boot with):
- max pods: `templates/shared/runtime/eni-max-pods.txt` (VPC CNI without prefix delegation: ENIs x (IPs per ENI - 1) + 2);
- kube-reserved memory 11 MiB x max pods + 255 MiB, kube-reserved CPU 6 % of the first core, 1 % of the second,
  0.5 % of the third and fourth, 0.25 % of every further core, hard eviction at 100 MiB free:
  `nodeadm/internal/kubelet/config.go`;
- vCPUs and memory: the EC2 instance type pages (general purpose, m5/m6i/m7i/m6a/m7a).
Memory is the nominal size; the kernel keeps some of it, which the check's one-node headroom absorbs.
"""
from __future__ import annotations

from dataclasses import dataclass

# instance type -> (vCPUs, memory GiB, max pods)
INSTANCE_TYPES: dict[str, tuple[int, int, int]] = {
    f"{family}.{size}": spec
    for family in ("m5", "m6i", "m7i", "m6a", "m7a")
    for size, spec in {"large": (2, 8, 29), "xlarge": (4, 16, 58), "2xlarge": (8, 32, 58), "4xlarge": (16, 64, 234)}.items()
}
EVICTION_HARD_MIB = 100


@dataclass(frozen=True)
class Allocatable:
    cpu: float  # cores
    memory_gib: float
    pods: int


def reserved_cpu_millicores(vcpus: int) -> float:
    bands = ((1, 60.0), (1, 10.0), (2, 5.0))  # (cores, millicores reserved per core)
    left, reserved = vcpus, 0.0
    for cores, per_core in bands:
        take = min(left, cores)
        reserved += take * per_core
        left -= take
    return reserved + left * 2.5


def allocatable(instance_type: str) -> Allocatable:
    """Raises KeyError for an instance type the table does not know."""
    vcpus, memory_gib, max_pods = INSTANCE_TYPES[instance_type]
    reserved_mib = 11 * max_pods + 255 + EVICTION_HARD_MIB
    return Allocatable(
        cpu=(vcpus * 1000 - reserved_cpu_millicores(vcpus)) / 1000,
        memory_gib=memory_gib - reserved_mib / 1024,
        pods=max_pods,
    )
